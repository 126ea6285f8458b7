/**
 * The one reader of a Cloud Run service manifest (deploy/*.yaml, with its placeholders resolved,
 * or the body of `gcloud run services replace`): what deploy:render checks, the local chain runs,
 * the front enforces and the local Admin API serves.
 */
import { parse } from 'yaml';

export const CUSTOM_AUDIENCES = 'run.googleapis.com/custom-audiences';
export const INVOKER_IAM_DISABLED = 'run.googleapis.com/invoker-iam-disabled';

export interface ServiceManifest {
  name: string;
  /** The cloud.googleapis.com/location label, when the manifest has one. */
  region: string | undefined;
  /** run.googleapis.com/invoker-iam-disabled: 'true': Cloud Run checks no token at all. */
  invokerIamDisabled: boolean;
  /** run.googleapis.com/custom-audiences, besides the service's own URLs. */
  customAudiences: string[];
  /** spec.template.spec.timeoutSeconds (Cloud Run's default is 300). */
  timeoutSeconds: number;
  serviceAccount: string | undefined;
  /** The container's env, as its manifest sets it. */
  env: Record<string, string>;
  /** The whole manifest, as parsed. */
  document: KnativeService;
}

/** A Knative Service, as far as this project reads one. */
export interface KnativeService {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: {
    name?: unknown;
    namespace?: unknown;
    labels?: Record<string, unknown>;
    annotations?: Record<string, unknown>;
  };
  spec?: {
    template?: {
      metadata?: { name?: unknown; annotations?: Record<string, unknown> };
      spec?: {
        serviceAccountName?: unknown;
        timeoutSeconds?: unknown;
        containers?: { env?: { name?: unknown; value?: unknown }[] }[];
      };
    };
  };
  status?: unknown;
}

export function parseServiceManifest(text: string, source: string): ServiceManifest {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new Error(`${source}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  return serviceFrom(doc, source);
}

/** A manifest from a parsed document; an Error naming `source` and the problem. */
export function serviceFrom(doc: unknown, source: string): ServiceManifest {
  const raw = doc as KnativeService | null;
  if (raw?.kind !== 'Service' || typeof raw.metadata?.name !== 'string') {
    throw new Error(
      `${source}: not a Cloud Run service manifest (kind: Service with metadata.name)`,
    );
  }
  const annotations = raw.metadata.annotations ?? {};
  const spec = raw.spec?.template?.spec ?? {};
  const container = spec.containers?.[0] ?? {};
  const env: Record<string, string> = {};
  for (const entry of container.env ?? []) {
    if (typeof entry.name === 'string') env[entry.name] = String(entry.value ?? '');
  }
  const region = raw.metadata.labels?.['cloud.googleapis.com/location'];
  return {
    name: raw.metadata.name,
    region: typeof region === 'string' ? region : undefined,
    invokerIamDisabled: String(annotations[INVOKER_IAM_DISABLED] ?? '').toLowerCase() === 'true',
    customAudiences: customAudiencesOf(annotations[CUSTOM_AUDIENCES], source),
    timeoutSeconds: typeof spec.timeoutSeconds === 'number' ? spec.timeoutSeconds : 300,
    serviceAccount:
      typeof spec.serviceAccountName === 'string' ? spec.serviceAccountName : undefined,
    env,
    document: raw,
  };
}

function customAudiencesOf(annotation: unknown, source: string): string[] {
  if (annotation === undefined) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(String(annotation));
  } catch {
    parsed = undefined;
  }
  if (
    typeof annotation !== 'string' ||
    !Array.isArray(parsed) ||
    parsed.length === 0 ||
    !parsed.every((a) => typeof a === 'string' && a !== '')
  ) {
    throw new Error(
      `${source}: ${CUSTOM_AUDIENCES} must be a JSON list of strings, e.g. '["https://receiving.example.com"]'`,
    );
  }
  return parsed as string[];
}
