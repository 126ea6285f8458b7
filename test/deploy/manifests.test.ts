import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const checker = join(root, 'test/deploy/check_run_manifest.py');

/** Sample values for the placeholders deploy time fills in. */
const VALUES: Record<string, string> = {
  PROJECT_ID: 'my-project',
  PROJECT_NUMBER: '123456789012',
  REGION: 'us-central1',
  RECEIVING_SERVICE_ACCOUNT: 'cloudrun-receiving-sa',
  CALLING_SERVICE_ACCOUNT: 'cloudrun-authenticated-sa',
  RECEIVING_IMAGE: 'us-central1-docker.pkg.dev/my-project/cloudrun-auth/receiving:1',
  CALLING_IMAGE: 'us-central1-docker.pkg.dev/my-project/cloudrun-auth/calling:1',
};
const resolve = (text: string) =>
  text.replace(/\$\{(\w+)\}/g, (_m, name: string) => {
    if (!(name in VALUES)) throw new Error(`unknown placeholder ${name}`);
    return VALUES[name]!;
  });

describe("deploy/ manifests, checked offline by gcloud's own parsing", () => {
  let sdk: string;
  let python: string;
  let dir: string;
  beforeAll(async () => {
    const { stdout } = await run('gcloud', ['info', '--format=value(installation.sdk_root,basic.python_location)'], { timeout: 60_000 });
    [sdk, python] = stdout.trim().split(/\s+/) as [string, string];
    dir = mkdtempSync(join(tmpdir(), 'manifests-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const check = async (kind: 'service' | 'policy', text: string): Promise<string> => {
    const file = join(dir, `${kind}-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, text);
    try {
      const { stdout } = await run(python, [checker, kind, file], {
        timeout: 60_000,
        env: { ...process.env, PYTHONPATH: `${sdk}/lib:${sdk}/lib/third_party`, CLOUDSDK_CORE_DISABLE_PROMPTS: '1' },
      });
      return stdout.trim();
    } catch (err) {
      return String((err as { stdout?: string }).stdout ?? err).trim();
    }
  };
  const manifest = (name: string) => resolve(readFileSync(join(root, 'deploy', name), 'utf8'));

  it('receiving.yaml is a Cloud Run service, private, on its own account, in platform mode', async () => {
    expect(await check('service', manifest('receiving.yaml'))).toBe(
      `OK receiving cloudrun-receiving-sa@my-project.iam.gserviceaccount.com ${VALUES.RECEIVING_IMAGE}`,
    );
    expect(manifest('receiving.yaml')).toMatch(/name: TOKEN_CHECK\n\s+value: platform/);
    expect(manifest('receiving.yaml')).not.toMatch(/invoker-iam-disabled/);
  });

  it('calling.yaml is a public Cloud Run service on its own account, calling receiving’s deterministic URL', async () => {
    expect(await check('service', manifest('calling.yaml'))).toBe(
      `OK calling cloudrun-authenticated-sa@my-project.iam.gserviceaccount.com ${VALUES.CALLING_IMAGE}`,
    );
    expect(manifest('calling.yaml')).toContain('value: https://receiving-123456789012.us-central1.run.app');
    expect(manifest('calling.yaml')).toContain("run.googleapis.com/invoker-iam-disabled: 'true'");
  });

  it("receiving-policy.yaml names calling's account as receiving's only invoker", async () => {
    expect(await check('policy', manifest('receiving-policy.yaml'))).toBe(
      "OK [('roles/run.invoker', ['serviceAccount:cloudrun-authenticated-sa@my-project.iam.gserviceaccount.com'])]",
    );
  });

  it("refuses a misspelled field or a wrong type with gcloud's own message", async () => {
    const misspelled = await check('service', manifest('receiving.yaml').replace('containerConcurrency', 'containerConcurency'));
    expect(misspelled).toMatch(/^ERROR DecodeError: Failed to parse value\(s\) in protobuf \[Service\]:\s+Service\.spec\.template\.spec\.containerConcurency/);
    const wrongType = await check('service', manifest('receiving.yaml').replace('timeoutSeconds: 30', 'timeoutSeconds: [30]'));
    expect(wrongType).toMatch(/^ERROR ScalarTypeMismatchError: .*Expected type \(<class 'int'>,\) for field timeoutSeconds/s);
    const policy = await check('policy', manifest('receiving-policy.yaml').replace('members:', 'member:'));
    expect(policy).toMatch(/^ERROR DecodeError: .*Policy\.bindings\[0\]\.member/s);
  });
});
