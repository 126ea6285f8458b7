/**
 * A local Cloud Run Admin API: what gcloud's `run services` commands call, for the services of the
 * local chain, so that gcloud (pointed here by `npm run local-env`) drives the chain as it drives
 * Cloud Run. docs/cloud-run.md, "The local Admin API", lists the methods and their rules.
 *
 * - v1 IAM methods on services (getIamPolicy, setIamPolicy with IAM's etag check,
 *   testIamPermissions), on the PolicyStore the front reads;
 * - Knative services.get, list and replace (gcloud sends these to the regional host,
 *   REGION-HOST): the manifest as the chain runs it, with Cloud Run's status; a replace applies the
 *   service-level annotations the front enforces live, and refuses any other change, naming it;
 * - Resource Manager's projects.get for the chain's project, which gcloud asks when a manifest
 *   names its project by number.
 *
 * Every call needs an access token of the chain's metadata emulators (Authorization: Bearer), as
 * Google's APIs need one of Google's; a token is never logged.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../../services/shared/logger.js';
import { redactPath } from '../../services/shared/redact-path.js';
import { IamError, policyFrom, type Policy, type PolicyStore } from '../cloud-run-front/policy.js';
import {
  CUSTOM_AUDIENCES,
  INVOKER_IAM_DISABLED,
  serviceFrom,
  type ServiceManifest,
} from '../cloud-run-front/service.js';

/** A service of the chain as the API sees it: its manifest may change (replace), its URL does not. */
export class LiveService {
  generation = 1;
  /** Who made the running generation: npm start, then whoever replaced it. */
  lastModifier = 'npm-start';
  readonly uid = randomUUID();
  readonly created = new Date().toISOString();
  constructor(
    public manifest: ServiceManifest,
    /** Where clients reach it: its front. */
    readonly url: string,
  ) {}
}

export interface AdminApiOptions {
  projectId: string;
  projectNumber: string;
  region: string;
  services: ReadonlyMap<string, LiveService>;
  store: PolicyStore;
  /** The email an access token of the chain was minted for, or undefined (signing-key.ts). */
  verifyAccessToken: (token: string, now: number) => string | undefined;
  logger: Logger;
}

type Status =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'NOT_FOUND'
  | 'ABORTED'
  | 'FAILED_PRECONDITION'
  | 'INTERNAL';
const CODES: Record<Status, number> = {
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 400,
  UNAUTHENTICATED: 401,
  NOT_FOUND: 404,
  ABORTED: 409,
  INTERNAL: 500,
};
/** Google's answer to a call without a valid access token. */
const UNAUTHENTICATED =
  'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.';
const MAX_BODY_BYTES = 1 << 20;
/** The fields of a Policy an update mask may name. */
const MASK_PATHS = ['bindings', 'etag', 'version', 'auditConfigs'];
/** Annotations Cloud Run or gcloud set, which a replace may send back or leave out. */
const SYSTEM_ANNOTATION =
  /^(?:serving\.knative\.dev\/|client\.knative\.dev\/|run\.googleapis\.com\/(?:client-|ingress-status|operation-id))/;
/** What a replace may change on the running chain: service-level annotations the front reads per request. */
const LIVE_ANNOTATIONS = [INVOKER_IAM_DISABLED, CUSTOM_AUDIENCES];

const PROJECT = /^\/v1\/projects\/([^/:]+)$/;
const IAM =
  /^\/v1\/projects\/([^/]+)\/locations\/([^/]+)\/services\/([^/:]+):(getIamPolicy|setIamPolicy|testIamPermissions)$/;
const V1_SERVICES = /^\/v1\/projects\/([^/]+)\/locations\/([^/]+)\/services(?:\/([^/:]+))?$/;
const KNATIVE_SERVICES =
  /^\/apis\/serving\.knative\.dev\/v1\/namespaces\/([^/]+)\/services(?:\/([^/]+))?$/;

/** At most 1,000 characters of a message. */
const cut = (text: string) => (text.length > 1000 ? `${text.slice(0, 1000)}…` : text);

/** The client went away mid-request. */
class ClientGone extends Error {}

class ApiError extends Error {
  constructor(
    readonly status: Status,
    message: string,
  ) {
    super(message);
  }
}

