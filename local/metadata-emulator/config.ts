import { EnvReader, LOG_LEVELS, type Env, type LogLevel } from '../../services/shared/env.js';

export interface EmulatorConfig {
  logLevel: LogLevel;
  host: string;
  port: number;
  projectId: string;
  projectNumber: string;
  /** The identity tokens are minted for; `default` is an alias of it, as on Cloud Run. */
  serviceAccount: string;
  /** A PKCS#8 PEM RSA key to sign with (SIGNING_KEY_FILE); a fresh key per start when absent. */
  signingKeyFile?: string;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const PROJECT_ID = /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/;

export function loadEmulatorConfig(env: Env): EmulatorConfig {
  const read = new EnvReader('metadata-emulator', env);
  const projectId = read.raw('PROJECT_ID') ?? 'local-project';
  if (!PROJECT_ID.test(projectId)) {
    read.problem(
      `PROJECT_ID must be a Google Cloud project id (6-30 of a-z, 0-9, -), got "${projectId}"`,
    );
  }
  const projectNumber = read.raw('PROJECT_NUMBER') ?? '123456789012';
  if (!/^[1-9]\d{0,18}$/.test(projectNumber)) {
    read.problem(`PROJECT_NUMBER must be digits, got "${projectNumber}"`);
  }
  const serviceAccount =
    read.raw('SERVICE_ACCOUNT') ?? `${projectNumber}-compute@developer.gserviceaccount.com`;
  if (!EMAIL.test(serviceAccount)) {
    read.problem(`SERVICE_ACCOUNT must be a service account email, got "${serviceAccount}"`);
  }
  const signingKeyFile = read.raw('SIGNING_KEY_FILE');
  return read.done({
    logLevel: read.oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
    host: read.raw('HOST') ?? '127.0.0.1',
    port: read.port('PORT', 8082),
    projectId,
    projectNumber,
    serviceAccount,
    ...(signingKeyFile === undefined ? {} : { signingKeyFile }),
  });
}
