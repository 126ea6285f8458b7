import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import type { Policy } from '../../local/cloud-run-front/policy.js';
import { chainFilePath } from '../../scripts/lib/chain-file.js';
import { startLocalChain, type LocalChain } from '../../scripts/lib/local-chain.js';
import { freePort } from '../../scripts/lib/processes.js';

const run = promisify(execFile);
const command = fileURLToPath(new URL('../../dist/scripts/local.js', import.meta.url));
const SA = 'serviceAccount:cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

describe('npm run local -- run services ... (the built command, as a process, against a running chain)', () => {
  let chain: LocalChain;
  let stateDir: string;
  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'local-'));
    const ports = {
      calling: await freePort(),
      receiving: await freePort(),
      metadata: await freePort(),
      admin: await freePort(),
    };
    chain = await startLocalChain({ ports, stateDir, baseEnv: { PATH: process.env.PATH } });
  });
  afterAll(async () => {
    await chain.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    chain.store.reset('receiving', { bindings: [{ role: 'roles/run.invoker', members: [SA] }] });
  });

  const local = async (args: string[], env: Record<string, string> = {}): Promise<Result> => {
    try {
      const { stdout, stderr } = await run(
        process.execPath,
        [command, 'run', 'services', ...args],
        {
          env: { ...process.env, LOCAL_STATE_DIR: stateDir, ...env },
          timeout: 90_000,
        },
      );
      return { code: 0, stdout, stderr };
    } catch (err) {
      const { code, stdout, stderr } = err as Result;
      return { code, stdout, stderr };
    }
  };
  const members = () =>
    chain.store
      .current('receiving')
      .bindings.flatMap((b) => b.members.map((m) => `${b.role} ${m}`));
  const callCalling = async () => {
    const res = await fetch(`${chain.calling.url}/`);
    return `${res.status} ${await res.text()}`;
  };

  it('gets, adds and removes bindings with gcloud’s arguments, and the front enforces each from the next request', async () => {
    const got = await local(['get-iam-policy', 'receiving', '--region=us-central1']);
    expect(got).toMatchObject({ code: 0, stderr: '' });
    expect(parse(got.stdout)).toEqual({
      bindings: [{ members: [SA], role: 'roles/run.invoker' }],
      etag: chain.store.current('receiving').etag,
      version: 1,
    });
    expect(await callCalling()).toBe('200 Second service says: Hello World!');

    const removed = await local([
      'remove-iam-policy-binding',
      'receiving',
      `--member=${SA}`,
      '--role=roles/run.invoker',
      '--project=p',
    ]);
    expect(removed).toMatchObject({
      code: 0,
      stderr: 'Updated IAM policy for service [receiving].\n',
    });
    expect(parse(removed.stdout)).toEqual({
      etag: chain.store.current('receiving').etag,
      version: 1,
    });
    expect(await callCalling()).toMatch(/^502 the receiving service at \S+ answered 403/);

    const added = await local([
      'add-iam-policy-binding',
      'receiving',
      '--member',
      SA,
      '--role=roles/run.invoker',
      '--quiet',
    ]);
    expect(added.code).toBe(0);
    expect(members()).toEqual([`roles/run.invoker ${SA}`]);
    expect(await callCalling()).toBe('200 Second service says: Hello World!');

    // Adding what is there changes nothing, not even the etag; nor in another case, which is the same member.
    const etag = chain.store.current('receiving').etag;
    expect(
      (
        await local([
          'add-iam-policy-binding',
          'receiving',
          `--member=${SA}`,
          '--role=roles/run.invoker',
          '--condition=None',
        ])
      ).code,
    ).toBe(0);
    expect(
      (
        await local([
          'add-iam-policy-binding',
          'receiving',
          `--member=${SA.toUpperCase().replace('SERVICEACCOUNT', 'serviceAccount')}`,
          '--role=roles/run.invoker',
        ])
      ).code,
    ).toBe(0);
    expect(chain.store.current('receiving').etag).toBe(etag);
    // A removal in another case revokes the member.
    expect(
      (
        await local([
          'remove-iam-policy-binding',
          'receiving',
          `--member=${SA.replace('cloudrun', 'CloudRun')}`,
          '--role=roles/run.invoker',
        ])
      ).code,
    ).toBe(0);
    expect(await callCalling()).toMatch(/^502 the receiving service at \S+ answered 403/);
    expect(
      (
        await local([
          'add-iam-policy-binding',
          'receiving',
          `--member=${SA}`,
          '--role=roles/run.invoker',
        ])
      ).code,
    ).toBe(0);
  });

  it('refuses what IAM refuses, in IAM’s words from the Admin API, and what gcloud refuses, leaving the policy as it was', async () => {
    const before = chain.store.current('receiving');
    const cases: [string[], string][] = [
      [
        ['add-iam-policy-binding', 'receiving', '--role=roles/run.invoker'],
        'argument --member: Must be specified.',
      ],
      [
        ['add-iam-policy-binding', 'receiving', `--member=${SA}`],
        'argument --role: Must be specified.',
      ],
      [
        [
          'add-iam-policy-binding',
          'receiving',
          '--member=cloudrun-authenticated-sa',
          '--role=roles/run.invoker',
        ],
        'INVALID_ARGUMENT: Policy members must be of the form "<type>:<value>".',
      ],
      [
        [
          'add-iam-policy-binding',
          'receiving',
          "--member=user:a'@b.co",
          '--role=roles/run.invoker',
        ],
        "INVALID_ARGUMENT: Invalid member: user:a'@b.co (a'@b.co is not an email address).",
      ],
      [
        ['add-iam-policy-binding', 'receiving', `--member=${SA}`, '--role=roles/run.invokr'],
        'INVALID_ARGUMENT: Role roles/run.invokr is not supported for this resource.',
      ],
      [
        [
          'remove-iam-policy-binding',
          'receiving',
          '--member=user:nobody@example.com',
          '--role=roles/run.invoker',
        ],
        'Policy binding with the specified principal, role, and condition not found!',
      ],
      [
        [
          'add-iam-policy-binding',
          'receiving',
          `--member=${SA}`,
          '--role=roles/run.invoker',
          '--condition-from-file=x',
        ],
        'unrecognized arguments: --condition-from-file',
      ],
      [
        [
          'add-iam-policy-binding',
          'receiving',
          '--member=user:x@example.com',
          '--role=roles/run.invoker',
          '--condition=expression=false,title=t',
        ],
        '--condition: the local chain does not evaluate IAM conditions; use --condition=None or leave it out',
      ],
      [
        [
          'add-iam-policy-binding',
          'receiving',
          `--member=user:${SA.slice('serviceAccount:'.length)}`,
          '--role=roles/run.invoker',
        ],
        'INVALID_ARGUMENT: cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com is a service account: bind it as serviceAccount:',
      ],
      [['get-iam-policy'], 'expected one SERVICE, got none'],
      [['set-iam-policy', 'receiving'], 'expected SERVICE POLICY_FILE, got receiving'],
      [
        ['get-iam-policy', 'nope'],
        "NOT_FOUND: Resource 'nope' of kind 'SERVICE' in region 'us-central1' in project 'local-project' does not exist.",
      ],
    ];
    for (const [args, message] of cases) {
      const result = await local(args);
      expect({ args, code: result.code }).toEqual({ args, code: 1 });
      expect(result.stderr).toContain(`ERROR: (local.run.services.${args[0]}) `);
      expect(result.stderr).toContain(message);
    }
    expect(chain.store.current('receiving')).toEqual(before);
    const usage = await local(['list']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain(
      'usage: npm run local -- run services get-iam-policy|add-iam-policy-binding|remove-iam-policy-binding|set-iam-policy',
    );
  });

  it('sets a policy from a file: refused when its etag is stale, kept when current or absent', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'set-'));
    try {
      const file = join(dir, 'policy.yaml');
      const read = (await local(['get-iam-policy', 'receiving'])).stdout;
      writeFileSync(file, read.replace(SA, 'user:dev@example.com'));
      expect(
        (
          await local([
            'add-iam-policy-binding',
            'receiving',
            '--member=user:other@example.com',
            '--role=roles/run.invoker',
          ])
        ).code,
      ).toBe(0);
      const stale = await local(['set-iam-policy', 'receiving', file]);
      expect(stale.code).toBe(1);
      expect(stale.stderr).toBe(
        'ERROR: (local.run.services.set-iam-policy) ABORTED: There were concurrent policy changes. ' +
          'Please retry the whole read-modify-write with exponential backoff.\n',
      );
      expect(members()).toEqual([
        `roles/run.invoker ${SA}`,
        'roles/run.invoker user:other@example.com',
      ]);

      writeFileSync(
        file,
        'bindings:\n- role: roles/run.invoker\n  members: [user:dev@example.com]\n',
      );
      expect(await local(['set-iam-policy', 'receiving', file])).toMatchObject({
        code: 0,
        stderr: 'Updated IAM policy for service [receiving].\n',
      });
      expect(members()).toEqual(['roles/run.invoker user:dev@example.com']);

      writeFileSync(file, 'bindings: {}');
      expect((await local(['set-iam-policy', 'receiving', file])).stderr).toContain(
        `${file}: bindings must be a list`,
      );
      expect(
        (await local(['set-iam-policy', 'receiving', join(dir, 'none.yaml')])).stderr,
      ).toContain('ENOENT');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loses no change under many concurrent commands: every add is kept, every removal revokes', async () => {
    const adds = Array.from({ length: 12 }, (_, i) => `user:add${i}@example.com`);
    const removes = Array.from({ length: 8 }, (_, i) => `user:remove${i}@example.com`);
    chain.store.reset('receiving', {
      bindings: [{ role: 'roles/run.invoker', members: [SA, ...removes] }],
    });
    const results = await Promise.all([
      ...adds.map((m) =>
        local(['add-iam-policy-binding', 'receiving', `--member=${m}`, '--role=roles/run.invoker']),
      ),
      ...removes.map((m) =>
        local([
          'remove-iam-policy-binding',
          'receiving',
          `--member=${m}`,
          '--role=roles/run.invoker',
        ]),
      ),
    ]);
    expect(results.map((r) => `${r.code} ${r.stderr}`)).toEqual(
      results.map(() => '0 Updated IAM policy for service [receiving].\n'),
    );
    expect(members().sort()).toEqual([SA, ...adds].map((m) => `roles/run.invoker ${m}`).sort());
  });

  it('says what is wrong when no chain runs, its chain.json is broken, or the chain has gone', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'nochain-'));
    try {
      const none = await local(['get-iam-policy', 'receiving'], { LOCAL_STATE_DIR: empty });
      expect(none.code).toBe(1);
      expect(none.stderr).toContain(
        `no chain is running with its state in ${empty} (no chain.json): start it with npm start`,
      );
      writeFileSync(chainFilePath(empty), '{"admin": 3');
      expect(
        (await local(['get-iam-policy', 'receiving'], { LOCAL_STATE_DIR: empty })).stderr,
      ).toContain(
        `${chainFilePath(empty)} is not what npm start writes (admin, metadataHost, projectId, projectNumber, region, gcloudConfig missing): restart npm start`,
      );
      const described = JSON.parse(readFileSync(chainFilePath(stateDir), 'utf8')) as Record<
        string,
        string
      >;
      writeFileSync(
        chainFilePath(empty),
        JSON.stringify({ ...described, admin: `http://localhost:${await freePort()}/` }),
      );
      expect(
        (await local(['get-iam-policy', 'receiving'], { LOCAL_STATE_DIR: empty })).stderr,
      ).toMatch(
        /the local Admin API at http:\/\/localhost:\d+\/ did not answer \(ECONNREFUSED\): is npm start still running\?/,
      );
      writeFileSync(
        chainFilePath(empty),
        JSON.stringify({ ...described, metadataHost: `127.0.0.1:${await freePort()}` }),
      );
      expect(
        (await local(['get-iam-policy', 'receiving'], { LOCAL_STATE_DIR: empty })).stderr,
      ).toMatch(
        /no access token from the chain's metadata server at 127\.0\.0\.1:\d+ \(ECONNREFUSED\): is npm start still running\?/,
      );
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('a corrupt policy store: one clear error, the chain still serving, repaired by a set without an etag', async () => {
    writeFileSync(chain.store.file('receiving'), 'bindings: [');
    const got = await local(['get-iam-policy', 'receiving']);
    expect(got.code).toBe(1);
    expect(got.stderr).toContain(
      'ERROR: (local.run.services.get-iam-policy) FAILED_PRECONDITION: The IAM policy of receiving cannot be read: ',
    );
    expect(got.stderr).toContain('Restart npm start to rewrite it from deploy/');
    // The chain serves on: receiving's front refuses with a 500 (never admits), calling says so.
    expect(await callCalling()).toMatch(/^502 the receiving service at \S+ answered 500/);
    expect((await fetch(`${chain.calling.url}/health`)).status).toBe(200);
    const dir = mkdtempSync(join(tmpdir(), 'repair-'));
    try {
      const policy: Policy = { bindings: [{ role: 'roles/run.invoker', members: [SA] }] };
      writeFileSync(join(dir, 'p.json'), JSON.stringify(policy));
      expect((await local(['set-iam-policy', 'receiving', join(dir, 'p.json')])).code).toBe(0);
      expect(await callCalling()).toBe('200 Second service says: Hello World!');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
