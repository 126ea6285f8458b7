import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createAdminApi, LiveService } from '../../../local/cloud-run-admin/api.js';
import { addBinding, PolicyStore, type Policy } from '../../../local/cloud-run-front/policy.js';
import { parseServiceManifest } from '../../../local/cloud-run-front/service.js';
import { createSigningKey, type SigningKey } from '../../../local/metadata-emulator/signing-key.js';
import { readDeployDir, renderDeploy } from '../../../scripts/lib/deploy-manifests.js';
import { SAMPLE_VALUES } from '../../helpers/deploy-values.js';
import { capturingLogger } from '../../helpers/logs.js';
import { nowS } from '../../helpers/servers.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const rendered = new Map(
  renderDeploy(readDeployDir(join(root, 'deploy')), SAMPLE_VALUES).map((f) => [f.name, f.text]),
);
const PROJECT = SAMPLE_VALUES.PROJECT_ID!;
const NUMBER = SAMPLE_VALUES.PROJECT_NUMBER!;
const REGION = SAMPLE_VALUES.REGION!;
const ADMIN = 'dev@example.com';
const SA = `serviceAccount:cloudrun-authenticated-sa@${PROJECT}.iam.gserviceaccount.com`;
const CONCURRENT =
  'There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.';

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown> & { error?: { code: number; message: string; status: string } };
}

