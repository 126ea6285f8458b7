import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { SAMPLE_VALUES as SAMPLE } from '../helpers/deploy-values.js';
import { ConfigError } from '../../services/shared/env.js';
import {
  PLACEHOLDERS,
  placeholdersIn,
  readDeployDir,
  renderDeploy,
  type DeployFile,
} from '../../scripts/lib/deploy-manifests.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const script = join(root, 'dist/scripts/render-deploy.js');

const args = (values: Record<string, string>) =>
  Object.entries(values).map(([k, v]) => `${k}=${v}`);

/** Runs the built CLI; resolves with its exit code and output. */
async function render(argv: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [script, ...argv], {
      cwd: root,
      timeout: 20_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const { code, stdout, stderr } = err as { code: number; stdout: string; stderr: string };
    return { code, stdout, stderr };
  }
}

const problemsOf = (fn: () => unknown): readonly string[] => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
};

describe('npm run deploy:render (the real CLI)', () => {
  let out: string;
  beforeEach(() => {
    out = mkdtempSync(join(tmpdir(), 'render-'));
  });
  afterEach(() => rmSync(out, { recursive: true, force: true }));

  it('writes every deploy/ file with its placeholders resolved, and leaves deploy/ as it was', async () => {
    const before = readDeployDir(join(root, 'deploy'));
    const { code, stdout } = await render([`--out=${out}`, ...args(SAMPLE)]);
    expect(code).toBe(0);
    expect(readdirSync(out).sort()).toEqual([
      'calling.yaml',
      'receiving-policy.yaml',
      'receiving.yaml',
    ]);
    for (const name of readdirSync(out)) {
      const text = readFileSync(join(out, name), 'utf8');
      expect(placeholdersIn(text)).toEqual([]);
      expect(stdout).toContain(name);
    }
    const receiving = parse(readFileSync(join(out, 'receiving.yaml'), 'utf8'));
    expect(receiving.metadata.labels['cloud.googleapis.com/location']).toBe('us-central1');
    expect(receiving.spec.template.spec.serviceAccountName).toBe(
      'cloudrun-receiving-sa@my-project.iam.gserviceaccount.com',
    );
    expect(receiving.spec.template.spec.containers[0].image).toBe(SAMPLE.RECEIVING_IMAGE);
    const calling = parse(readFileSync(join(out, 'calling.yaml'), 'utf8'));
    expect(calling.spec.template.spec.containers[0].env).toContainEqual({
      name: 'URL',
      value: 'https://receiving-123456789012.us-central1.run.app',
    });
    expect(readFileSync(join(out, 'receiving-policy.yaml'), 'utf8')).toContain(
      'serviceAccount:cloudrun-authenticated-sa@my-project.iam.gserviceaccount.com',
    );
    expect(readDeployDir(join(root, 'deploy'))).toEqual(before);
  });

  it('names every missing, malformed and unknown value at once, exits 2 and writes nothing', async () => {
    const { code, stderr } = await render([
      `--out=${out}`,
      'PROJECT_ID=My_Project',
      'REGON=us-central1',
      `RECEIVING_IMAGE=${SAMPLE.RECEIVING_IMAGE}`,
      'CALLING_IMAGE=calling image',
    ]);
    expect(code).toBe(2);
    expect(stderr).toContain('PROJECT_ID must be the project id: 6 to 30 lowercase letters');
    expect(stderr).toContain('got "My_Project"');
    expect(stderr).toContain(
      "PROJECT_NUMBER is required: the project's number (gcloud projects describe",
    );
    expect(stderr).toContain('REGION is required: a Cloud Run region such as us-central1');
    expect(stderr).toContain(
      'REGON is not a placeholder in deploy/ (they are: PROJECT_ID, PROJECT_NUMBER, REGION, RECEIVING_IMAGE, CALLING_IMAGE)',
    );
    expect(stderr).toContain(`CALLING_IMAGE must be calling's image`);
    expect(stderr).toContain('usage: npm run deploy:render');
    expect(stderr).not.toContain('RECEIVING_IMAGE must');
    expect(readdirSync(out)).toEqual([]);
  });

  it('refuses a value that would change the YAML around it', async () => {
    for (const [name, value] of [
      ['REGION', 'us-central1\n  evil: true'],
      ['PROJECT_ID', 'my-project # comment'],
      ['RECEIVING_IMAGE', 'gcr.io/x/y:1\nkind: Pod'],
      ['PROJECT_NUMBER', "123'"],
    ] as const) {
      const { code, stderr } = await render([
        `--out=${out}`,
        ...args({ ...SAMPLE, [name]: value }),
      ]);
      expect({ name, code }).toEqual({ name, code: 2 });
      expect(stderr).toContain(`${name} must be`);
    }
    expect(readdirSync(out)).toEqual([]);
  });

  it('refuses to write into deploy/ itself, a value given twice, and an argument of no known form', async () => {
    const intoSources = await render(['--out=deploy', ...args(SAMPLE)]);
    expect(intoSources.code).toBe(2);
    expect(intoSources.stderr).toContain('--out must not be deploy/ itself');
    const twice = await render([`--out=${out}`, ...args(SAMPLE), 'REGION=europe-west1']);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain('REGION is given twice');
    const stray = await render([`--out=${out}`, ...args(SAMPLE), '--region=us-central1']);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain('"--region=us-central1" is neither --out=DIR nor NAME=VALUE');
    expect(readdirSync(out)).toEqual([]);
  });

  it('writes to dist/deploy by default and shows its usage on --help', async () => {
    const help = await render(['--help']);
    expect(help.code).toBe(0);
    for (const name of Object.keys(PLACEHOLDERS)) expect(help.stdout).toContain(name);
    const { code, stdout } = await render(args(SAMPLE));
    expect(code).toBe(0);
    expect(stdout).toContain('wrote dist/deploy/receiving.yaml');
    expect(existsSync(join(root, 'dist/deploy/receiving.yaml'))).toBe(true);
  });
});

