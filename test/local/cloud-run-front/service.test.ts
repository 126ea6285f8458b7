import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { parseServiceManifest } from '../../../local/cloud-run-front/service.js';
import { readDeployDir, renderDeploy } from '../../../scripts/lib/deploy-manifests.js';
import { SAMPLE_VALUES } from '../../helpers/deploy-values.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const rendered = new Map(
  renderDeploy(readDeployDir(join(root, 'deploy')), SAMPLE_VALUES).map((f) => [f.name, f.text]),
);
const minimal = (extra = '') =>
  `apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: svc\n${extra}`;

describe('what the front reads from a Cloud Run manifest', () => {
  it("reads deploy/'s two services as they deploy", () => {
    expect(parseServiceManifest(rendered.get('receiving.yaml')!, 'receiving.yaml')).toEqual({
      name: 'receiving',
      region: 'us-central1',
      invokerIamDisabled: false,
      customAudiences: [],
      timeoutSeconds: 30,
      serviceAccount: 'cloudrun-receiving-sa@my-project.iam.gserviceaccount.com',
      env: { TOKEN_CHECK: 'platform', NODE_OPTIONS: '--max-semi-space-size=16' },
      document: parse(rendered.get('receiving.yaml')!),
    });
    expect(parseServiceManifest(rendered.get('calling.yaml')!, 'calling.yaml')).toEqual({
      name: 'calling',
      region: 'us-central1',
      invokerIamDisabled: true,
      customAudiences: [],
      timeoutSeconds: 30,
      serviceAccount: 'cloudrun-authenticated-sa@my-project.iam.gserviceaccount.com',
      env: {
        URL: 'https://receiving-123456789012.us-central1.run.app',
        NODE_OPTIONS: '--max-semi-space-size=16',
      },
      document: parse(rendered.get('calling.yaml')!),
    });
  });

  it("takes Cloud Run's defaults for what a manifest leaves out", () => {
    expect(parseServiceManifest(minimal(), 'm.yaml')).toEqual({
      name: 'svc',
      region: undefined,
      invokerIamDisabled: false,
      customAudiences: [],
      timeoutSeconds: 300,
      serviceAccount: undefined,
      env: {},
      document: {
        apiVersion: 'serving.knative.dev/v1',
        kind: 'Service',
        metadata: { name: 'svc' },
      },
    });
    expect(
      parseServiceManifest(
        minimal('spec:\n  template:\n    spec:\n      containers: []\n'),
        'm.yaml',
      ).env,
    ).toEqual({});
    expect(parseServiceManifest(minimal('spec: {}\n'), 'm.yaml').timeoutSeconds).toBe(300);
    expect(parseServiceManifest(minimal('spec:\n  template: {}\n'), 'm.yaml').env).toEqual({});
    expect(
      parseServiceManifest(
        minimal(
          'spec:\n  template:\n    spec:\n      timeoutSeconds: "30"\n      serviceAccountName: 7\n',
        ),
        'm.yaml',
      ),
    ).toMatchObject({
      timeoutSeconds: 300,
      serviceAccount: undefined,
    });
  });

  it('reads the invoker check annotation as gcloud writes it ("True") or as YAML does (true)', () => {
    const disabled = (value: string) =>
      parseServiceManifest(
        minimal(`  annotations:\n    run.googleapis.com/invoker-iam-disabled: ${value}\n`),
        'm.yaml',
      ).invokerIamDisabled;
    expect([
      disabled("'true'"),
      disabled("'True'"),
      disabled('true'),
      disabled("'false'"),
      disabled('false'),
      disabled("'yes'"),
    ]).toEqual([true, true, true, false, false, false]);
  });

  it('reads the container env: strings kept, numbers as text, a missing value as empty, entries without a name skipped', () => {
    const env = parseServiceManifest(
      minimal(
        'spec:\n  template:\n    spec:\n      containers:\n        - env:\n            - {name: A, value: x}\n            - {name: B, value: 3}\n            - {name: C}\n            - {value: orphan}\n',
      ),
      'm.yaml',
    ).env;
    expect(env).toEqual({ A: 'x', B: '3', C: '' });
  });

  it('reads custom audiences, and refuses any that are not a JSON list of strings', () => {
    const audiences = (value: string) =>
      parseServiceManifest(
        minimal(`  annotations:\n    run.googleapis.com/custom-audiences: ${value}\n`),
        'm.yaml',
      ).customAudiences;
    expect(audiences(`'["https://a.example", "b"]'`)).toEqual(['https://a.example', 'b']);
    for (const bad of [
      `'https://a.example'`,
      `'[]'`,
      `'[""]'`,
      `'[1]'`,
      `'{"a": "b"}'`,
      `'["a"'`,
      '3',
    ]) {
      expect(() => audiences(bad)).toThrow(
        'm.yaml: run.googleapis.com/custom-audiences must be a JSON list of strings',
      );
    }
  });

  it('refuses what is not a Cloud Run service, naming the file', () => {
    expect(() => parseServiceManifest('kind: [', 'm.yaml')).toThrow(/^m\.yaml: not valid YAML: \S/);
    for (const text of [
      '',
      'kind: Service',
      'kind: Pod\nmetadata:\n  name: p',
      'kind: Service\nmetadata:\n  name: 3',
      '- a',
    ]) {
      expect(() => parseServiceManifest(text, 'm.yaml')).toThrow(
        'm.yaml: not a Cloud Run service manifest (kind: Service with metadata.name)',
      );
    }
  });
});