export function createAdminApi(options: AdminApiOptions): Server {
  const { services, store, logger, projectId, projectNumber, region } = options;

  function serviceNamed(project: string, location: string, name: string): LiveService {
    if (project !== projectId && project !== projectNumber) {
      throw new ApiError(
        'NOT_FOUND',
        `Project '${project}' is not the local chain's: it runs project ${projectId} (${projectNumber}).`,
      );
    }
    const service = location === region ? services.get(name) : undefined;
    if (service === undefined) {
      throw new ApiError(
        'NOT_FOUND',
        `Resource '${name}' of kind 'SERVICE' in region '${location}' in project '${project}' does not exist. ` +
          `The local chain runs ${[...services.keys()].join(' and ')} in ${region}, from deploy/.`,
      );
    }
    return service;
  }

  /** The email of the caller's access token; UNAUTHENTICATED without one of the chain's. */
  function caller(req: IncomingMessage): string {
    // One Authorization header (Node would keep only the first of several).
    const copies = req.rawHeaders.filter(
      (name, i) => i % 2 === 0 && name.toLowerCase() === 'authorization',
    ).length;
    const token =
      copies === 1 ? /^Bearer[ \t]+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1] : undefined;
    const email =
      token === undefined
        ? undefined
        : options.verifyAccessToken(token, Math.floor(Date.now() / 1000));
    if (email === undefined) throw new ApiError('UNAUTHENTICATED', UNAUTHENTICATED);
    return email;
  }

  async function iam(
    req: IncomingMessage,
    service: string,
    method: string,
    who: string,
  ): Promise<unknown> {
    if (req.method !== 'POST' && !(method === 'getIamPolicy' && req.method === 'GET')) {
      throw new ApiError('NOT_FOUND', `${method} is not a ${req.method ?? ''} method.`);
    }
    if (method === 'getIamPolicy') return policyJson(store.current(service));
    const body = fieldsOf(
      await jsonBody(req),
      method === 'testIamPermissions' ? ['permissions'] : ['policy', 'updateMask'],
    ) as {
      policy?: unknown;
      updateMask?: unknown;
      permissions?: unknown;
    };
    if (method === 'testIamPermissions') {
      // Whoever holds a token of the chain administers it, as the project's owner does on Cloud Run.
      const asked = Array.isArray(body.permissions)
        ? body.permissions.filter((p): p is string => typeof p === 'string')
        : [];
      return { permissions: asked.filter((p) => p.startsWith('run.')) };
    }
    if (body.policy === undefined || body.policy === null)
      throw new ApiError('INVALID_ARGUMENT', 'policy is required: the policy to set.');
    let policy: Policy;
    try {
      policy = policyFrom(body.policy, 'policy');
    } catch (err) {
      throw new ApiError('INVALID_ARGUMENT', (err as Error).message);
    }
    // IAM's default mask (none, or empty) is "bindings, etag": a mask without bindings keeps them.
    if (body.updateMask !== undefined && typeof body.updateMask !== 'string')
      throw new ApiError('INVALID_ARGUMENT', 'updateMask must be a string.');
    const mask = (body.updateMask ?? '')
      .split(',')
      .map((path) => path.trim())
      .filter((path) => path !== '');
    const unknown = mask.find((path) => !MASK_PATHS.includes(path));
    if (unknown !== undefined)
      throw new ApiError(
        'INVALID_ARGUMENT',
        `Invalid update mask path: "${unknown}" (a policy's fields are ${MASK_PATHS.join(', ')}).`,
      );
    if (mask.length > 0 && !mask.includes('bindings'))
      policy = { ...policy, bindings: store.current(service).bindings };
    const kept = store.set(service, policy);
    logger.info(
      { serviceName: service, caller: who, bindings: kept.bindings },
      `${who} set the IAM policy of ${service}`,
    );
    return policyJson(kept);
  }

  async function knative(req: IncomingMessage, live: LiveService, who: string): Promise<unknown> {
    if (req.method === 'GET') return knativeService(live);
    if (req.method !== 'PUT') {
      throw new ApiError(
        'FAILED_PRECONDITION',
        `The local chain cannot ${req.method} a service: it runs the services of deploy/.`,
      );
    }
    const body = await jsonBody(req);
    let next: ServiceManifest;
    try {
      next = serviceFrom(body, 'the service');
    } catch (err) {
      throw new ApiError('INVALID_ARGUMENT', (err as Error).message);
    }
    if (next.name !== live.manifest.name) {
      throw new ApiError(
        'INVALID_ARGUMENT',
        `metadata.name is ${next.name}, but the request replaces ${live.manifest.name}.`,
      );
    }
    if (next.document.apiVersion !== 'serving.knative.dev/v1') {
      throw new ApiError(
        'INVALID_ARGUMENT',
        `apiVersion must be serving.knative.dev/v1, not ${JSON.stringify(next.document.apiVersion)}.`,
      );
    }
    const namespace = next.document.metadata?.namespace;
    if (namespace !== undefined && namespace !== projectId && namespace !== projectNumber) {
      throw new ApiError(
        'INVALID_ARGUMENT',
        `metadata.namespace is ${JSON.stringify(namespace)}, not this project (${projectId} or ${projectNumber}).`,
      );
    }
    const notString = stringMapProblem(next.document);
    if (notString !== undefined) throw new ApiError('INVALID_ARGUMENT', notString);
    // A manifest read before another replace carries that read's resourceVersion: it would undo the other.
    const read = (next.document.metadata as { resourceVersion?: unknown } | undefined)
      ?.resourceVersion;
    if (read !== undefined && read !== String(live.generation)) {
      throw new ApiError(
        'ABORTED',
        `Operation cannot be fulfilled on services "${next.name}": the object has been modified; please apply your changes to the latest version and try again.`,
      );
    }
    const differences = needRestart(live.manifest.document, next.document);
    if (differences.length > 0) {
      throw new ApiError(
        'FAILED_PRECONDITION',
        `The local chain cannot apply this to ${next.name} while it runs: ${differences.join(', ')} differ from the running service ` +
          `(a change there makes a new revision, which the local chain makes only when it starts). Change deploy/${next.name}.yaml ` +
          `and restart npm start. Applied live: ${LIVE_ANNOTATIONS.join(', ')}.`,
      );
    }
    const changed = LIVE_ANNOTATIONS.filter(
      (key) =>
        live.manifest.document.metadata?.annotations?.[key] !==
        next.document.metadata?.annotations?.[key],
    );
    if (changed.length > 0) {
      const annotations = { ...live.manifest.document.metadata?.annotations };
      for (const key of changed) {
        const value = next.document.metadata?.annotations?.[key];
        if (value === undefined) delete annotations[key];
        else annotations[key] = value;
      }
      live.manifest = serviceFrom(
        {
          ...live.manifest.document,
          metadata: { ...live.manifest.document.metadata, annotations },
        },
        next.name,
      );
      live.generation += 1;
      live.lastModifier = who;
      logger.info(
        { serviceName: next.name, caller: who, changed },
        `${who} replaced ${next.name}: ${changed.join(', ')} applied`,
      );
    }
    return knativeService(live);
  }

  /** The Knative Service Cloud Run answers: the manifest as running, with Cloud Run's metadata and status. */
  function knativeService(live: LiveService): unknown {
    const doc = live.manifest.document;
    const name = live.manifest.name;
    const revision = `${name}-00001-loc`;
    const conditions = ['Ready', 'ConfigurationsReady', 'RoutesReady'].map((type) => ({
      type,
      status: 'True',
      lastTransitionTime: live.created,
    }));
    return {
      apiVersion: 'serving.knative.dev/v1',
      kind: 'Service',
      metadata: {
        ...doc.metadata,
        name,
        namespace: projectNumber,
        selfLink: `/apis/serving.knative.dev/v1/namespaces/${projectNumber}/services/${name}`,
        uid: live.uid,
        resourceVersion: String(live.generation),
        generation: live.generation,
        creationTimestamp: live.created,
        labels: { ...doc.metadata?.labels, 'cloud.googleapis.com/location': region },
        annotations: {
          ...doc.metadata?.annotations,
          'serving.knative.dev/creator': 'npm-start',
          'serving.knative.dev/lastModifier': live.lastModifier,
          'run.googleapis.com/ingress-status':
            doc.metadata?.annotations?.['run.googleapis.com/ingress'] ?? 'all',
        },
      },
      spec: { ...doc.spec, traffic: [{ percent: 100, latestRevision: true }] },
      status: {
        observedGeneration: live.generation,
        conditions,
        latestReadyRevisionName: revision,
        latestCreatedRevisionName: revision,
        traffic: [{ revisionName: revision, percent: 100, latestRevision: true }],
        url: live.url,
        address: { url: live.url },
      },
    };
  }

  async function route(req: IncomingMessage): Promise<unknown> {
    const path = (req.url ?? '/').split('?')[0]!;
    let match: RegExpExecArray | null;
    if ((match = PROJECT.exec(path))) {
      // Resource Manager's projects.get: gcloud asks it for the project of a manifest whose namespace is a number.
      const project = match[1]!;
      caller(req);
      serviceNamed(project, region, [...services.keys()][0]!);
      return { projectNumber, projectId, lifecycleState: 'ACTIVE', name: projectId };
    }
    if ((match = IAM.exec(path))) {
      const [, project, location, name, method] = match as unknown as [
        string,
        string,
        string,
        string,
        string,
      ];
      const who = caller(req);
      serviceNamed(project, location, name);
      return iam(req, name, method, who);
    }
    if ((match = V1_SERVICES.exec(path) ?? KNATIVE_SERVICES.exec(path))) {
      const v1 = match.length === 4;
      const project = match[1]!;
      const location = v1 ? match[2]! : region;
      const name = v1 ? match[3] : match[2];
      const who = caller(req);
      if (name !== undefined) return knative(req, serviceNamed(project, location, name), who);
      if (req.method !== 'GET') {
        throw new ApiError(
          'FAILED_PRECONDITION',
          'The local chain cannot create a service: it runs the services of deploy/ (add one there and restart npm start).',
        );
      }
      serviceNamed(project, region, [...services.keys()][0]!); // the project is checked
      const items =
        location === region || location === '-' ? [...services.values()].map(knativeService) : [];
      return { apiVersion: 'serving.knative.dev/v1', kind: 'ServiceList', metadata: {}, items };
    }
    throw new ApiError('NOT_FOUND', `${path} is not a method of the local Cloud Run Admin API.`);
  }

  // A client has 5 s for its headers and 10 s for its whole request (Node's defaults invite slowloris).
  return createServer(
    { headersTimeout: 5000, requestTimeout: 10_000, connectionsCheckingInterval: 1000 },
    (req, res) => {
      route(req).then(
        (body) => send(res, 200, body),
        (err: unknown) => {
          // A client that left mid-request: no one to answer, nothing to log.
          if (err instanceof ClientGone) return;
          const status: Status =
            err instanceof ApiError || err instanceof IamError ? err.status : 'INTERNAL';
          // Messages may quote the request's path: no token in it, and not at any length.
          const message = cut(redactPath(err instanceof Error ? err.message : String(err)));
          if (!(err instanceof ApiError || err instanceof IamError))
            logger.error({ err }, 'the local Admin API failed');
          else if (err instanceof IamError && status === 'FAILED_PRECONDITION')
            logger.error(message); // a store it cannot read
          const headers: Record<string, string> =
            status === 'UNAUTHENTICATED'
              ? { 'www-authenticate': 'Bearer realm="https://accounts.google.com/"' }
              : {};
          // A body left unread (too large) ends the connection: say so, so no client reuses it.
          if (!req.complete) headers.connection = 'close';
          send(res, CODES[status], { error: { code: CODES[status], message, status } }, headers);
        },
      );
    },
  );
}

