import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createAdminApi, LiveService } from '../../local/cloud-run-admin/api.js';
import { createCloudRunFront } from '../../local/cloud-run-front/front.js';
import { parsePolicy, PolicyStore, type Policy } from '../../local/cloud-run-front/policy.js';
import { parseServiceManifest, type ServiceManifest } from '../../local/cloud-run-front/service.js';
import { loadEmulatorConfig } from '../../local/metadata-emulator/config.js';
import { loadSigningKey } from '../../local/metadata-emulator/signing-key.js';
import { LOG_LEVELS } from '../../services/shared/env.js';
import { createLogger, type Logger } from '../../services/shared/logger.js';
import { chainFilePath, claimStateDir, type ChainFile } from './chain-file.js';
import { readDeployDir, renderDeploy } from './deploy-manifests.js';
import { freePort, startService, type ServiceProcess } from './processes.js';

const root = fileURLToPath(new URL('../../', import.meta.url).href.replace(/\/dist\/$/, '/'));
export const REGION = 'us-central1';

export interface ChainPorts {
  /** calling's front (public). */
  calling: number;
  /** receiving's front (private). */
  receiving: number;
  metadata: number;
  /** The local Cloud Run Admin API. */
  admin: number;
}

export interface ChainOptions {
  ports: ChainPorts;
  /** Where the chain keeps its state: IAM policies, signing key, gcloud config, chain.json. */
  stateDir: string;
  /** The environment the services inherit (PROJECT_ID, PROJECT_NUMBER, LOG_LEVEL...). */
  baseEnv?: Record<string, string | undefined>;
  /** Extra or overriding env per service, beyond its manifest, e.g. { calling: { AUTH: 'none' } }. */
  calling?: Record<string, string | undefined>;
  receiving?: Record<string, string | undefined>;
  /** Extra env for calling's metadata server, e.g. { SERVICE_ACCOUNT: ... } to run calling as another identity. */
  metadata?: Record<string, string | undefined>;
  /** receiving's policy at start; deploy/receiving-policy.yaml (with local values) when absent. */
  receivingPolicy?: Policy;
  onLine?: (name: string, line: string) => void;
}

/** A service as Cloud Run runs it: its front (the URL clients use) and its own process behind it. */
export interface LocalService {
  name: string;
  /** The front's URL: what clients, and other services, call. */
  url: string;
  /** The service's own process, on a loopback port only the front uses. */
  process: ServiceProcess;
  manifest: ServiceManifest;
  /** The identity its metadata server reports (from the manifest, unless overridden). */
  serviceAccount: string;
}

export interface LocalChain {
  calling: LocalService;
  receiving: LocalService;
  /** calling's metadata server (the emulator, on ports.metadata): mints calling's tokens. */
  metadata: ServiceProcess;
  /** receiving's own metadata server, reporting receiving's account, signing with the same key. */
  receivingMetadata: ServiceProcess;
  /** The local Cloud Run Admin API's URL, as gcloud's endpoint override names it. */
  adminUrl: string;
  projectId: string;
  projectNumber: string;
  /** The IAM policies the Admin API changes and the fronts enforce. */
  store: PolicyStore;
  /** Stops everything, calling first. */
  stop(): Promise<void>;
}

/** Servers and processes started so far, stopped in reverse order. */
class Started {
  private readonly stoppers: (() => Promise<void> | void)[] = [];
  add(stop: () => Promise<void> | void): void {
    this.stoppers.push(stop);
  }
  server(server: Server): void {
    this.add(() => {
      server.closeAllConnections();
      server.close();
    });
  }
  async stopAll(): Promise<void> {
    for (const stop of this.stoppers.splice(0).reverse()) await stop();
  }
}

/**
 * The production topology on 127.0.0.1, from deploy/: each service started from its manifest (its
 * env, its service account, K_SERVICE...) on a port of its own, behind a local Cloud Run front on
 * its public port that does what Cloud Run IAM does; receiving's policy from
 * deploy/receiving-policy.yaml in a PolicyStore under `stateDir`; the metadata emulator reporting
 * calling's account; the local Admin API that gcloud and `npm run local` change policies through.
 * Cloud Run URLs in the manifests (https://SERVICE-PROJECT_NUMBER.REGION.run.app) become the local
 * fronts' URLs.
 */
