import { execFile } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { placeholdersIn, readDeployDir } from '../../scripts/lib/deploy-manifests.js';
import { checkWithGcloud, findGcloud, type GcloudSdk } from '../helpers/gcloud.js';

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
const config = parse(text) as {
  steps: Step[];
  images: string[];
  substitutions: Record<string, string>;
};
const step = (id: string): Step => {
  const found = config.steps.find((s) => s.id === id);
  if (!found) throw new Error(`no step ${id}`);
  return found;
};
/** A step's command line as one string. */
const commandOf = (id: string): string =>
  [step(id).entrypoint ?? '', ...step(id).args].join(' ').replace(/\s+/g, ' ');

/** Loads a config with gcloud's own Cloud Build loader (gcloud's bundled python); resolves with its step ids. */
async function loadWithGcloud(sdk: GcloudSdk, path: string): Promise<string[]> {
  const script = [
    'import json, sys',
    'from googlecloudsdk.api_lib.cloudbuild import cloudbuild_util, config',
    'build = config.LoadCloudbuildConfigFromPath(sys.argv[1], cloudbuild_util.GetMessagesModule())',
    'print(json.dumps([s.id for s in build.steps]))',
  ].join('\n');
  const { stdout } = await run(sdk.python, ['-c', script, path], {
    env: { ...process.env, PYTHONPATH: sdk.pythonPath },
    timeout: 60_000,
  });
  return JSON.parse(stdout) as string[];
}