/** A policy as IAM's JSON has it: an empty list is left out. */
function policyJson(policy: Policy): unknown {
  return {
    version: policy.version ?? 1,
    etag: policy.etag,
    ...(policy.bindings.length > 0 ? { bindings: policy.bindings } : {}),
  };
}

/** What Cloud Run sets on a service and a client may send back or leave out: not part of what it runs. */
const SERVER_METADATA = [
  'namespace',
  'selfLink',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
];
const DEFAULT_TRAFFIC = [{ percent: 100, latestRevision: true }];

/** A manifest as far as a replace may differ in it: without what Cloud Run sets, what applies live, and empty maps. */
function comparable(doc: ServiceManifest['document']): unknown {
  const copy = JSON.parse(JSON.stringify(doc)) as Record<string, unknown> &
    ServiceManifest['document'];
  delete copy.status;
  const metadata = (copy.metadata ?? {}) as Record<string, unknown>;
  for (const key of SERVER_METADATA) delete metadata[key];
  const keep = (annotations: Record<string, unknown> | undefined, live: readonly string[]) =>
    Object.fromEntries(
      Object.entries(annotations ?? {}).filter(
        ([key]) => !SYSTEM_ANNOTATION.test(key) && !live.includes(key),
      ),
    );
  metadata.annotations = keep(copy.metadata?.annotations, LIVE_ANNOTATIONS);
  const template = copy.spec?.template;
  if (template?.metadata !== undefined)
    template.metadata.annotations = keep(template.metadata.annotations, []);
  const spec = copy.spec as Record<string, unknown> | undefined;
  if (spec !== undefined && same(spec.traffic, DEFAULT_TRAFFIC)) delete spec.traffic;
  return withoutEmpty(copy);
}

