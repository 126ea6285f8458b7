import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import { parse } from 'yaml';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const configPath = join(root, 'cloudbuild.yaml');
const text = readFileSync(configPath, 'utf8');

interface Step {
  id: string;
  name: string;
  entrypoint?: string;
  args: string[];
  waitFor?: string[];
}
const config = parse(text) as { steps: Step[]; images: string[]; substitutions: Record<string, string> };
const step = (id: string): Step => {
  const found = config.steps.find((s) => s.id === id);
  if (!found) throw new Error(`no step ${id}`);
  return found;
};
/** A step's command line as one string. */
const commandOf = (id: string): string => [step(id).entrypoint ?? '', ...step(id).args].join(' ').replace(/\s+/g, ' ');

const gcloudSdk = async (): Promise<string | undefined> => {
  try {
    const { stdout } = await run('gcloud', ['info', '--format=value(installation.sdk_root)'], { timeout: 30_000 });
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
};

/** Loads a config with gcloud's own Cloud Build loader (gcloud's bundled python); resolves with its step ids. */
async function loadWithGcloud(sdk: string, path: string): Promise<string[]> {
  const script = [
    'import json, sys',
    'from googlecloudsdk.api_lib.cloudbuild import cloudbuild_util, config',
    'build = config.LoadCloudbuildConfigFromPath(sys.argv[1], cloudbuild_util.GetMessagesModule())',
    'print(json.dumps([s.id for s in build.steps]))',
  ].join('\n');
  const { stdout } = await run(join(sdk, 'platform/bundledpythonunix/bin/python3'), ['-c', script, path], {
    env: { ...process.env, PYTHONPATH: `${join(sdk, 'lib')}:${join(sdk, 'lib/third_party')}` },
    timeout: 60_000,
  });
  return JSON.parse(stdout) as string[];
}

describe('cloudbuild.yaml', () => {
  it('passes the cloudbuild JSON schema from the schemastore package', () => {
    const require = createRequire(import.meta.url);
    const schemaPath = join(require.resolve('schemastore/package.json'), '..', 'schemas/json/cloudbuild.json');
    const schema = JSON.parse(readFileSync(schemaPath, 'utf8')) as object;
    // The schema's formats (google-duration, int64...) are Google's own names, annotations here;
    // the patterns and types beside them are what get checked.
    const validate = new Ajv({ strict: false, allErrors: true, validateFormats: false }).compile(schema);
    const valid = validate(config);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
    // The schema can fail: a timeout without its unit, or a config without steps, does not pass.
    expect(validate({ ...config, timeout: '1800' })).toBe(false);
    expect(validate({ images: config.images })).toBe(false);
  });

  describe("in gcloud's own loader", () => {
    let sdk: string | undefined;
    beforeAll(async () => {
      sdk = await gcloudSdk();
      // These machines, and so CI, have gcloud: there its absence is a failure, not a skip.
      if (sdk === undefined && process.env.CI) throw new Error('gcloud is not installed: cannot load cloudbuild.yaml');
    });

    it('loads without error', async () => {
      if (sdk === undefined) return console.warn('gcloud is not installed: loader check skipped');
      expect(await loadWithGcloud(sdk, configPath)).toEqual(config.steps.map((s) => s.id));
    });

    it('refuses a config with an unknown field (so the check above can fail)', async () => {
      if (sdk === undefined) return;
      const dir = mkdtempSync(join(tmpdir(), 'cloudbuild-'));
      try {
        const broken = join(dir, 'cloudbuild.yaml');
        writeFileSync(broken, text.replace('steps:', 'stepz:'));
        await expect(loadWithGcloud(sdk, broken)).rejects.toThrow();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  it('tests, builds, pushes, deploys receiving, reads its URL, deploys calling, then grants the invoker role', () => {
    expect(config.steps.map((s) => s.id)).toEqual([
      'install',
      'test',
      'build-receiving',
      'build-calling',
      'push-receiving',
      'push-calling',
      'deploy-receiving',
      'read-receiving-url',
      'deploy-calling',
      'grant-invoker',
    ]);
    expect(step('build-calling').waitFor).toEqual(['test']);
    expect(step('deploy-calling').waitFor).toEqual(['read-receiving-url', 'push-calling']);
    expect(step('grant-invoker').waitFor).toEqual(['deploy-calling']);
  });

  it('builds from the real Dockerfiles and pushes to Artifact Registry, never gcr.io', () => {
    const registry = '${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}';
    expect(commandOf('build-receiving')).toContain(`--file=Dockerfile.receiving --tag=${registry}/receiving:$BUILD_ID`);
    expect(commandOf('build-calling')).toContain(`--file=Dockerfile.calling --tag=${registry}/calling:$BUILD_ID`);
    expect(config.images).toEqual([`${registry}/receiving:$BUILD_ID`, `${registry}/calling:$BUILD_ID`]);
    for (const s of config.steps) expect(s.args.join(' ')).not.toMatch(/gcr\.io\//);
  });

  it('deploys receiving private, as its own service account, with TOKEN_CHECK=platform', () => {
    const deploy = commandOf('deploy-receiving');
    expect(deploy).toContain('--service-account=${_RECEIVING_SERVICE_ACCOUNT}@$PROJECT_ID.iam.gserviceaccount.com');
    expect(deploy).toMatch(/^gcloud run deploy \$\{_RECEIVING_SERVICE\} /);
    expect(deploy).toContain('--no-allow-unauthenticated');
    expect(deploy).toContain('--set-env-vars=TOKEN_CHECK=platform');
    expect(deploy).not.toContain('--allow-unauthenticated ');
  });

  it("deploys calling public, as its own service account, with receiving's URL", () => {
    const deploy = commandOf('deploy-calling');
    const account = '${_CALLING_SERVICE_ACCOUNT}@$PROJECT_ID.iam.gserviceaccount.com';
    expect(deploy).toContain('--allow-unauthenticated');
    expect(deploy).toContain(`--service-account=${account}`);
    expect(deploy).toContain('--set-env-vars=URL=$$(cat /workspace/receiving-url)');
    expect(commandOf('read-receiving-url')).toContain("--format='value(status.url)' > /workspace/receiving-url");
    expect(commandOf('grant-invoker')).toBe(
      `gcloud run services add-iam-policy-binding \${_RECEIVING_SERVICE} --region=\${_REGION} --member=serviceAccount:${account} --role=roles/run.invoker`,
    );
  });

  it('declares every substitution it uses, each with a default', () => {
    const used = new Set([...text.matchAll(/\$\{(_[A-Z_]+)\}/g)].map((m) => m[1]!));
    expect([...used].sort()).toEqual(Object.keys(config.substitutions).sort());
    for (const value of Object.values(config.substitutions)) expect(value).not.toBe('');
  });
});
