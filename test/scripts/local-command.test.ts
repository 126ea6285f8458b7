import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { writePolicyFile } from '../../local/cloud-run-front/policy.js';

const run = promisify(execFile);
const command = fileURLToPath(new URL('../../dist/scripts/local.js', import.meta.url));
const SA = 'serviceAccount:cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com';

describe('npm run local -- run services ... (the built command, as a process)', () => {
  let stateDir: string;
  let policyFile: string;
  beforeEach(() => {
    stateDir = mkdtempSync(join(tmpdir(), 'local-'));
    mkdirSync(join(stateDir, 'policies'));
    policyFile = join(stateDir, 'policies', 'receiving.yaml');
    writePolicyFile(policyFile, { bindings: [{ role: 'roles/run.invoker', members: [SA] }] });
  });
  afterEach(() => rmSync(stateDir, { recursive: true, force: true }));

  const local = async (...args: string[]) => {
    try {
      const { stdout, stderr } = await run(process.execPath, [command, ...args], { env: { ...process.env, LOCAL_STATE_DIR: stateDir } });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const { code, stdout, stderr } = err as { code: number; stdout: string; stderr: string };
      return { code, stdout, stderr };
    }
  };
  const bindings = () => (parse(readFileSync(policyFile, 'utf8')) as { bindings: unknown[] }).bindings;

  it('gets, adds and removes bindings with gcloud’s arguments, accepting and ignoring --region and --project', async () => {
    const got = await local('run', 'services', 'get-iam-policy', 'receiving', '--region=us-central1');
    expect(got.code).toBe(0);
    expect(parse(got.stdout)).toMatchObject({ bindings: [{ role: 'roles/run.invoker', members: [SA] }], version: 1 });

    const added = await local(
      'run',
      'services',
      'add-iam-policy-binding',
      'receiving',
      '--member',
      'user:dev@example.com',
      '--role=roles/run.invoker',
      '--project=p',
    );
    expect(added.code).toBe(0);
    expect(added.stderr).toBe('Updated IAM policy for service [receiving].\n');
    expect(bindings()).toEqual([{ role: 'roles/run.invoker', members: [SA, 'user:dev@example.com'] }]);
    const etag = (parse(readFileSync(policyFile, 'utf8')) as { etag: string }).etag;

    // Adding what is there changes nothing, not even the etag.
    await local('run', 'services', 'add-iam-policy-binding', 'receiving', '--member=user:dev@example.com', '--role=roles/run.invoker');
    expect((parse(readFileSync(policyFile, 'utf8')) as { etag: string }).etag).toBe(etag);

    expect(
      (await local('run', 'services', 'remove-iam-policy-binding', 'receiving', `--member=${SA}`, '--role=roles/run.invoker')).code,
    ).toBe(0);
    expect(
      (
        await local(
          'run',
          'services',
          'remove-iam-policy-binding',
          'receiving',
          '--member=user:dev@example.com',
          '--role=roles/run.invoker',
        )
      ).code,
    ).toBe(0);
    expect(bindings()).toEqual([]);
  });

  it('refuses what gcloud refuses, in gcloud’s words, and leaves the policy as it was', async () => {
    const before = readFileSync(policyFile, 'utf8');
    const cases: [string[], string][] = [
      [['add-iam-policy-binding', 'receiving', '--role=roles/run.invoker'], 'argument --member: Must be specified.'],
      [['add-iam-policy-binding', 'receiving', `--member=${SA}`], 'argument --role: Must be specified.'],
      [
        ['add-iam-policy-binding', 'receiving', '--member=cloudrun-authenticated-sa', '--role=roles/run.invoker'],
        'is not an IAM member: use serviceAccount:EMAIL',
      ],
      [
        ['add-iam-policy-binding', 'receiving', `--member=${SA}`, '--role=run.invoker'],
        'is not a role: roles are named like roles/run.invoker',
      ],
      [
        ['remove-iam-policy-binding', 'receiving', '--member=user:nobody@example.com', '--role=roles/run.invoker'],
        'Policy binding with the specified principal, role, and condition not found!',
      ],
      [
        ['add-iam-policy-binding', 'receiving', `--member=${SA}`, '--role=roles/run.invoker', '--condition-from-file=x'],
        'unrecognized arguments: --condition-from-file',
      ],
      [['get-iam-policy'], 'expected one SERVICE, got none'],
      [['get-iam-policy', 'calling'], 'no local policy for service [calling]'],
    ];
    for (const [args, message] of cases) {
      const result = await local('run', 'services', ...args);
      expect({ args, code: result.code }).toEqual({ args, code: 1 });
      expect(result.stderr).toContain(`ERROR: (local.run.services.${args[0]}) `);
      expect(result.stderr).toContain(message);
    }
    expect(readFileSync(policyFile, 'utf8')).toBe(before);
    const usage = await local('run', 'jobs', 'list');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('usage: npm run local -- run services get-iam-policy|add-iam-policy-binding|remove-iam-policy-binding');
  });

  it('says to start the chain first when none has written its policies', async () => {
    rmSync(policyFile);
    const result = await local('run', 'services', 'get-iam-policy', 'receiving');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`no local policy for service [receiving] in ${stateDir}: start the chain with npm start first`);
  });
});
