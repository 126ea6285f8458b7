import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ChainFile } from '../../scripts/lib/chain-file.js';

const run = promisify(execFile);
const command = fileURLToPath(new URL('../../dist/scripts/local-env.js', import.meta.url));

describe('npm run local-env (the built script, as a process)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'local-env-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('prints export lines a POSIX shell evals as they are, whatever the paths hold', async () => {
    // A state directory whose name a shell would otherwise expand, split or end a quote in.
    const state = join(dir, 'it\'s $(touch pwned) `x` "q" ; a b');
    mkdirSync(state);
    const chain: ChainFile = {
      admin: 'http://localhost:8083/',
      metadataHost: '127.0.0.1:8082',
      projectId: 'local-project',
      projectNumber: '123456789012',
      region: 'us-central1',
      gcloudConfig: join(state, 'gcloud'),
    };
    writeFileSync(join(state, 'chain.json'), JSON.stringify(chain));
    const { stdout } = await run(process.execPath, [command], {
      env: { ...process.env, LOCAL_STATE_DIR: state },
    });
    const [unset, ...exports] = stdout.trimEnd().split('\n');
    // What would make gcloud act as the user, with the user's config, goes first.
    expect(unset).toBe(
      'unset CLOUDSDK_ACTIVE_CONFIG_NAME CLOUDSDK_CORE_ACCOUNT CLOUDSDK_AUTH_ACCESS_TOKEN CLOUDSDK_AUTH_ACCESS_TOKEN_FILE ' +
        'CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT',
    );
    expect(exports.every((line) => line.startsWith('export '))).toBe(true);
    const names = [
      'CLOUDSDK_CONFIG',
      'GCE_METADATA_ROOT',
      'CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN',
      'CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER',
      'CLOUDSDK_CORE_PROJECT',
      'CLOUDSDK_RUN_REGION',
    ];
    const script = `${stdout}\nprintf '%s\\n' ${names.map((n) => `"$${n}"`).join(' ')} "\${CLOUDSDK_AUTH_ACCESS_TOKEN-unset}" "\${CLOUDSDK_CORE_ACCOUNT-unset}"`;
    const { stdout: values } = await run('sh', ['-c', script], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        CLOUDSDK_AUTH_ACCESS_TOKEN: 'ya29.the-users-own',
        CLOUDSDK_CORE_ACCOUNT: 'me@example.com',
      },
    });
    expect(values).toBe(
      `${[chain.gcloudConfig, '127.0.0.1:8082', chain.admin, chain.admin, 'local-project', 'us-central1', 'unset', 'unset'].join('\n')}\n`,
    );
    await expect(run('test', ['-e', join(dir, 'pwned')])).rejects.toThrow();
  });

  it('says when the regional host gcloud calls for describe and replace does not resolve here', async () => {
    const chain = {
      admin: 'http://unresolvable.invalid:8083/',
      metadataHost: 'h',
      projectId: 'p',
      projectNumber: '1',
      region: 'us-central1',
      gcloudConfig: 'g',
    };
    writeFileSync(join(dir, 'chain.json'), JSON.stringify(chain));
    const { stdout, stderr } = await run(process.execPath, [command], {
      env: { ...process.env, LOCAL_STATE_DIR: dir },
    });
    expect(stdout).toContain(
      "export CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN='http://unresolvable.invalid:8083/'",
    );
    expect(stderr).toBe(
      'local-env: gcloud run services describe and replace call us-central1-unresolvable.invalid, which does not resolve here; ' +
        "for them, add it to /etc/hosts: echo '127.0.0.1 us-central1-unresolvable.invalid' | sudo tee -a /etc/hosts\n",
    );
  });

  it('exits 1 with what to do, and prints nothing to eval, when no chain runs', async () => {
    const result = await run(process.execPath, [command], {
      env: { ...process.env, LOCAL_STATE_DIR: dir },
    }).catch((err: { code: number; stdout: string; stderr: string }) => err);
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect((result as { stderr: string }).stderr).toContain(
      `local-env: no chain is running with its state in ${dir} (no chain.json): start it with npm start`,
    );
  });
});
