import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createCloudRunFront } from '../../local/cloud-run-front/front.js';
import { PolicyFile, parsePolicy, writePolicyFile, type Policy } from '../../local/cloud-run-front/policy.js';
import { parseServiceManifest, type ServiceManifest } from '../../local/cloud-run-front/service.js';
import { loadEmulatorConfig } from '../../local/metadata-emulator/config.js';
import { createLogger } from '../../services/shared/logger.js';
import { readDeployDir, renderDeploy } from './deploy-manifests.js';
import { freePort, startService, type ServiceProcess } from './processes.js';

const root = fileURLToPath(new URL('../../', import.meta.url).href.replace(/\/dist\/$/, '/'));

export interface ChainPorts {
  /** calling's front (public). */
  calling: number;
  /** receiving's front (private). */
  receiving: number;
  metadata: number;
}

export interface ChainOptions {
  ports: ChainPorts;
  /** Where the live IAM policies are kept (`npm run local` edits them there). */
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
  projectId: string;
  projectNumber: string;
  /** The live policy file of receiving. */
  receivingPolicyFile: string;
  /** Stops everything, calling first. */
  stop(): Promise<void>;
}

/** The file a service's live policy is kept in. */
export const policyPath = (stateDir: string, service: string): string => join(stateDir, 'policies', `${service}.yaml`);

/**
 * The production topology on 127.0.0.1, from deploy/: each service started from its manifest (its
 * env, its service account, K_SERVICE...) on a port of its own, behind a local Cloud Run front on
 * its public port that does what Cloud Run IAM does; receiving's policy from
 * deploy/receiving-policy.yaml, live in `stateDir`; the metadata emulator reporting calling's
 * account. Cloud Run URLs in the manifests (https://SERVICE-PROJECT_NUMBER.REGION.run.app) become
 * the local fronts' URLs.
 */