export async function startLocalChain(options: ChainOptions): Promise<LocalChain> {
  const deployed = readDeployed(options.baseEnv);
  const { projectId, projectNumber } = deployed;
  const frontUrl = (port: number) => `http://127.0.0.1:${port}`;
  const live = {
    receiving: new LiveService(deployed.receiving, frontUrl(options.ports.receiving)),
    calling: new LiveService(deployed.calling, frontUrl(options.ports.calling)),
  };
  const store = new PolicyStore(join(options.stateDir, 'policies'));
  // Nothing below can fail before this is in `started`, which gives it back.
  const started = new Started();
  started.add(claimStateDir(options.stateDir));
  const chain: Chain = {
    options,
    started,
    base: { GOOGLE_CLOUD_PROJECT: projectId, ...options.baseEnv },
    store,
    // The project's own policy: Google makes the default compute identity an Editor, and Editor
    // carries run.routes.invoke on every service (the tutorial's second stage).
    projectPolicy: {
      bindings: [
        {
          role: 'roles/editor',
          members: [`serviceAccount:${projectNumber}-compute@developer.gserviceaccount.com`],
        },
      ],
    },
    // Local "DNS": a service's run.app URL is its front here.
    runAppUrls: Object.values(live).map((service) => [
      `https://${service.manifest.name}-${projectNumber}.${REGION}.run.app`,
      service.url,
    ]),
  };
  const callingAccount = options.metadata?.SERVICE_ACCOUNT ?? deployed.calling.serviceAccount!;
  try {
    // The policies start from deploy/ each time; the Admin API changes them while the chain runs.
    store.reset('receiving', options.receivingPolicy ?? deployed.receivingPolicy);
    store.reset('calling', { bindings: [] });
    // Each Cloud Run service has its own metadata server, all minting tokens Google signs with one
    // key set: two emulators, one per service, sharing the key.
    const key = writeSigningKey(options.stateDir);
    const metadata = await startEmulator(
      chain,
      key.path,
      callingAccount,
      options.ports.metadata,
      options.metadata,
    );
    const receivingMetadata = await startEmulator(
      chain,
      key.path,
      deployed.receiving.serviceAccount!,
      await freePort(),
    );
    const jwksUrl = new URL(`${metadata.url}/oauth2/v3/certs`);
    const receiving = await startBehindFront(
      chain,
      live.receiving,
      receivingMetadata,
      jwksUrl,
      options.receiving,
    );
    const calling = {
      ...(await startBehindFront(chain, live.calling, metadata, jwksUrl, options.calling)),
      serviceAccount: callingAccount,
    };

    const admin = createAdminApi({
      projectId,
      projectNumber,
      region: REGION,
      services: new Map(Object.values(live).map((service) => [service.manifest.name, service])),
      store,
      verifyAccessToken: (await loadSigningKey(key.pem)).accessTokens.verify,
      logger: lineLogger('admin api', options),
    });
    await listen(admin, options.ports.admin, 'the local Admin API', 'ADMIN_PORT');
    chain.started.server(admin);
    const adminUrl = `http://localhost:${options.ports.admin}/`;
    writeChainFile(chain, {
      admin: adminUrl,
      metadataHost: new URL(metadata.url).host,
      projectId,
      projectNumber,
      region: REGION,
      gcloudConfig: join(options.stateDir, 'gcloud'),
    });
    return {
      calling,
      receiving,
      metadata,
      receivingMetadata,
      adminUrl,
      projectId,
      projectNumber,
      store,
      stop: () => chain.started.stopAll(),
    };
  } catch (err) {
    await chain.started.stopAll();
    throw err;
  }
}

/** What every part of a starting chain shares. */
interface Chain {
  options: ChainOptions;
  started: Started;
  /** The env every process starts from. */
  base: Record<string, string | undefined>;
  store: PolicyStore;
  projectPolicy: Policy;
  /** Each service's Cloud Run URL and its front's URL here. */
  runAppUrls: [string, string][];
}

/** A metadata server reporting `account`, signing with the chain's key. */
async function startEmulator(
  chain: Chain,
  keyFile: string,
  account: string,
  port: number,
  extra: Record<string, string | undefined> = {},
) {
  const process = await startService('metadata-emulator', {
    env: { ...chain.base, ...extra, SERVICE_ACCOUNT: account, SIGNING_KEY_FILE: keyFile },
    port,
    onLine: chain.options.onLine,
    readyPath: '/computeMetadata/v1/instance/id',
    readyHeaders: { 'Metadata-Flavor': 'Google' },
  });
  chain.started.add(() => process.stop());
  return process;
}

