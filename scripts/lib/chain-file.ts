/**
 * STATE_DIR/chain.json: how a running chain is reached (written by `npm start`, removed when it
 * stops), read by `npm run local` and `npm run local-env`.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ChainFile {
  /** The Admin API, as gcloud's endpoint override names it (http://localhost:PORT/). */
  admin: string;
  /** calling's metadata server, host:port (GCE_METADATA_ROOT). */
  metadataHost: string;
  projectId: string;
  projectNumber: string;
  region: string;
  /** A gcloud config directory of the chain's own (CLOUDSDK_CONFIG). */
  gcloudConfig: string;
}

const root = fileURLToPath(new URL('../../', import.meta.url).href.replace(/\/dist\/$/, '/'));

/** The state directory: LOCAL_STATE_DIR, else .local-state at the repository's root. */
export const stateDirOf = (env: NodeJS.ProcessEnv): string =>
  env.LOCAL_STATE_DIR?.trim() || join(root, '.local-state');

export const chainFilePath = (stateDir: string): string => join(stateDir, 'chain.json');

/**
 * Takes the state directory for this process (STATE_DIR/chain.lock, holding its pid), so that two
 * chains never share one policy store; returns what gives it back. A lock whose process is gone is
 * taken over.
 */
export function claimStateDir(stateDir: string): () => void {
  mkdirSync(stateDir, { recursive: true });
  const lock = join(stateDir, 'chain.lock');
  for (;;) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return () => rmSync(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = readFileSync(lock, 'utf8');
    const pid = Number.parseInt(held, 10);
    if (isRunning(pid)) {
      throw new Error(
        `another chain (pid ${pid}) is running with its state in ${stateDir}: stop it, or give this one another LOCAL_STATE_DIR`,
      );
    }
    // Taken over only if it still names the process that is gone (another start may have taken it
    // over meanwhile); then it is tried afresh.
    if (readFileSync(lock, 'utf8') === held) rmSync(lock, { force: true });
  }
}

function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The running chain's chain.json; an Error saying what to do when there is none or it is not one. */
export function readChainFile(env: NodeJS.ProcessEnv = process.env): ChainFile {
  const path = chainFilePath(stateDirOf(env));
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new Error(`${path} cannot be read: ${(err as Error).message}`);
    throw new Error(
      `no chain is running with its state in ${stateDirOf(env)} (no chain.json): start it with npm start (LOCAL_STATE_DIR names its state directory)`,
    );
  }
  let chain: Partial<Record<keyof ChainFile, unknown>>;
  try {
    chain = JSON.parse(text) as typeof chain;
  } catch {
    chain = {};
  }
  const fields: (keyof ChainFile)[] = [
    'admin',
    'metadataHost',
    'projectId',
    'projectNumber',
    'region',
    'gcloudConfig',
  ];
  const missing = fields.filter((field) => typeof chain[field] !== 'string' || chain[field] === '');
  if (missing.length > 0)
    throw new Error(
      `${path} is not what npm start writes (${missing.join(', ')} missing): restart npm start`,
    );
  return chain as ChainFile;
}

/** The environment that points gcloud at the chain (what `npm run local-env` exports). */
export function gcloudEnv(chain: ChainFile): Record<string, string> {
  return {
    CLOUDSDK_CONFIG: chain.gcloudConfig,
    GCE_METADATA_ROOT: chain.metadataHost,
    CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN: chain.admin,
    CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER: chain.admin,
    CLOUDSDK_CORE_PROJECT: chain.projectId,
    CLOUDSDK_RUN_REGION: chain.region,
  };
}