/** Where a replaced manifest differs from the running one, outside what applies live: paths like spec.template.spec. */
function needRestart(
  running: ServiceManifest['document'],
  next: ServiceManifest['document'],
): string[] {
  const found: string[] = [];
  const walk = (a: unknown, b: unknown, path: string, depth: number) => {
    if (same(a, b)) return;
    const isMap = (v: unknown): v is Record<string, unknown> =>
      typeof v === 'object' && v !== null && !Array.isArray(v);
    if (depth < 4 && isMap(a) && isMap(b)) {
      for (const key of new Set([...Object.keys(a), ...Object.keys(b)]))
        walk(a[key], b[key], path === '' ? key : `${path}.${key}`, depth + 1);
    } else found.push(path);
  };
  walk(comparable(running), comparable(next), '', 0);
  return found;
}

/** Whether two JSON values are equal, whatever the order of their keys. */
function same(a: unknown, b: unknown): boolean {
  const canonical = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(canonical)
      : typeof value === 'object' && value !== null
        ? Object.fromEntries(
            Object.keys(value)
              .sort()
              .map((key) => [key, canonical((value as Record<string, unknown>)[key])]),
          )
        : value;
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

/** A value with every empty map and list inside it left out. */
function withoutEmpty(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutEmpty);
  if (typeof value !== 'object' || value === null) return value;
  const entries = Object.entries(value).map(([k, v]) => [k, withoutEmpty(v)] as const);
  return Object.fromEntries(
    entries.filter(
      ([, v]) => !(typeof v === 'object' && v !== null && Object.keys(v).length === 0),
    ),
  );
}