/** A service's own process, as its manifest runs it, and its front on its public port. */
async function startBehindFront(
  chain: Chain,
  service: LiveService,
  metadata: ServiceProcess,
  jwksUrl: URL,
  extra: Record<string, string | undefined> | undefined,
): Promise<LocalService> {
  const { manifest } = service;
  const localized = Object.entries(manifest.env).map(([k, v]) => [
    k,
    chain.runAppUrls.reduce((text, [from, to]) => text.replaceAll(from, to), v),
  ]);
  const process = await startService(manifest.name as 'calling' | 'receiving', {
    env: {
      ...chain.base,
      ...Object.fromEntries(localized),
      // Cloud Run's container contract.
      K_SERVICE: manifest.name,
      K_REVISION: `${manifest.name}-00001-loc`,
      K_CONFIGURATION: manifest.name,
      // Its metadata server is its only credential source, as on Cloud Run.
      GCE_METADATA_HOST: new URL(metadata.url).host,
      GCE_METADATA_IP: undefined,
      GOOGLE_APPLICATION_CREDENTIALS: undefined,
      ...extra,
    },
    port: await freePort(),
    onLine: chain.options.onLine,
  });
  chain.started.add(() => process.stop());
  const front = createCloudRunFront({
    service: () => service.manifest,
    url: service.url,
    target: process.url,
    jwksUrl,
    policies: () => [chain.store.current(manifest.name), chain.projectPolicy],
    logger: lineLogger(`${manifest.name} front`, chain.options),
  });
  await listen(
    front,
    Number(new URL(service.url).port),
    `${manifest.name}'s front`,
    `${manifest.name.toUpperCase()}_PORT`,
  );
  chain.started.server(front);
  return {
    name: manifest.name,
    url: service.url,
    process,
    manifest,
    serviceAccount: manifest.serviceAccount!,
  };
}

/** chain.json, and the gcloud config directory it names; removed when the chain stops. */
function writeChainFile(chain: Chain, description: ChainFile): void {
  const path = chainFilePath(chain.options.stateDir);
  mkdirSync(description.gcloudConfig, { recursive: true });
  // gcloud caches its access token for an hour; one from the last chain's key is refused by this one's.
  rmSync(join(description.gcloudConfig, 'access_tokens.db'), { force: true });
  writeFileSync(path, `${JSON.stringify(description, null, 2)}\n`);
  chain.started.add(() => rmSync(path, { force: true }));
}

/** deploy/, resolved with the local project's values, read once: both manifests and receiving's policy. */
function readDeployed(env: Record<string, string | undefined> | undefined) {
  const project = loadEmulatorConfig({ ...env, SERVICE_ACCOUNT: 'x@example.com' });
  const values = {
    PROJECT_ID: project.projectId,
    PROJECT_NUMBER: project.projectNumber,
    REGION,
    RECEIVING_IMAGE: 'localhost/cloudrun-auth/receiving:local',
    CALLING_IMAGE: 'localhost/cloudrun-auth/calling:local',
  };
  const rendered = new Map(
    renderDeploy(readDeployDir(join(root, 'deploy')), values).map((f) => [f.name, f.text]),
  );
  return {
    projectId: project.projectId,
    projectNumber: project.projectNumber,
    receiving: parseServiceManifest(rendered.get('receiving.yaml')!, 'deploy/receiving.yaml'),
    calling: parseServiceManifest(rendered.get('calling.yaml')!, 'deploy/calling.yaml'),
    receivingPolicy: parsePolicy(
      rendered.get('receiving-policy.yaml')!,
      'deploy/receiving-policy.yaml',
    ),
  };
}

/** A fresh signing key for the emulators, kept (0600) in the state directory. */
function writeSigningKey(stateDir: string): { path: string; pem: string } {
  mkdirSync(stateDir, { recursive: true });
  const path = join(stateDir, 'metadata-signing-key.pem');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  writeFileSync(path, pem, { mode: 0o600 });
  chmodSync(path, 0o600); // the mode above holds only for a file it creates
  return { path, pem };
}

/** A logger whose JSON lines go to onLine, under `name`. */
function lineLogger(name: string, options: ChainOptions): Logger {
  // A bad LOG_LEVEL is refused, naming it, by the services the chain starts.
  const level = LOG_LEVELS.find((known) => known === options.baseEnv?.LOG_LEVEL) ?? 'info';
  return createLogger(
    name.replace(' ', '-'),
    level,
    new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n')) if (line !== '') options.onLine?.(name, line);
        done();
      },
    }),
  );
}

function listen(server: Server, port: number, what: string, variable: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new Error(
              `port ${port} on 127.0.0.1 (${what}) is already in use: stop what holds it or set ${variable}`,
            )
          : err,
      ),
    );
    server.listen(port, '127.0.0.1', () => resolve());
  });
}
