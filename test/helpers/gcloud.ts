import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface GcloudSdk {
  /** gcloud's install root. */
  readonly root: string;
  /** gcloud's bundled python, which carries gcloud's own libraries and Python google-auth. */
  readonly python: string;
  /** PYTHONPATH that makes `googlecloudsdk` and its third-party libraries importable. */
  readonly pythonPath: string;
}

/**
 * gcloud's install, or undefined where gcloud is not installed (Cloud Build's node image runs
 * `npm test` without it). These machines, and so CI, have gcloud: there its absence is a failure,
 * not a skip, so the checks that need it cannot silently stop running.
 */
export async function findGcloud(what: string): Promise<GcloudSdk | undefined> {
  let root: string | undefined;
  try {
    const { stdout } = await run('gcloud', ['info', '--format=value(installation.sdk_root)'], {
      timeout: 60_000,
    });
    root = stdout.trim() || undefined;
  } catch {
    root = undefined;
  }
  if (root === undefined) {
    if (process.env.CI) throw new Error(`gcloud is not installed: ${what} cannot be checked`);
    console.warn(`gcloud is not installed: ${what} not checked`);
    return undefined;
  }
  return {
    root,
    python: join(root, 'platform/bundledpythonunix/bin/python3'),
    pythonPath: `${join(root, 'lib')}:${join(root, 'lib/third_party')}`,
  };
}

const checker = fileURLToPath(new URL('../deploy/check_run_manifest.py', import.meta.url));

/**
 * gcloud's verdict on a resolved Cloud Run manifest (`service`, as `gcloud run services replace`
 * parses it) or IAM policy (`policy`, as `set-iam-policy` does): `OK ...` or `ERROR <its message>`.
 */
export async function checkWithGcloud(
  sdk: GcloudSdk,
  kind: 'service' | 'policy',
  file: string,
): Promise<string> {
  try {
    const { stdout } = await run(sdk.python, [checker, kind, file], {
      timeout: 60_000,
      env: { ...process.env, PYTHONPATH: sdk.pythonPath, CLOUDSDK_CORE_DISABLE_PROMPTS: '1' },
    });
    return stdout.trim();
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? err).trim();
  }
}