/** The problems IAM's and Knative's schemas would find first: values that must be strings. */
function stringMapProblem(doc: ServiceManifest['document']): string | undefined {
  const maps: [string, Record<string, unknown> | undefined][] = [
    ['metadata.annotations', doc.metadata?.annotations],
    ['metadata.labels', doc.metadata?.labels],
    ['spec.template.metadata.annotations', doc.spec?.template?.metadata?.annotations],
  ];
  for (const [where, map] of maps) {
    const key = Object.entries(map ?? {}).find(([, value]) => typeof value !== 'string')?.[0];
    if (key !== undefined)
      return `Invalid value at '${where}["${key}"]' (TYPE_STRING): it must be a string.`;
  }
  return undefined;
}

/** A JSON body as an object with only the fields a method has, refused as Google's APIs refuse unknown ones. */
function fieldsOf(body: unknown, fields: readonly string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiError(
      'INVALID_ARGUMENT',
      'Invalid JSON payload received. The request body must be a JSON object.',
    );
  }
  const unknown = Object.keys(body).find((key) => !fields.includes(key));
  if (unknown !== undefined)
    throw new ApiError(
      'INVALID_ARGUMENT',
      `Invalid JSON payload received. Unknown name "${unknown}": Cannot find field.`,
    );
  return body as Record<string, unknown>;
}

async function jsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) break;
      chunks.push(chunk);
    }
  } catch {
    throw new ClientGone(); // the body was cut short: the client left
  }
  if (size > MAX_BODY_BYTES)
    throw new ApiError(
      'INVALID_ARGUMENT',
      `The request body is larger than ${MAX_BODY_BYTES} bytes.`,
    );
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch (err) {
    throw new ApiError(
      'INVALID_ARGUMENT',
      `Invalid JSON payload received. ${(err as Error).message}`,
    );
  }
}

function send(
  res: ServerResponse,
  code: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(code, {
    'content-type': 'application/json; charset=UTF-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}
