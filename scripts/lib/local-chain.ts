import { loadEmulatorConfig, type EmulatorConfig } from '../../local/metadata-emulator/config.js';
import { startService, type ServiceProcess } from './processes.js';

export interface ChainPorts {
  calling: number;
  receiving: number;
  metadata: number;
}

export interface ChainOptions {
  ports: ChainPorts;
  /** The environment the services inherit (PROJECT_ID, PROJECT_NUMBER, SERVICE_ACCOUNT, LOG_LEVEL...). */
  baseEnv?: Record<string, string | undefined>;
  /** Extra or overriding env per service, e.g. { calling: { AUTH: 'none' } }. */
  calling?: Record<string, string | undefined>;
  receiving?: Record<string, string | undefined>;
  metadata?: Record<string, string | undefined>;
  onLine?: (name: string, line: string) => void;
}

export interface LocalChain {
  calling: ServiceProcess;
  receiving: ServiceProcess;
  metadata: ServiceProcess;
  /** The identity the emulator mints tokens for. */
  identity: EmulatorConfig;
  /** Stops all three, calling first. */
  stop(): Promise<void>;
}

/**
 * The three services as separate processes on 127.0.0.1, wired as on Cloud Run: calling gets its
 * tokens from the emulator; receiving verifies them against the emulator's keys, with its own URL
 * as the audience and the emulator's identity as its invoker.
 */
export async function startLocalChain(options: ChainOptions): Promise<LocalChain> {
  const identity = loadEmulatorConfig({ ...options.baseEnv, ...options.metadata, PORT: String(options.ports.metadata) });
  // One project for every service's log lines (their trace field), as on Cloud Run.
  const base = { GOOGLE_CLOUD_PROJECT: identity.projectId, ...options.baseEnv };
  const metadataEnv = { ...base, ...options.metadata };
  const metadataHost = `127.0.0.1:${options.ports.metadata}`;
  const receivingUrl = `http://127.0.0.1:${options.ports.receiving}`;
  const started: ServiceProcess[] = [];
  const stop = async () => {
    for (const service of [...started].reverse()) await service.stop();
  };
  try {
    const metadata = await startService('metadata-emulator', {
      env: metadataEnv,
      port: options.ports.metadata,
      onLine: options.onLine,
      readyPath: '/computeMetadata/v1/instance/id',
      readyHeaders: { 'Metadata-Flavor': 'Google' },
    });
    started.push(metadata);
    const receiving = await startService('receiving', {
      env: {
        ...base,
        TOKEN_CHECK: 'verify',
        AUDIENCES: receivingUrl,
        JWKS_URL: `http://${metadataHost}/oauth2/v3/certs`,
        INVOKERS: `serviceAccount:${identity.serviceAccount}`,
        ...options.receiving,
      },
      port: options.ports.receiving,
      onLine: options.onLine,
    });
    started.push(receiving);
    const calling = await startService('calling', {
      env: {
        ...base,
        URL: receivingUrl,
        // The emulator is calling's only credential source, as the metadata server is on Cloud Run.
        GCE_METADATA_HOST: metadataHost,
        GCE_METADATA_IP: undefined,
        GOOGLE_APPLICATION_CREDENTIALS: undefined,
        ...options.calling,
      },
      port: options.ports.calling,
      onLine: options.onLine,
    });
    started.push(calling);
    return { calling, receiving, metadata, identity, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