describe('renderDeploy checks the resolved services', () => {
  const files = readDeployDir(join(root, 'deploy'));
  const edit = (name: string, from: string | RegExp, to: string): DeployFile[] =>
    files.map((f) => {
      if (f.name !== name) return f;
      const text = f.text.replace(from, to);
      if (text === f.text) throw new Error(`${name} has no ${String(from)}`);
      return { name, text };
    });
  const UNCOMMENTED =
    '    run.googleapis.com/custom-audiences: \'["https://receiving.example.com"]\'';
  const withCustomAudience = edit(
    'receiving.yaml',
    /^ {4}# run\.googleapis\.com\/custom-audiences: .*$/m,
    UNCOMMENTED,
  );

  it("accepts deploy/ as it is, and with receiving's commented custom audience switched on", () => {
    expect(renderDeploy(files, SAMPLE).map((f) => f.name)).toEqual([
      'calling.yaml',
      'receiving-policy.yaml',
      'receiving.yaml',
    ]);
    const rendered = renderDeploy(withCustomAudience, SAMPLE).find(
      (f) => f.name === 'receiving.yaml',
    )!;
    expect(parse(rendered.text).metadata.annotations['run.googleapis.com/custom-audiences']).toBe(
      '["https://receiving.example.com"]',
    );
  });

  it('refuses a service on the default compute or App Engine identity, or on none', () => {
    const compute = edit(
      'receiving.yaml',
      /serviceAccountName: .*/,
      'serviceAccountName: 123456789012-compute@developer.gserviceaccount.com',
    );
    expect(problemsOf(() => renderDeploy(compute, SAMPLE))).toEqual([
      'receiving.yaml: receiving runs as 123456789012-compute@developer.gserviceaccount.com, a default identity (a project Editor); give it its own service account',
    ]);
    const appspot = edit(
      'calling.yaml',
      /serviceAccountName: .*/,
      'serviceAccountName: my-project@appspot.gserviceaccount.com',
    );
    expect(problemsOf(() => renderDeploy(appspot, SAMPLE))[0]).toContain(
      'calling runs as my-project@appspot.gserviceaccount.com, a default identity',
    );
    const none = edit('calling.yaml', /^\s+serviceAccountName: .*\n/m, '\n');
    expect(problemsOf(() => renderDeploy(none, SAMPLE))).toEqual([
      'calling.yaml: calling has no serviceAccountName; it would run as the default compute identity, a project Editor',
    ]);
  });

  it('refuses custom audiences that are not a JSON list of strings', () => {
    for (const bad of [
      "'https://receiving.example.com'",
      "'[]'",
      "'[1]'",
      '\'[""]\'',
      '\'{"a": 1}\'',
    ]) {
      const files = edit(
        'receiving.yaml',
        /^ {4}# run\.googleapis\.com\/custom-audiences: .*$/m,
        `    run.googleapis.com/custom-audiences: ${bad}`,
      );
      expect(problemsOf(() => renderDeploy(files, SAMPLE))).toEqual([
        `receiving.yaml: run.googleapis.com/custom-audiences must be a JSON list of strings, e.g. '["https://receiving.example.com"]'`,
      ]);
    }
  });

  it('refuses calling asking for an audience receiving does not accept, and accepts one of its custom audiences', () => {
    const audience = (value: string, from = files) =>
      from.map((f) =>
        f.name === 'calling.yaml'
          ? {
              ...f,
              text: f.text.replace(
                /( +)- name: URL\n/,
                `$1- name: AUDIENCE\n$1  value: ${value}\n$&`,
              ),
            }
          : f,
      );
    expect(
      problemsOf(() => renderDeploy(audience('https://receiving.example.com'), SAMPLE)),
    ).toEqual([
      'calling.yaml: AUDIENCE "https://receiving.example.com" is not one receiving accepts (https://receiving-123456789012.us-central1.run.app); ' +
        "add it to receiving's run.googleapis.com/custom-audiences or change AUDIENCE",
    ]);
    expect(() =>
      renderDeploy(audience('https://receiving.example.com', withCustomAudience), SAMPLE),
    ).not.toThrow();
    expect(() =>
      renderDeploy(audience('https://receiving-123456789012.us-central1.run.app'), SAMPLE),
    ).not.toThrow();
    const badUrl = files.map((f) =>
      f.name === 'calling.yaml'
        ? { ...f, text: f.text.replace('value: https://receiving-', 'value: receiving-') }
        : f,
    );
    expect(problemsOf(() => renderDeploy(badUrl, SAMPLE))).toEqual([
      'calling.yaml: URL must be an absolute URL, got "receiving-123456789012.us-central1.run.app"',
    ]);
  });

  it('refuses a placeholder deploy/ uses that it does not know, and YAML that does not parse', () => {
    const unknown = edit('calling.yaml', "maxScale: '10'", "maxScale: '${MAX_SCALE}'");
    expect(problemsOf(() => renderDeploy(unknown, SAMPLE))).toEqual([
      '${MAX_SCALE} in deploy/ is not a known placeholder',
    ]);
    const broken = edit('calling.yaml', 'kind: Service', 'kind: Service\n  bad: [');
    expect(problemsOf(() => renderDeploy(broken, SAMPLE))[0]).toMatch(
      /^calling\.yaml: not valid YAML: /,
    );
  });
});
