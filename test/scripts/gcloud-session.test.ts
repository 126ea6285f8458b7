import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { findGcloud } from '../helpers/gcloud.js';
import { loopbackNamespace, type LoopbackNamespace, type Result } from '../helpers/netns.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const SA = 'serviceAccount:cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com';
const CONCURRENT =
  'ABORTED: There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.';

/**
 * Real gcloud drives `npm start`: both run in a loopback-only network namespace whose /etc/hosts
 * gives the Admin API's regional host name (us-central1-localhost) to 127.0.0.1, as a developer's
 * /etc/hosts line does. The shell is set up as the docs say: eval "$(npm run -s local-env)".
 */
describe('gcloud against npm start (real gcloud, real processes, loopback only)', () => {
  let ns: LoopbackNamespace | undefined;
  let chain: ChildProcess | undefined;
  let stateDir: string;
  let output = '';
  beforeAll(async () => {
    if ((await findGcloud('gcloud against the local Admin API')) === undefined) return;
    ns = await loopbackNamespace(
      '127.0.0.1 localhost us-central1-localhost\n',
      'gcloud against the local Admin API',
    );
    if (ns === undefined) return;
    stateDir = mkdtempSync(join(tmpdir(), 'gcloud-session-'));
    // The namespace has its own loopback: npm start's default ports are free there.
    chain = ns.spawn(process.execPath, [join(root, 'dist/scripts/start-local.js')], {
      ...process.env,
      LOCAL_STATE_DIR: stateDir,
    });
    chain.stdout!.on('data', (chunk) => (output += chunk));
    chain.stderr!.on('data', (chunk) => (output += chunk));
    for (let i = 0; i < 400 && !output.includes('Ctrl-C stops them all'); i += 1)
      await new Promise((r) => setTimeout(r, 50));
    if (!output.includes('Ctrl-C stops them all'))
      throw new Error(`npm start did not come up:\n${output}`);
  }, 90_000);
  afterAll(async () => {
    if (chain !== undefined && chain.exitCode === null) {
      chain.kill('SIGINT');
      await new Promise((resolve) => chain!.once('exit', resolve));
    }
    ns?.close();
    if (stateDir !== undefined) rmSync(stateDir, { recursive: true, force: true });
  });

  /** A bash session in the namespace, set up by local-env, with gcloud prompting for nothing; its output without colours. */
  const session = async (script: string, timeoutMs = 120_000): Promise<Result> => {
    const result = await ns!.run(
      'bash',
      ['-c', `set -u\ncd '${root}'\neval "$(npm run -s local-env)"\n${script}`],
      {
        env: { ...process.env, LOCAL_STATE_DIR: stateDir, CLOUDSDK_CORE_DISABLE_PROMPTS: '1' },
        timeoutMs,
      },
    );
    const plain = (text: string) => text.replace(/\x1b\[[\d;]*m/g, '');
    return { ...result, stdout: plain(result.stdout), stderr: plain(result.stderr) };
  };
  const gcloud = (args: string) => session(`gcloud run services ${args}`);
  const curl = async (url: string) => (await session(`curl -s -w ' %{http_code}' ${url}`)).stdout;
  const members = () =>
    (
      parse(readFileSync(join(stateDir, 'policies/receiving.yaml'), 'utf8')) as {
        bindings?: { members: string[] }[];
      }
    ).bindings?.flatMap((b) => b.members) ?? [];

  it('local-env points gcloud at the chain with a config of its own; nothing of the user’s', async () => {
    if (ns === undefined) return;
    const names = [
      'API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER',
      'API_ENDPOINT_OVERRIDES_RUN',
      'CONFIG',
      'CORE_DISABLE_PROMPTS',
      'CORE_PROJECT',
      'RUN_REGION',
    ];
    const shown = await session(
      `env | grep -E "^(${names.map((n) => `CLOUDSDK_${n}`).join('|')}|GCE_METADATA_ROOT)=" | sort`,
    );
    expect(shown.stdout).toBe(
      [
        'CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER=http://localhost:8083/',
        `CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN=http://localhost:8083/`,
        `CLOUDSDK_CONFIG=${join(stateDir, 'gcloud')}`,
        'CLOUDSDK_CORE_DISABLE_PROMPTS=1',
        'CLOUDSDK_CORE_PROJECT=local-project',
        'CLOUDSDK_RUN_REGION=us-central1',
        'GCE_METADATA_ROOT=127.0.0.1:8082',
        '',
      ].join('\n'),
    );
    // In the namespace the regional host resolves, so local-env has nothing to warn about.
    expect(shown.stderr).toBe('');
  });

  it('get-iam-policy, remove- and add-iam-policy-binding: the tutorial’s commands as written, enforced at once', async () => {
    if (ns === undefined) return;
    const got = await gcloud('get-iam-policy receiving');
    expect(got.code).toBe(0);
    expect(parse(got.stdout)).toMatchObject({
      bindings: [{ members: [SA], role: 'roles/run.invoker' }],
      version: 1,
    });
    expect(await curl('localhost:8080')).toBe('Second service says: Hello World! 200');

    const removed = await gcloud(
      `remove-iam-policy-binding receiving --member=${SA} --role=roles/run.invoker`,
    );
    expect(removed.stderr).toContain('Updated IAM policy for service [receiving].');
    expect(members()).toEqual([]);
    expect(await curl('localhost:8080')).toMatch(
      /^the receiving service at \S+ answered 403[^]* 502$/,
    );

    const added = await gcloud(
      `add-iam-policy-binding receiving --member=${SA} --role=roles/run.invoker`,
    );
    expect(added.code).toBe(0);
    expect(members()).toEqual([SA]);
    expect(await curl('localhost:8080')).toBe('Second service says: Hello World! 200');
  }, 120_000);

  it('set-iam-policy with a stale etag is refused with IAM’s ABORTED; with the current one it is kept', async () => {
    if (ns === undefined) return;
    const file = join(stateDir, 'read.json');
    expect(
      (await session(`gcloud run services get-iam-policy receiving --format=json > '${file}'`))
        .code,
    ).toBe(0);
    expect(
      (
        await gcloud(
          'add-iam-policy-binding receiving --member=user:dev@example.com --role=roles/run.invoker',
        )
      ).code,
    ).toBe(0);
    const stale = await gcloud(`set-iam-policy receiving '${file}'`);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain(`ERROR: (gcloud.run.services.set-iam-policy) ${CONCURRENT}`);
    expect(members()).toEqual([SA, 'user:dev@example.com']);
    expect(
      (await session(`gcloud run services get-iam-policy receiving --format=json > '${file}'`))
        .code,
    ).toBe(0);
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace(',\n        "user:dev@example.com"', ''),
    );
    expect((await gcloud(`set-iam-policy receiving '${file}'`)).code).toBe(0);
    expect(members()).toEqual([SA]);
    const invalid = await gcloud(
      'add-iam-policy-binding receiving --member=user:dev@example.com --role=roles/run.invokr',
    );
    expect(invalid.stderr).toContain(
      'INVALID_ARGUMENT: Role roles/run.invokr is not supported for this resource.',
    );
  }, 120_000);

  it('describe prints receiving’s URL; replace applies what the front enforces and refuses what needs a restart', async () => {
    if (ns === undefined) return;
    const described = await gcloud('describe receiving');
    expect(described.code).toBe(0);
    expect(described.stdout).toMatch(/URL:\s+http:\/\/127\.0\.0\.1:8081/);
    expect(described.stdout).toContain('Image:           localhost/cloudrun-auth/receiving:local');
    expect((await gcloud('list')).stdout).toMatch(
      /receiving\s+us-central1\s+http:\/\/127\.0\.0\.1:8081/,
    );

    const manifest = join(stateDir, 'receiving.yaml');
    expect(
      (await session(`gcloud run services describe receiving --format=export > '${manifest}'`))
        .code,
    ).toBe(0);
    const open = join(stateDir, 'open.yaml');
    writeFileSync(
      open,
      readFileSync(manifest, 'utf8').replace(
        /( +)run\.googleapis\.com\/ingress: all\n/,
        "$&$1run.googleapis.com/invoker-iam-disabled: 'true'\n",
      ),
    );
    const replaced = await gcloud(`replace '${open}'`);
    expect(replaced.stdout + replaced.stderr).toContain(
      'New configuration has been applied to service [receiving].',
    );
    // The front admits a request without a token; receiving itself (TOKEN_CHECK=platform) wants one.
    expect(await curl('localhost:8081')).toMatch(/ 401$/);
    expect((await gcloud(`replace '${manifest}'`)).code).toBe(0);
    expect(await curl('localhost:8081')).toMatch(/ 403$/);

    const env = join(stateDir, 'env.yaml');
    writeFileSync(env, readFileSync(manifest, 'utf8').replace('value: platform', 'value: verify'));
    const refused = await gcloud(`replace '${env}'`);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      'FAILED_PRECONDITION: The local chain cannot apply this to receiving while it runs: spec.template.spec.containers differ',
    );
  }, 120_000);

  it('many gcloud and npm run local changes at once: each gcloud one is kept or says it met a concurrent change; every npm run local one is kept', async () => {
    if (ns === undefined) return;
    const removable = Array.from({ length: 4 }, (_, i) => `user:r${i}@example.com`);
    const setup = removable.map(
      (m) =>
        `node dist/scripts/local.js run services add-iam-policy-binding receiving --member=${m} --role=roles/run.invoker >/dev/null`,
    );
    expect((await session(setup.join(' && '))).code).toBe(0);
    const jobs: { kind: 'gcloud' | 'local'; verb: 'add' | 'remove'; member: string }[] = [
      ...Array.from({ length: 6 }, (_, i) => ({
        kind: 'gcloud' as const,
        verb: 'add' as const,
        member: `user:g${i}@example.com`,
      })),
      ...Array.from({ length: 6 }, (_, i) => ({
        kind: 'local' as const,
        verb: 'add' as const,
        member: `user:l${i}@example.com`,
      })),
      { kind: 'gcloud', verb: 'remove', member: removable[0]! },
      { kind: 'gcloud', verb: 'remove', member: removable[1]! },
      { kind: 'local', verb: 'remove', member: removable[2]! },
      { kind: 'local', verb: 'remove', member: removable[3]! },
    ];
    const results = await Promise.all(
      jobs.map((job) => {
        const args = `${job.verb}-iam-policy-binding receiving --member=${job.member} --role=roles/run.invoker`;
        return job.kind === 'gcloud'
          ? gcloud(args)
          : session(`node dist/scripts/local.js run services ${args}`);
      }),
    );
    const now = members();
    for (const [i, job] of jobs.entries()) {
      const { code, stderr } = results[i]!;
      const kept = job.verb === 'add' ? now.includes(job.member) : !now.includes(job.member);
      if (job.kind === 'local') expect({ job, code, kept }).toEqual({ job, code: 0, kept: true });
      else if (code === 0) expect({ job, kept }).toEqual({ job, kept: true });
      else
        expect({ job, said: stderr.includes(CONCURRENT), kept }).toEqual({
          job,
          said: true,
          kept: false,
        });
    }
  }, 180_000);

  it('a corrupt policy store: one clear error from gcloud, the chain still serving; no access token in any log', async () => {
    if (ns === undefined) return;
    writeFileSync(join(stateDir, 'policies/receiving.yaml'), 'bindings: [');
    const got = await gcloud('get-iam-policy receiving');
    expect(got.code).toBe(1);
    expect(got.stderr).toContain(
      'ERROR: (gcloud.run.services.get-iam-policy) FAILED_PRECONDITION: The IAM policy of receiving cannot be read: ',
    );
    expect(await curl('localhost:8080')).toMatch(/answered 500[^]* 502$/);
    expect(await curl('localhost:8080/health')).toMatch(/ 200$/);
    expect(chain!.exitCode).toBeNull();
    expect(existsSync(join(stateDir, 'chain.json'))).toBe(true);
    expect(output).not.toMatch(/ya29\.|eyJ[\w-]{8,}\./);
    expect(output).toContain('set the IAM policy of receiving');
  }, 60_000);

  it('after npm start restarts, gcloud works at once (the chain forgets the access token it cached from the old key)', async () => {
    if (ns === undefined) return;
    expect((await gcloud('get-iam-policy receiving')).code).toBe(1); // the corrupt store of the test above
    chain!.kill('SIGINT');
    await new Promise((resolve) => chain!.once('exit', resolve));
    output = '';
    chain = ns.spawn(process.execPath, [join(root, 'dist/scripts/start-local.js')], {
      ...process.env,
      LOCAL_STATE_DIR: stateDir,
    });
    chain.stdout!.on('data', (chunk) => (output += chunk));
    for (let i = 0; i < 400 && !output.includes('Ctrl-C stops them all'); i += 1)
      await new Promise((r) => setTimeout(r, 50));
    const got = await gcloud('get-iam-policy receiving');
    expect({ code: got.code, stderr: got.stderr }).toEqual({ code: 0, stderr: '' });
    expect(parse(got.stdout)).toMatchObject({
      bindings: [{ members: [SA], role: 'roles/run.invoker' }],
    });
  }, 90_000);
});
