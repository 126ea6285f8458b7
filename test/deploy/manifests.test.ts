import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readDeployDir, renderDeploy } from '../../scripts/lib/deploy-manifests.js';
import { SAMPLE_VALUES } from '../helpers/deploy-values.js';
import { checkWithGcloud, findGcloud, type GcloudSdk } from '../helpers/gcloud.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe("deploy/ manifests, resolved by npm run deploy:render's code and checked offline by gcloud's own parsing", () => {
  let sdk: GcloudSdk | undefined;
  let dir: string;
  const rendered = new Map(
    renderDeploy(readDeployDir(join(root, 'deploy')), SAMPLE_VALUES).map((f) => [f.name, f.text]),
  );
  const manifest = (name: string) => rendered.get(name)!;
  /** A manifest with one edit; throws if the edit would change nothing (so a negative case stays negative). */
  const edited = (name: string, from: string, to: string) => {
    const text = manifest(name).replace(from, to);
    if (text === manifest(name)) throw new Error(`${name} has no ${from}`);
    return text;
  };
  beforeAll(async () => {
    sdk = await findGcloud("deploy/'s manifests");
    dir = mkdtempSync(join(tmpdir(), 'manifests-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** gcloud's verdict on a text, or undefined where gcloud is not installed (outside CI). */
  const check = async (kind: 'service' | 'policy', text: string): Promise<string | undefined> => {
    if (sdk === undefined) return undefined;
    const file = join(dir, `${kind}-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, text);
    return checkWithGcloud(sdk, kind, file);
  };

  it('receiving.yaml is a Cloud Run service, private, on its own account, in platform mode', async () => {
    const verdict = await check('service', manifest('receiving.yaml'));
    if (verdict !== undefined) {
      expect(verdict).toBe(
        `OK receiving cloudrun-receiving-sa@my-project.iam.gserviceaccount.com ${SAMPLE_VALUES.RECEIVING_IMAGE}`,
      );
    }
    expect(manifest('receiving.yaml')).toMatch(/name: TOKEN_CHECK\n\s+value: platform/);
    expect(manifest('receiving.yaml')).not.toMatch(/invoker-iam-disabled/);
  });

  it('calling.yaml is a public Cloud Run service on its own account, calling receiving’s deterministic URL', async () => {
    const verdict = await check('service', manifest('calling.yaml'));
    if (verdict !== undefined) {
      expect(verdict).toBe(
        `OK calling cloudrun-authenticated-sa@my-project.iam.gserviceaccount.com ${SAMPLE_VALUES.CALLING_IMAGE}`,
      );
    }
    expect(manifest('calling.yaml')).toContain(
      'value: https://receiving-123456789012.us-central1.run.app',
    );
    expect(manifest('calling.yaml')).toContain("run.googleapis.com/invoker-iam-disabled: 'true'");
  });

  it("receiving-policy.yaml names calling's account as receiving's only invoker", async () => {
    const verdict = await check('policy', manifest('receiving-policy.yaml'));
    if (verdict === undefined) return;
    expect(verdict).toBe(
      "OK [('roles/run.invoker', ['serviceAccount:cloudrun-authenticated-sa@my-project.iam.gserviceaccount.com'])]",
    );
  });

  it('receiving.yaml with its commented custom audience switched on is still a Cloud Run service', async () => {
    const text = manifest('receiving.yaml').replace(
      /^( {4})# (run\.googleapis\.com\/custom-audiences: .*)$/m,
      '$1$2',
    );
    expect(text).not.toBe(manifest('receiving.yaml'));
    const verdict = await check('service', text);
    if (verdict !== undefined) expect(verdict).toMatch(/^OK receiving /);
  });

  it("refuses a misspelled field or a wrong type with gcloud's own message", async () => {
    const misspelled = await check(
      'service',
      edited('receiving.yaml', 'containerConcurrency', 'containerConcurency'),
    );
    if (misspelled === undefined) return;
    expect(misspelled).toMatch(
      /^ERROR DecodeError: Failed to parse value\(s\) in protobuf \[Service\]:\s+Service\.spec\.template\.spec\.containerConcurency/,
    );
    const wrongType = await check(
      'service',
      edited('receiving.yaml', 'timeoutSeconds: 30', 'timeoutSeconds: [30]'),
    );
    expect(wrongType).toMatch(
      /^ERROR ScalarTypeMismatchError: .*Expected type \(<class 'int'>,\) for field timeoutSeconds/s,
    );
    const policy = await check('policy', edited('receiving-policy.yaml', 'members:', 'member:'));
    expect(policy).toMatch(/^ERROR DecodeError: .*Policy\.bindings\[0\]\.member/s);
    const policyType = await check(
      'policy',
      edited('receiving-policy.yaml', 'role: roles/run.invoker', 'role: [roles/run.invoker]'),
    );
    expect(policyType).toMatch(/^ERROR ScalarTypeMismatchError: .*for field role/s);
  });
});
