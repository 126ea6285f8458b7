import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
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
import { createLogger, type Logger } from '../../services/shared/logger.js';
import { chainFilePath, type ChainFile } from './chain-file.js';
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
  const urls = { receiving: frontUrl(options.ports.receiving), calling: frontUrl(options.ports.calling) };
  // Local "DNS": a service's run.app URL is its front here.
  const localize = (env: Record<string, string>) =>
    Object.fromEntries(
      Object.entries(env).map(([k, v]) => [
        k,
        Object.entries(urls).reduce((text, [name, url]) => text.replaceAll(`https://${name}-${projectNumber}.${REGION}.run.app`, url), v),
      ]),
    );

  // The policies start from deploy/ each time; the Admin API changes them while the chain runs.
  const store = new PolicyStore(join(options.stateDir, 'policies'));
  store.reset('receiving', options.receivingPolicy ?? deployed.receivingPolicy);
  store.reset('calling', { bindings: [] });
  // The project's own policy: Google makes the default compute identity an Editor, and Editor
  // carries run.routes.invoke on every service (the tutorial's second stage).
  const projectPolicy: Policy = {
    bindings: [{ role: 'roles/editor', members: [`serviceAccount:${projectNumber}-compute@developer.gserviceaccount.com`] }],
  };
  const live = {
    receiving: new LiveService(deployed.receiving, urls.receiving),
    calling: new LiveService(deployed.calling, urls.calling),
  };

  const keyFile = writeSigningKey(options.stateDir);
  const started = new Started();
  const base = { GOOGLE_CLOUD_PROJECT: projectId, ...options.baseEnv };
  const logger = (name: string) => lineLogger(name, options);
  const callingAccount = options.metadata?.SERVICE_ACCOUNT ?? deployed.calling.serviceAccount!;
  try {
    // Each Cloud Run service has its own metadata server, all minting tokens Google signs with one
    // key set: two emulators, one per service, sharing the key.
    const emulator = async (account: string, port: number, extra: Record<string, string | undefined> = {}) => {
      const process = await startService('metadata-emulator', {
        env: { ...base, ...extra, SERVICE_ACCOUNT: account, SIGNING_KEY_FILE: keyFile.path },
        port,
        onLine: options.onLine,
        readyPath: '/computeMetadata/v1/instance/id',
        readyHeaders: { 'Metadata-Flavor': 'Google' },
      });
      started.add(() => process.stop());
      return process;
    };
    const metadata = await emulator(callingAccount, options.ports.metadata, options.metadata);
    const receivingMetadata = await emulator(deployed.receiving.serviceAccount!, await freePort());
    const jwksUrl = new URL(`${metadata.url}/oauth2/v3/certs`);

    /** A service's own process, as its manifest runs it, and its front on its public port. */
    const behindFront = async (service: LiveService, metadataUrl: string, extra: Record<string, string | undefined> | undefined) => {
      const manifest = service.manifest;
      const process = await startService(manifest.name as 'calling' | 'receiving', {
        env: {
          ...base,
          ...localize(manifest.env),
          // Cloud Run's container contract.
          K_SERVICE: manifest.name,
          K_REVISION: `${manifest.name}-00001-loc`,
          K_CONFIGURATION: manifest.name,
          // Its metadata server is its only credential source, as on Cloud Run.
          GCE_METADATA_HOST: new URL(metadataUrl).host,
          GCE_METADATA_IP: undefined,
          GOOGLE_APPLICATION_CREDENTIALS: undefined,
          ...extra,
        },
        port: await freePort(),
        onLine: options.onLine,
      });
      started.add(() => process.stop());
      const front = createCloudRunFront({
        service: () => service.manifest,
        url: service.url,
        target: process.url,
        jwksUrl,
        policies: () => [store.current(manifest.name), projectPolicy],
        logger: logger(`${manifest.name} front`),
      });
      await listen(front, Number(new URL(service.url).port), `${manifest.name}'s front`, `${manifest.name.toUpperCase()}_PORT`);
      started.server(front);
      return { name: manifest.name, url: service.url, process, manifest, serviceAccount: manifest.serviceAccount! };
    };
    const receiving = await behindFront(live.receiving, receivingMetadata.url, options.receiving);
    const calling = {
      ...(await behindFront(live.calling, metadata.url, options.calling)),
      serviceAccount: callingAccount,
    };

    const admin = createAdminApi({
      projectId,
      projectNumber,
      region: REGION,
      services: new Map(Object.values(live).map((service) => [service.manifest.name, service])),
      store,
      verifyAccessToken: (await loadSigningKey(keyFile.pem)).accessTokens.verify,
      logger: logger('admin api'),
    });
    await listen(admin, options.ports.admin, 'the local Admin API', 'ADMIN_PORT');
    started.server(admin);
    const adminUrl = `http://localhost:${options.ports.admin}/`;

    const chainFile = chainFilePath(options.stateDir);
    const description: ChainFile = {
      admin: adminUrl,
      metadataHost: new URL(metadata.url).host,
      projectId,
      projectNumber,
      region: REGION,
      gcloudConfig: join(options.stateDir, 'gcloud'),
    };
    mkdirSync(description.gcloudConfig, { recursive: true });
    writeFileSync(chainFile, `${JSON.stringify(description, null, 2)}\n`);
    started.add(() => rmSync(chainFile, { force: true }));

    return {
      calling,
      receiving,
      metadata,
      receivingMetadata,
      adminUrl,
      projectId,
      projectNumber,
      store,
      stop: () => started.stopAll(),
    };
  } catch (err) {
    await started.stopAll();
    throw err;
  }
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
  const rendered = new Map(renderDeploy(readDeployDir(join(root, 'deploy')), values).map((f) => [f.name, f.text]));
  return {
    projectId: project.projectId,
    projectNumber: project.projectNumber,
    receiving: parseServiceManifest(rendered.get('receiving.yaml')!, 'deploy/receiving.yaml'),
    calling: parseServiceManifest(rendered.get('calling.yaml')!, 'deploy/calling.yaml'),
    receivingPolicy: parsePolicy(rendered.get('receiving-policy.yaml')!, 'deploy/receiving-policy.yaml'),
  };
}

/** A fresh signing key for the emulators, kept (0600) in the state directory. */
function writeSigningKey(stateDir: string): { path: string; pem: string } {
  mkdirSync(stateDir, { recursive: true });
  const path = join(stateDir, 'metadata-signing-key.pem');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  writeFileSync(path, pem, { mode: 0o600 });
  return { path, pem };
}

/** A logger whose JSON lines go to onLine, under `name`. */
function lineLogger(name: string, options: ChainOptions): Logger {
  return createLogger(name.replace(' ', '-'), {
    level: options.baseEnv?.LOG_LEVEL ?? 'info',
    destination: new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n')) if (line !== '') options.onLine?.(name, line);
        done();
      },
    }),
  });
}

function listen(server: Server, port: number, what: string, variable: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new Error(`port ${port} on 127.0.0.1 (${what}) is already in use: stop what holds it or set ${variable}`)
          : err,
      ),
    );
    server.listen(port, '127.0.0.1', () => resolve());
  });
}