describe('cloudbuild.yaml', () => {
  it('passes the cloudbuild JSON schema from the schemastore package', () => {
    const require = createRequire(import.meta.url);
    const schemaPath = join(
      require.resolve('schemastore/package.json'),
      '..',
      'schemas/json/cloudbuild.json',
    );
    const schema = JSON.parse(readFileSync(schemaPath, 'utf8')) as object;
    // The schema's formats (google-duration, int64...) are Google's own names, annotations here;
    // the patterns and types beside them are what get checked.
    const validate = new Ajv({ strict: false, allErrors: true, validateFormats: false }).compile(
      schema,
    );
    const valid = validate(config);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
    // The schema can fail: a timeout without its unit, or a config without steps, does not pass.
    expect(validate({ ...config, timeout: '1800' })).toBe(false);
    expect(validate({ images: config.images })).toBe(false);
  });

  describe("in gcloud's own loader", () => {
    let sdk: GcloudSdk | undefined;
    beforeAll(async () => {
      sdk = await findGcloud("cloudbuild.yaml in gcloud's loader");
    });

    it('loads without error', async () => {
      if (sdk === undefined) return;
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

  it("tests, builds, pushes, resolves deploy/, deploys both services side by side, then sets receiving's policy", () => {
    expect(config.steps.map((s) => s.id)).toEqual([
      'install',
      'test',
      'build-receiving',
      'build-calling',
      'push-receiving',
      'push-calling',
      'render-manifests',
      'deploy-receiving',
      'set-receiving-policy',
      'deploy-calling',
    ]);
    expect(step('build-calling').waitFor).toEqual(['test']);
    expect(step('render-manifests').waitFor).toEqual(['test']);
    expect(step('deploy-receiving').waitFor).toEqual(['render-manifests', 'push-receiving']);
    expect(step('set-receiving-policy').waitFor).toEqual(['deploy-receiving']);
    // calling needs nothing from receiving's deployment: it calls receiving's deterministic URL.
    expect(step('deploy-calling').waitFor).toEqual(['render-manifests', 'push-calling']);
  });

  it('runs its node steps (install, test, render) on the Node image the Dockerfiles build on', () => {
    const bases = ['calling', 'receiving'].map(
      (service) =>
        /^FROM (\S+) AS build$/m.exec(
          readFileSync(join(root, `Dockerfile.${service}`), 'utf8'),
        )?.[1],
    );
    expect(bases[0]).toMatch(/^node:\d+-slim$/);
    expect(bases[1]).toBe(bases[0]);
    const nodeSteps = config.steps.filter((s) => s.name.startsWith('node'));
    expect(nodeSteps.map((s) => s.id)).toEqual(['install', 'test', 'render-manifests']);
    for (const s of nodeSteps) expect(s.name).toBe(bases[0]);
  });

  it('builds from the real Dockerfiles and pushes to Artifact Registry, never gcr.io', () => {
    const registry = '${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}';
    expect(commandOf('build-receiving')).toContain(
      `--file=Dockerfile.receiving --tag=${registry}/receiving:$BUILD_ID`,
    );
    expect(commandOf('build-calling')).toContain(
      `--file=Dockerfile.calling --tag=${registry}/calling:$BUILD_ID`,
    );
    expect(config.images).toEqual([
      `${registry}/receiving:$BUILD_ID`,
      `${registry}/calling:$BUILD_ID`,
    ]);
    for (const s of config.steps) expect(s.args.join(' ')).not.toMatch(/gcr\.io\//);
  });

  it('deploys from deploy/ only: every gcloud command is services replace or set-iam-policy, with no flag a manifest holds', () => {
    const gcloudSteps = config.steps.filter(
      (s) => s.entrypoint === 'gcloud' || s.args.join(' ').includes('gcloud'),
    );
    expect(gcloudSteps.map((s) => commandOf(s.id))).toEqual([
      'gcloud run services replace dist/deploy/receiving.yaml',
      'gcloud run services set-iam-policy receiving dist/deploy/receiving-policy.yaml --region=${_REGION} --quiet',
      'gcloud run services replace dist/deploy/calling.yaml',
    ]);
    expect(text).not.toMatch(
      /--(service-account|set-env-vars|image|(no-)?allow-unauthenticated|(no-)?invoker-iam-check|concurrency|memory|cpu|port|timeout)\b/,
    );
  });

  it("resolves exactly deploy/'s placeholders, with the images this build pushes", () => {
    const render = step('render-manifests');
    expect(render.entrypoint).toBe('node');
    expect(render.args.slice(0, 2)).toEqual(['dist/scripts/render-deploy.js', '--out=dist/deploy']);
    const values = Object.fromEntries(
      render.args.slice(2).map((a) => a.split(/=(.*)/s, 2) as [string, string]),
    );
    const used = new Set(
      readDeployDir(join(root, 'deploy')).flatMap((f) => placeholdersIn(f.text)),
    );
    expect(Object.keys(values).sort()).toEqual([...used].sort());
    expect(values).toMatchObject({
      PROJECT_ID: '$PROJECT_ID',
      PROJECT_NUMBER: '$PROJECT_NUMBER',
      REGION: '${_REGION}',
    });
    expect([values.RECEIVING_IMAGE, values.CALLING_IMAGE]).toEqual(config.images);
  });

  describe('run as Cloud Build runs it, from resolving deploy/ on (gcloud replaced by its own offline parsing)', () => {
    const BUILTIN: Record<string, string> = {
      PROJECT_ID: 'my-project',
      PROJECT_NUMBER: '123456789012',
      BUILD_ID: 'b1',
    };
    /** Cloud Build's substitution: $NAME and ${NAME} from the built-ins and the defaults; $$ is a $. */
    const substitute = (arg: string) =>
      arg.replace(/\$\$|\$\{(\w+)\}|\$(\w+)/g, (m, braced?: string, bare?: string) => {
        if (m === '$$') return '$';
        const name = (braced ?? bare)!;
        const value = BUILTIN[name] ?? config.substitutions[name];
        if (value === undefined) throw new Error(`no substitution for ${m}`);
        return value;
      });
    let sdk: GcloudSdk | undefined;
    let workspace: string;
    beforeAll(async () => {
      sdk = await findGcloud('the deploy steps of cloudbuild.yaml');
      // /workspace after the test step: the repository with dist/ built (npm test builds it).
      workspace = mkdtempSync(join(tmpdir(), 'workspace-'));
      mkdirSync(join(workspace, 'dist'));
      for (const dir of ['scripts', 'services'])
        symlinkSync(join(root, 'dist', dir), join(workspace, 'dist', dir));
    });
    afterAll(() => rmSync(workspace, { recursive: true, force: true }));

    it('render-manifests writes each file the deploy steps read; each is what gcloud accepts, in the right region', async () => {
      const render = step('render-manifests');
      await run(process.execPath, render.args.map(substitute), { cwd: workspace, timeout: 20_000 });

      const receiving = parse(readFileSync(join(workspace, 'dist/deploy/receiving.yaml'), 'utf8'));
      for (const id of ['deploy-receiving', 'set-receiving-policy', 'deploy-calling']) {
        const args = step(id).args.map(substitute);
        const file = args.find((a) => a.startsWith('dist/deploy/'))!;
        expect({ id, exists: existsSync(join(workspace, file)) }).toEqual({ id, exists: true });
        const manifest = parse(readFileSync(join(workspace, file), 'utf8'));
        if (args[2] === 'replace') {
          // gcloud takes the region from this label when --region is not given.
          expect(manifest.metadata.labels['cloud.googleapis.com/location']).toBe('us-central1');
          expect(manifest.spec.template.spec.containers[0].image).toBe(
            `us-central1-docker.pkg.dev/my-project/cloudrun-auth/${manifest.metadata.name}:b1`,
          );
        } else {
          expect(args.slice(0, 4)).toEqual([
            'run',
            'services',
            'set-iam-policy',
            receiving.metadata.name,
          ]);
          expect(args).toContain('--region=us-central1');
        }
        if (sdk === undefined) continue;
        const verdict = await checkWithGcloud(
          sdk,
          args[2] === 'replace' ? 'service' : 'policy',
          join(workspace, file),
        );
        expect({ id, verdict: verdict.slice(0, 3) }).toEqual({ id, verdict: 'OK ' });
      }
    });
  });

  it('declares every substitution it uses, each with a default', () => {
    const used = new Set([...text.matchAll(/\$\{(_[A-Z_]+)\}/g)].map((m) => m[1]!));
    expect([...used].sort()).toEqual(Object.keys(config.substitutions).sort());
    for (const value of Object.values(config.substitutions)) expect(value).not.toBe('');
  });
});