export async function startLocalChain(options: ChainOptions): Promise<LocalChain> {
  const project = loadEmulatorConfig({ ...options.baseEnv, SERVICE_ACCOUNT: 'x@example.com' });
  const values = {
    PROJECT_ID: project.projectId,
    PROJECT_NUMBER: project.projectNumber,
    REGION: 'us-central1',
    RECEIVING_IMAGE: 'localhost/cloudrun-auth/receiving:local',
    CALLING_IMAGE: 'localhost/cloudrun-auth/calling:local',
  };
  const rendered = new Map(renderDeploy(readDeployDir(join(root, 'deploy')), values).map((f) => [f.name, f.text]));
  const receivingManifest = parseServiceManifest(rendered.get('receiving.yaml')!, 'deploy/receiving.yaml');
  const callingManifest = parseServiceManifest(rendered.get('calling.yaml')!, 'deploy/calling.yaml');
  const frontUrl = (port: number) => `http://127.0.0.1:${port}`;
  // Local "DNS": a service's run.app URL is its front here.
  const localUrls = new Map([
    [`https://receiving-${values.PROJECT_NUMBER}.${values.REGION}.run.app`, frontUrl(options.ports.receiving)],
    [`https://calling-${values.PROJECT_NUMBER}.${values.REGION}.run.app`, frontUrl(options.ports.calling)],
  ]);
  const localize = (env: Record<string, string>) =>
    Object.fromEntries(Object.entries(env).map(([k, v]) => [k, [...localUrls].reduce((text, [from, to]) => text.replaceAll(from, to), v)]));

  // receiving's policy starts from deploy/ each time; `npm run local` changes it while running.
  const receivingPolicyFile = policyPath(options.stateDir, 'receiving');
  mkdirSync(join(options.stateDir, 'policies'), { recursive: true });
  writePolicyFile(
    receivingPolicyFile,
    options.receivingPolicy ?? parsePolicy(rendered.get('receiving-policy.yaml')!, 'deploy/receiving-policy.yaml'),
  );
  const policy = new PolicyFile(receivingPolicyFile);
  // The project's own policy: Google makes the default compute identity an Editor, and Editor
  // carries run.routes.invoke on every service (the tutorial's second stage).
  const projectPolicy: Policy = {
    bindings: [{ role: 'roles/editor', members: [`serviceAccount:${project.projectNumber}-compute@developer.gserviceaccount.com`] }],
  };

  const callingAccount = options.metadata?.SERVICE_ACCOUNT ?? callingManifest.serviceAccount!;
  const metadataHost = `127.0.0.1:${options.ports.metadata}`;
  const base = { GOOGLE_CLOUD_PROJECT: project.projectId, ...options.baseEnv };
  const started: ServiceProcess[] = [];
  const fronts: Server[] = [];
  const stop = async () => {
    for (const front of fronts) {
      front.closeAllConnections();
      front.close();
    }
    for (const service of [...started].reverse()) await service.stop();
  };
  /** Cloud Run's container contract: PORT, K_SERVICE, K_REVISION, K_CONFIGURATION. */
  const containerEnv = (manifest: ServiceManifest) => ({
    K_SERVICE: manifest.name,
    K_REVISION: `${manifest.name}-00001-loc`,
    K_CONFIGURATION: manifest.name,
  });
  const frontLogger = (name: string) =>
    createLogger(`${name}-front`, {
      level: options.baseEnv?.LOG_LEVEL ?? 'info',
      destination: new Writable({
        write(chunk, _encoding, done) {
          for (const line of String(chunk).split('\n')) if (line !== '') options.onLine?.(`${name} front`, line);
          done();
        },
      }),
    });

  // Each Cloud Run service has its own metadata server, all minting tokens Google signs with one
  // key set: two emulators, one per service, sharing a key kept (0600) in the state directory.
  const keyFile = join(options.stateDir, 'metadata-signing-key.pem');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const emulator = async (account: string, port: number, extra: Record<string, string | undefined> = {}) => {
    const process = await startService('metadata-emulator', {
      env: { ...base, ...extra, SERVICE_ACCOUNT: account, SIGNING_KEY_FILE: keyFile },
      port,
      onLine: options.onLine,
      readyPath: '/computeMetadata/v1/instance/id',
      readyHeaders: { 'Metadata-Flavor': 'Google' },
    });
    started.push(process);
    return process;
  };

  try {
    const metadata = await emulator(callingAccount, options.ports.metadata, options.metadata);
    const jwksUrl = new URL(`http://${metadataHost}/oauth2/v3/certs`);
    const receivingMetadata = await emulator(receivingManifest.serviceAccount!, await freePort());

    const receivingProcess = await startService('receiving', {
      env: {
        ...base,
        ...localize(receivingManifest.env),
        ...containerEnv(receivingManifest),
        GCE_METADATA_HOST: new URL(receivingMetadata.url).host,
        GCE_METADATA_IP: undefined,
        GOOGLE_APPLICATION_CREDENTIALS: undefined,
        ...options.receiving,
      },
      port: await freePort(),
      onLine: options.onLine,
    });
    started.push(receivingProcess);
    const callingProcess = await startService('calling', {
      env: {
        ...base,
        ...localize(callingManifest.env),
        ...containerEnv(callingManifest),
        // The metadata emulator is calling's only credential source, as the metadata server is on Cloud Run.
        GCE_METADATA_HOST: metadataHost,
        GCE_METADATA_IP: undefined,
        GOOGLE_APPLICATION_CREDENTIALS: undefined,
        ...options.calling,
      },
      port: await freePort(),
      onLine: options.onLine,
    });
    started.push(callingProcess);

    const listen = async (manifest: ServiceManifest, target: ServiceProcess, port: number, policies: () => Policy[]) => {
      const front = createCloudRunFront({
        service: manifest,
        url: frontUrl(port),
        target: target.url,
        jwksUrl,
        policies,
        logger: frontLogger(manifest.name),
      });
      fronts.push(front);
      await new Promise<void>((resolve, reject) => {
        front.once('error', (err: NodeJS.ErrnoException) =>
          reject(
            err.code === 'EADDRINUSE'
              ? new Error(
                  `port ${port} on 127.0.0.1 (${manifest.name}'s front) is already in use: stop what holds it or set ${manifest.name.toUpperCase()}_PORT`,
                )
              : err,
          ),
        );
        front.listen(port, '127.0.0.1', () => resolve());
      });
    };
    await listen(receivingManifest, receivingProcess, options.ports.receiving, () => [policy.current(), projectPolicy]);
    await listen(callingManifest, callingProcess, options.ports.calling, () => []);

    return {
      calling: {
        name: 'calling',
        url: frontUrl(options.ports.calling),
        process: callingProcess,
        manifest: callingManifest,
        serviceAccount: callingAccount,
      },
      receiving: {
        name: 'receiving',
        url: frontUrl(options.ports.receiving),
        process: receivingProcess,
        manifest: receivingManifest,
        serviceAccount: receivingManifest.serviceAccount!,
      },
      metadata,
      receivingMetadata,
      projectId: project.projectId,
      projectNumber: project.projectNumber,
      receivingPolicyFile,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