describe('the local Cloud Run Admin API, over real HTTP', () => {
  let key: SigningKey;
  let dir: string;
  let store: PolicyStore;
  let server: Server;
  let base: string;
  let token: string;
  let services: Map<string, LiveService>;
  let lines: string[];
  beforeAll(async () => {
    key = await createSigningKey();
    token = key.accessTokens.mint(ADMIN, nowS() + 3600);
  });
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'admin-'));
    store = new PolicyStore(dir);
    store.reset('receiving', { bindings: [{ role: 'roles/run.invoker', members: [SA] }] });
    store.reset('calling', { bindings: [] });
    services = new Map([
      [
        'receiving',
        new LiveService(
          parseServiceManifest(rendered.get('receiving.yaml')!, 'receiving.yaml'),
          'http://127.0.0.1:8081',
        ),
      ],
      [
        'calling',
        new LiveService(
          parseServiceManifest(rendered.get('calling.yaml')!, 'calling.yaml'),
          'http://127.0.0.1:8080',
        ),
      ],
    ]);
    const captured = capturingLogger();
    lines = captured.lines;
    server = createAdminApi({
      projectId: PROJECT,
      projectNumber: NUMBER,
      region: REGION,
      services,
      store,
      verifyAccessToken: key.accessTokens.verify,
      logger: captured.logger,
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const iam = (service = 'receiving', project = PROJECT, region = REGION) =>
    `/v1/projects/${project}/locations/${region}/services/${service}`;
  const knative = (service = 'receiving', namespace = PROJECT) =>
    `/apis/serving.knative.dev/v1/namespaces/${namespace}/services/${service}`;
  async function call(
    path: string,
    init: { method?: string; body?: unknown; auth?: string | null } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (init.auth !== null) headers.authorization = init.auth ?? `Bearer ${token}`;
    const res = await fetch(`${base}${path}`, {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      headers,
      ...(init.body === undefined
        ? {}
        : { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) }),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as Answer['body'] };
  }
  const error = (answer: Answer) => [
    answer.status,
    answer.body.error?.status,
    answer.body.error?.message,
  ];
  const getPolicy = async () =>
    (await call(`${iam()}:getIamPolicy?alt=json&options.requestedPolicyVersion=3`))
      .body as unknown as Policy;
  const setPolicy = (policy: Policy, extra: Record<string, unknown> = {}) =>
    call(`${iam()}:setIamPolicy?alt=json`, { body: { policy, ...extra } });

  describe('who may call it', () => {
    it("refuses, as Google's APIs do, a call without an access token minted by the chain's metadata servers", async () => {
      const other = (await createSigningKey()).accessTokens.mint(ADMIN, nowS() + 3600);
      const expired = key.accessTokens.mint(ADMIN, nowS() - 1);
      const [prefix, mac] = token.split(/\.(?=[\w-]{43}$)/) as [string, string];
      const forgedBody = `ya29.emulator-${Buffer.from(JSON.stringify({ email: 'evil@example.com', exp: nowS() + 3600 })).toString('base64url')}`;
      const flipped = `${prefix}.${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}`;
      for (const auth of [
        null,
        '',
        'Bearer',
        `Basic ${token}`,
        `Bearer ${other}`,
        `Bearer ${expired}`,
        `Bearer ${forgedBody}.${mac}`,
        `Bearer ${flipped}`,
        `Bearer ${token}x`,
        `Bearer ${token} ${token}`,
        `Bearer ${token}, Bearer ${token}`,
        'Bearer ya29.emulator-e30.short',
        'Bearer eyJhbGciOiJSUzI1NiJ9.eyJlbWFpbCI6ImFAYi5jbyJ9.c2ln',
      ]) {
        const answer = await call(`${iam()}:getIamPolicy`, { auth });
        expect({ auth, answer: error(answer) }).toEqual({
          auth,
          answer: [
            401,
            'UNAUTHENTICATED',
            'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
          ],
        });
        expect(answer.headers.get('www-authenticate')).toBe(
          'Bearer realm="https://accounts.google.com/"',
        );
        expect(answer.headers.get('content-type')).toBe('application/json; charset=UTF-8');
      }
      expect((await call(`${knative()}`, { auth: null })).status).toBe(401);
      expect((await call(`${iam()}:getIamPolicy`)).status).toBe(200);
      expect((await call(`${iam()}:getIamPolicy`, { auth: `bearer  ${token}` })).status).toBe(200);
      // Two Authorization headers, the first a good one: refused, as Node would keep only that one.
      const twice = await new Promise<number>((resolve) => {
        const socket = connect(Number(new URL(base).port), '127.0.0.1', () =>
          socket.write(
            `GET ${iam()}:getIamPolicy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nAuthorization: Bearer x\r\nConnection: close\r\n\r\n`,
          ),
        );
        let text = '';
        socket.on('data', (chunk) => (text += chunk));
        socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1])));
      });
      expect(twice).toBe(401);
      expect(lines.join('\n')).not.toContain(mac);
    });
  });

  describe('the IAM methods', () => {
    it('gets the policy as IAM answers it: version, etag and bindings; an empty policy has no bindings field', async () => {
      expect(await getPolicy()).toEqual({
        version: 1,
        etag: store.current('receiving').etag,
        bindings: [{ role: 'roles/run.invoker', members: [SA] }],
      });
      const empty = await call(`${iam('calling')}:getIamPolicy`);
      expect(empty.body).toEqual({ version: 1, etag: store.current('calling').etag });
      expect(empty.body.etag).toMatch(/^[A-Za-z0-9+/]{11}=$/);
    });

    it("sets a policy read with the current etag, refuses a stale one with IAM's 409 ABORTED, and keeps no half of it", async () => {
      const read = await getPolicy();
      const kept = await setPolicy(addBinding(read, 'roles/run.invoker', 'user:a@example.com'));
      expect(kept.status).toBe(200);
      expect(kept.body).toEqual({
        version: 1,
        etag: store.current('receiving').etag,
        bindings: [{ role: 'roles/run.invoker', members: [SA, 'user:a@example.com'] }],
      });
      expect(kept.body.etag).not.toBe(read.etag);
      expect(
        error(await setPolicy(addBinding(read, 'roles/run.invoker', 'user:b@example.com'))),
      ).toEqual([409, 'ABORTED', CONCURRENT]);
      expect((await getPolicy()).bindings).toEqual([
        { role: 'roles/run.invoker', members: [SA, 'user:a@example.com'] },
      ]);
      // gcloud writes the etag in base64url: the same bytes are the same etag.
      const url = Buffer.from(kept.body.etag as string, 'base64').toString('base64url');
      expect((await setPolicy({ bindings: [], etag: url })).status).toBe(200);
      // Without an etag, a set replaces whatever is there.
      expect(
        (await setPolicy({ bindings: [{ role: 'roles/run.invoker', members: ['allUsers'] }] }))
          .status,
      ).toBe(200);
      expect(lines.some((line) => line.includes(`${ADMIN} set the IAM policy of receiving`))).toBe(
        true,
      );
    });

    it('of concurrent read-modify-writes over HTTP, each is kept or refused ABORTED, and every one kept is there', async () => {
      const outcomes = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const member = `user:u${i}@example.com`;
          const answer = await setPolicy(
            addBinding(await getPolicy(), 'roles/run.invoker', member),
          );
          return { member, status: answer.status, why: answer.body.error?.status };
        }),
      );
      const members = (await getPolicy()).bindings[0]!.members;
      expect(
        outcomes
          .filter((o) => o.status !== 200)
          .every((o) => o.status === 409 && o.why === 'ABORTED'),
      ).toBe(true);
      expect(outcomes.filter((o) => o.status === 200).length).toBeGreaterThan(0);
      for (const o of outcomes)
        expect({ member: o.member, there: members.includes(o.member) }).toEqual({
          member: o.member,
          there: o.status === 200,
        });
    });

    it("refuses what IAM refuses, in IAM's words, and keeps the policy it has", async () => {
      const before = await getPolicy();
      const cases: [unknown, string][] = [
        [
          { policy: { bindings: [{ role: 'roles/run.invokr', members: [SA] }] } },
          'Role roles/run.invokr is not supported for this resource.',
        ],
        [
          { policy: { bindings: [{ role: 'roles/run.invoker', members: ["user:a'@b.co"] }] } },
          "Invalid member: user:a'@b.co (a'@b.co is not an email address).",
        ],
        [
          { policy: { bindings: [{ role: 'roles/run.invoker', members: ['dev@example.com'] }] } },
          'Policy members must be of the form "<type>:<value>".',
        ],
        [
          { policy: { bindings: [{ role: 'roles/run.invoker', members: 'allUsers' }] } },
          'policy: bindings[0].members must be a list of members',
        ],
        [{ policy: { bindings: {} } }, 'policy: bindings must be a list'],
        [{ policy: { etag: 'not base64!' } }, 'policy: etag must be base64'],
        [{ policy: 'all of it' }, 'policy: an IAM policy is a mapping with bindings'],
        ['{"policy": ', 'Invalid JSON payload received. Unexpected end of JSON input'],
        [{}, 'policy is required: the policy to set.'],
        [{ policy: null }, 'policy is required: the policy to set.'],
        ['null', 'Invalid JSON payload received. The request body must be a JSON object.'],
        [[], 'Invalid JSON payload received. The request body must be a JSON object.'],
        [
          { Policy: { bindings: [] } },
          'Invalid JSON payload received. Unknown name "Policy": Cannot find field.',
        ],
        [
          { policy: { bindings: [] }, updateMask: 'policy.bindings' },
          'Invalid update mask path: "policy.bindings" (a policy\'s fields are bindings, etag, version, auditConfigs).',
        ],
        [{ policy: { bindings: [] }, updateMask: 3 }, 'updateMask must be a string.'],
        [
          { policy: { bindings: [], version: 4 } },
          "Invalid policy version 4: a policy's version is 1, 2 or 3.",
        ],
        [
          {
            policy: {
              bindings: [
                { role: 'roles/run.invoker', members: [SA], condition: { expression: 'true' } },
              ],
            },
          },
          'Binding for roles/run.invoker has a condition: the local chain does not evaluate IAM conditions.',
        ],
      ];
      for (const [body, message] of cases) {
        expect({ body, answer: error(await call(`${iam()}:setIamPolicy`, { body })) }).toEqual({
          body,
          answer: [400, 'INVALID_ARGUMENT', message],
        });
      }
      const large = await call(`${iam()}:setIamPolicy`, {
        body: { policy: { bindings: [] }, pad: 'x'.repeat(2 << 20) },
      });
      expect(error(large)).toEqual([
        400,
        'INVALID_ARGUMENT',
        'The request body is larger than 1048576 bytes.',
      ]);
      // Exactly at the limit is not too large (and here not JSON).
      expect(error(await call(`${iam()}:setIamPolicy`, { body: ' '.repeat(1 << 20) }))[2]).toMatch(
        /^Invalid JSON payload received\./,
      );
      expect(await getPolicy()).toEqual(before);
      // The caller's mistakes are answered, not logged as the API's failures.
      expect(lines.filter((line) => line.includes('"severity":"ERROR"'))).toEqual([]);
    });

    it('honours an update mask: without bindings in it, the bindings stay', async () => {
      const before = await getPolicy();
      const answer = await setPolicy(
        { bindings: [], etag: before.etag! },
        { updateMask: 'auditConfigs' },
      );
      expect(answer.status).toBe(200);
      expect((await getPolicy()).bindings).toEqual(before.bindings);
      // An empty mask is the default one.
      const read = await getPolicy();
      expect(
        (
          await setPolicy(
            { bindings: [{ role: 'roles/run.invoker', members: ['allUsers'] }], etag: read.etag! },
            { updateMask: ' ' },
          )
        ).status,
      ).toBe(200);
      expect((await getPolicy()).bindings).toEqual([
        { role: 'roles/run.invoker', members: ['allUsers'] },
      ]);
      expect(
        (await setPolicy({ bindings: [] }, { updateMask: 'bindings, etag' })).body,
      ).not.toHaveProperty('bindings');
    });

    it('answers testIamPermissions with the Cloud Run permissions asked for', async () => {
      const answer = await call(`${iam()}:testIamPermissions`, {
        body: { permissions: ['run.services.setIamPolicy', 'storage.buckets.get', 3] },
      });
      expect(answer.body).toEqual({ permissions: ['run.services.setIamPolicy'] });
      expect((await call(`${iam()}:testIamPermissions`, { body: {} })).body).toEqual({
        permissions: [],
      });
    });

    it('answers a policy store it cannot read with one clear 400 FAILED_PRECONDITION, serves on, and is repaired by a set without an etag', async () => {
      writeFileSync(store.file('receiving'), 'bindings: [');
      const broken = await call(`${iam()}:getIamPolicy`);
      expect(broken.status).toBe(400);
      expect(broken.body.error?.status).toBe('FAILED_PRECONDITION');
      expect(broken.body.error?.message).toContain(
        `The IAM policy of receiving cannot be read: ${store.file('receiving')}: not valid YAML or JSON`,
      );
      expect(broken.body.error?.message).toContain('Restart npm start to rewrite it from deploy/');
      expect(error(await setPolicy({ bindings: [], etag: 'BwX=' }))).toEqual(error(broken));
      expect((await call(`${iam('calling')}:getIamPolicy`)).status).toBe(200);
      expect(
        (await setPolicy({ bindings: [{ role: 'roles/run.invoker', members: [SA] }] })).status,
      ).toBe(200);
      expect((await getPolicy()).bindings).toEqual([{ role: 'roles/run.invoker', members: [SA] }]);
      expect(lines.filter((line) => line.includes('"severity":"ERROR"'))).toHaveLength(2);
    });
  });

  it('logs nothing, and serves on, when a client leaves mid-body', async () => {
    await new Promise<void>((resolve) => {
      const socket = connect(Number(new URL(base).port), '127.0.0.1', () => {
        socket.write(
          `POST ${iam()}:setIamPolicy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 100\r\n\r\n{"pol`,
          () => setTimeout(() => socket.destroy(), 50),
        );
      });
      socket.on('close', () => resolve());
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(lines).toEqual([]);
    expect((await getPolicy()).bindings).toEqual([{ role: 'roles/run.invoker', members: [SA] }]);
  });

  describe('services: get, list, replace', () => {
    it('describes a service as Cloud Run does: the manifest as running, its URL, Ready', async () => {
      const { status, body } = await call(`${knative()}?alt=json`);
      expect(status).toBe(200);
      expect(body).toMatchObject({
        apiVersion: 'serving.knative.dev/v1',
        kind: 'Service',
        metadata: {
          name: 'receiving',
          namespace: NUMBER,
          generation: 1,
          labels: { 'cloud.googleapis.com/location': REGION },
          annotations: { 'run.googleapis.com/ingress': 'all' },
        },
        spec: {
          template: {
            spec: {
              serviceAccountName: `cloudrun-receiving-sa@${PROJECT}.iam.gserviceaccount.com`,
              timeoutSeconds: 30,
            },
          },
        },
        status: {
          observedGeneration: 1,
          url: 'http://127.0.0.1:8081',
          address: { url: 'http://127.0.0.1:8081' },
          conditions: [
            { type: 'Ready', status: 'True' },
            { type: 'ConfigurationsReady', status: 'True' },
            { type: 'RoutesReady', status: 'True' },
          ],
          latestReadyRevisionName: 'receiving-00001-loc',
        },
      });
      expect(body).toMatchObject({
        metadata: {
          selfLink: `/apis/serving.knative.dev/v1/namespaces/${NUMBER}/services/receiving`,
          resourceVersion: '1',
        },
        spec: { traffic: [{ percent: 100, latestRevision: true }] },
        status: {
          traffic: [{ revisionName: 'receiving-00001-loc', percent: 100, latestRevision: true }],
        },
      });
      // The project number names the namespace as well as the id; v1's path answers the same.
      expect((await call(knative('receiving', NUMBER))).body).toEqual(body);
      expect((await call(iam())).body).toEqual(body);
    });

    it("answers Resource Manager's projects.get for its project, by id or number", async () => {
      const project = {
        projectNumber: NUMBER,
        projectId: PROJECT,
        lifecycleState: 'ACTIVE',
        name: PROJECT,
      };
      expect((await call(`/v1/projects/${PROJECT}?alt=json`)).body).toEqual(project);
      expect((await call(`/v1/projects/${NUMBER}`)).body).toEqual(project);
      expect(error(await call('/v1/projects/other-project'))[0]).toBe(404);
      expect(error(await call(`/v1/projects/${PROJECT}`, { auth: null }))[0]).toBe(401);
    });

    it('lists the chain’s services, in its region or in all (-)', async () => {
      for (const path of [
        `/apis/serving.knative.dev/v1/namespaces/${PROJECT}/services`,
        `/v1/projects/${PROJECT}/locations/-/services`,
      ]) {
        const { body } = await call(path);
        expect(body).toMatchObject({ apiVersion: 'serving.knative.dev/v1', kind: 'ServiceList' });
        expect(
          (body.items as { metadata: { name: string } }[]).map((s) => s.metadata.name),
        ).toEqual(['receiving', 'calling']);
      }
      expect(
        (await call(`/v1/projects/${PROJECT}/locations/europe-west1/services`)).body.items,
      ).toEqual([]);
    });

    it('says which project, region and services it has, as Google words a missing resource', async () => {
      expect(error(await call(`${iam('nope')}:getIamPolicy`))).toEqual([
        404,
        'NOT_FOUND',
        `Resource 'nope' of kind 'SERVICE' in region '${REGION}' in project '${PROJECT}' does not exist. The local chain runs receiving and calling in ${REGION}, from deploy/.`,
      ]);
      expect(
        error(await call(`${iam('receiving', PROJECT, 'europe-west1')}:getIamPolicy`))[2],
      ).toContain("Resource 'receiving' of kind 'SERVICE' in region 'europe-west1'");
      expect(error(await call(`${iam('receiving', 'other-project')}:getIamPolicy`))).toEqual([
        404,
        'NOT_FOUND',
        `Project 'other-project' is not the local chain's: it runs project ${PROJECT} (${NUMBER}).`,
      ]);
      expect(error(await call(knative('receiving', 'other-project')))[0]).toBe(404);
      // A message that quotes the path shows no token in it.
      const pasted = await call(`/v1/${token}/eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl`);
      expect(pasted.body.error?.message).toBe(
        '/v1/[token]/[token] is not a method of the local Cloud Run Admin API.',
      );
      expect(
        (await call(`/v1/projects/${'p'.repeat(5000)}`)).body.error!.message.length,
      ).toBeLessThanOrEqual(1001);
      for (const path of [
        '/',
        '/v1/projects',
        `${iam()}:deleteIamPolicy`,
        `${iam()}/../../..`,
        '/computeMetadata/v1/instance/id',
        // Each route is the whole path, not a part of one.
        `/x${iam()}:getIamPolicy`,
        `${iam()}:getIamPolicyX`,
        `/x/v1/projects/${PROJECT}`,
        `/v1/projects/${PROJECT}/x`,
        `/x/v1/projects/${PROJECT}/locations/${REGION}/services`,
        `/v1/projects/${PROJECT}/locations/${REGION}/services/receiving/x`,
        `/x/apis/serving.knative.dev/v1/namespaces/${PROJECT}/services`,
        `/apis/serving.knative.dev/v1/namespaces/${PROJECT}/services/receiving/x`,
      ]) {
        const answer = await call(path);
        expect({
          path,
          answer: error(answer).slice(0, 2),
          challenge: answer.headers.get('www-authenticate'),
        }).toEqual({
          path,
          answer: [404, 'NOT_FOUND'],
          challenge: null,
        });
      }
      expect(error(await call(`${iam()}:setIamPolicy`))[0]).toBe(404); // a GET
      for (const method of ['DELETE', 'PUT', 'PATCH'])
        expect(error(await call(`${iam()}:getIamPolicy`, { method }))[0]).toBe(404);
      expect((await call(`${iam()}:getIamPolicy`, { method: 'POST', body: {} })).status).toBe(200);
    });

    it('applies a replace that changes what the front enforces live, and says so in generation', async () => {
      const current = (await call(knative())).body;
      const metadata = current.metadata as { annotations: Record<string, string> };
      const opened = {
        ...current,
        metadata: {
          ...metadata,
          annotations: {
            ...metadata.annotations,
            'run.googleapis.com/invoker-iam-disabled': 'true',
          },
        },
      };
      const answer = await call(knative(), { method: 'PUT', body: opened });
      expect(error(answer)).toEqual([200, undefined, undefined]);
      expect(answer.body).toMatchObject({
        metadata: { generation: 2, annotations: { 'serving.knative.dev/lastModifier': ADMIN } },
        status: { observedGeneration: 2 },
      });
      expect(services.get('receiving')!.manifest.invokerIamDisabled).toBe(true);
      const audiences = '["https://receiving.example.com"]';
      const custom = {
        ...opened,
        metadata: {
          ...metadata,
          annotations: {
            ...metadata.annotations,
            'run.googleapis.com/custom-audiences': audiences,
          },
        },
      };
      // Made from the read of generation 1, after generation 2: it would undo the change it never saw.
      expect(error(await call(knative(), { method: 'PUT', body: custom }))).toEqual([
        409,
        'ABORTED',
        'Operation cannot be fulfilled on services "receiving": the object has been modified; please apply your changes to the latest version and try again.',
      ]);
      expect(services.get('receiving')!.manifest.invokerIamDisabled).toBe(true);
      custom.metadata = { ...custom.metadata, resourceVersion: '2' } as typeof custom.metadata;
      expect((await call(knative(), { method: 'PUT', body: custom })).body).toMatchObject({
        metadata: { generation: 3 },
      });
      expect(services.get('receiving')!.manifest).toMatchObject({
        invokerIamDisabled: false,
        customAudiences: ['https://receiving.example.com'],
      });
      // The same again changes nothing, as a replace of what runs does; without a resourceVersion it is not checked.
      delete (custom.metadata as { resourceVersion?: string }).resourceVersion;
      expect((await call(knative(), { method: 'PUT', body: custom })).body).toMatchObject({
        metadata: { generation: 3 },
      });
      expect(
        lines.some((line) =>
          line.includes(
            `${ADMIN} replaced receiving: run.googleapis.com/invoker-iam-disabled, run.googleapis.com/custom-audiences applied`,
          ),
        ),
      ).toBe(true);
    });

    it('refuses a replace that needs a new revision, naming what differs, and changes nothing', async () => {
      const current = (await call(knative())).body as {
        spec: { template: { spec: { containers: { env: unknown[] }[] } } };
      };
      const changedEnv = structuredClone(current);
      changedEnv.spec.template.spec.containers[0]!.env = [{ name: 'TOKEN_CHECK', value: 'verify' }];
      const answer = await call(knative(), { method: 'PUT', body: changedEnv });
      expect(error(answer).slice(0, 2)).toEqual([400, 'FAILED_PRECONDITION']);
      expect(answer.body.error?.message).toBe(
        'The local chain cannot apply this to receiving while it runs: spec.template.spec.containers differ from the running service (a change there ' +
          'makes a new revision, which the local chain makes only when it starts). Change deploy/receiving.yaml and restart npm start. ' +
          'Applied live: run.googleapis.com/invoker-iam-disabled, run.googleapis.com/custom-audiences.',
      );
      const relabelled = { ...current, metadata: { name: 'receiving', labels: { team: 'x' } } };
      expect(
        (await call(knative(), { method: 'PUT', body: relabelled })).body.error?.message,
      ).toContain(
        'metadata.labels.cloud.googleapis.com/location, metadata.labels.team, metadata.annotations differ',
      );
      expect(
        error(
          await call(knative(), {
            method: 'PUT',
            body: { ...current, metadata: { name: 'calling' } },
          }),
        ),
      ).toEqual([
        400,
        'INVALID_ARGUMENT',
        'metadata.name is calling, but the request replaces receiving.',
      ]);
      expect(error(await call(knative(), { method: 'PUT', body: { kind: 'Pod' } }))[2]).toBe(
        'the service: not a Cloud Run service manifest (kind: Service with metadata.name)',
      );
      expect(error(await call(knative(), { method: 'DELETE' }))[1]).toBe('FAILED_PRECONDITION');
      // Whatever a replace may not change is named, not silently kept: every part of the manifest.
      type Doc = {
        apiVersion: string;
        metadata: Record<string, unknown>;
        spec: Record<string, unknown> & { template: { metadata: Record<string, unknown> } };
      };
      const edits: [string, (doc: Doc) => void, string][] = [
        [
          'template labels',
          (d) => (d.spec.template.metadata.labels = { a: 'b' }),
          'spec.template.metadata.labels',
        ],
        [
          'revision name',
          (d) => (d.spec.template.metadata.name = 'receiving-00002-new'),
          'spec.template.metadata.name',
        ],
        [
          'traffic',
          (d) => (d.spec.traffic = [{ percent: 100, revisionName: 'receiving-00001-loc' }]),
          'spec.traffic',
        ],
        ['a new spec field', (d) => (d.spec.extra = 1), 'spec.extra'],
        [
          'a system-looking annotation',
          (d) =>
            ((d.metadata.annotations as Record<string, string>)['run.googleapis.com/launch-stage'] =
              'BETA'),
          'metadata.annotations.run.googleapis.com/launch-stage',
        ],
      ];
      for (const [what, edit, path] of edits) {
        const doc = structuredClone(current) as unknown as Doc;
        edit(doc);
        const refused = await call(knative(), { method: 'PUT', body: doc });
        expect({ what, answer: error(refused).slice(0, 2) }).toEqual({
          what,
          answer: [400, 'FAILED_PRECONDITION'],
        });
        expect({
          what,
          named: refused.body.error!.message.includes(`while it runs: ${path} differ`),
        }).toEqual({ what, named: true });
      }
      // Cloud Run's and gcloud's own annotations may come back changed or go; a look-alike key may not.
      const system = structuredClone(current) as unknown as Doc;
      const annotations = system.metadata.annotations as Record<string, string>;
      annotations['run.googleapis.com/client-name'] = 'gcloud';
      delete annotations['serving.knative.dev/creator'];
      (system.spec.template.metadata.annotations as Record<string, string>)[
        'client.knative.dev/user-image'
      ] = 'x';
      expect((await call(knative(), { method: 'PUT', body: system })).status).toBe(200);
      for (const key of ['example.com/serving.knative.dev/x', 'x-run.googleapis.com/client-name']) {
        const lookalike = structuredClone(current) as unknown as Doc;
        (lookalike.metadata.annotations as Record<string, string>)[key] = 'x';
        expect({
          key,
          status: (await call(knative(), { method: 'PUT', body: lookalike })).status,
        }).toEqual({ key, status: 400 });
        const inTemplate = structuredClone(current) as unknown as Doc;
        (inTemplate.spec.template.metadata.annotations as Record<string, string>)[key] = 'x';
        expect({
          key,
          status: (await call(knative(), { method: 'PUT', body: inTemplate })).status,
        }).toEqual({ key, status: 400 });
      }
      const invalid: [string, (doc: Doc) => void, string][] = [
        [
          'another namespace',
          (d) => (d.metadata.namespace = 'other-project'),
          'metadata.namespace is "other-project", not this project',
        ],
        [
          'another apiVersion',
          (d) => (d.apiVersion = 'serving.knative.dev/v2'),
          'apiVersion must be serving.knative.dev/v1, not "serving.knative.dev/v2".',
        ],
        [
          'a number label',
          (d) => ((d.metadata.labels as Record<string, unknown>).team = 3),
          `Invalid value at 'metadata.labels["team"]' (TYPE_STRING): it must be a string.`,
        ],
        [
          'an object template annotation',
          (d) =>
            ((d.spec.template.metadata.annotations as Record<string, unknown>)[
              'autoscaling.knative.dev/maxScale'
            ] = {}),
          `Invalid value at 'spec.template.metadata.annotations["autoscaling.knative.dev/maxScale"]' (TYPE_STRING): it must be a string.`,
        ],
        [
          'a boolean annotation',
          (d) =>
            ((d.metadata.annotations as Record<string, unknown>)[
              'run.googleapis.com/invoker-iam-disabled'
            ] = true),
          `Invalid value at 'metadata.annotations["run.googleapis.com/invoker-iam-disabled"]' (TYPE_STRING): it must be a string.`,
        ],
      ];
      for (const [what, edit, message] of invalid) {
        const doc = structuredClone(current) as unknown as Doc;
        edit(doc);
        const refused = await call(knative(), { method: 'PUT', body: doc });
        expect({
          what,
          answer: error(refused).slice(0, 2),
          said: refused.body.error?.message.includes(message),
        }).toEqual({
          what,
          answer: [400, 'INVALID_ARGUMENT'],
          said: true,
        });
      }
      expect(services.get('receiving')!.manifest.invokerIamDisabled).toBe(false);
      expect(
        error(
          await call(`/apis/serving.knative.dev/v1/namespaces/${PROJECT}/services`, {
            body: current,
          }),
        )[2],
      ).toContain('The local chain cannot create a service');
      expect((await call(knative())).body).toMatchObject({ metadata: { generation: 1 } });
    });
  });
});
