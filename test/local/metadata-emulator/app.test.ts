import { jest } from '@jest/globals';
import { createPublicKey, createVerify, X509Certificate } from 'node:crypto';
import http from 'node:http';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { isMetadataHost } from '../../../local/metadata-emulator/app.js';
import { capturingLogger } from '../../helpers/logs.js';
import { startEmulator, nowS, type RunningEmulator } from '../../helpers/servers.js';

const V1 = '/computeMetadata/v1';
const FLAVOR = { 'Metadata-Flavor': 'Google' };

describe('metadata emulator', () => {
  let emulator: RunningEmulator;
  let clock: number;
  beforeAll(async () => {
    clock = nowS();
    emulator = await startEmulator(
      { PROJECT_ID: 'my-project', PROJECT_NUMBER: '555000111222' },
      { now: () => clock },
    );
  });
  afterAll(() => emulator.close());

  const get = (path: string, headers: Record<string, string> = FLAVOR) =>
    fetch(`${emulator.url}${path}`, { headers });
  /** A request as written, which fetch() cannot send: its own Host, any request target. */
  const rawGet = (path: string, headers: Record<string, string>) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const port = Number(emulator.url.split(':')[2]);
      const req = http.get({ host: '127.0.0.1', port, path, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
    });
  const identity = async (query: string, account = 'default') => {
    const res = await get(`${V1}/instance/service-accounts/${account}/identity?${query}`);
    expect(res.status).toBe(200);
    return res.text();
  };

  describe('header rules of the real server', () => {
    it('refuses requests without Metadata-Flavor: Google with 403', async () => {
      const variants: Record<string, string>[] = [
        {},
        { 'Metadata-Flavor': 'google' },
        { 'Metadata-Flavor': 'Microsoft' },
      ];
      for (const headers of variants) {
        const res = await get(`${V1}/project/project-id`, headers);
        expect(res.status).toBe(403);
        expect(res.headers.get('metadata-flavor')).toBe('Google');
        expect(res.headers.get('content-type')).toBe('text/html; charset=UTF-8');
        expect(await res.text()).toContain('Metadata-Flavor');
      }
    });

    /** A DNS-rebinding page's request arrives with its own name in Host. */
    const getWithHost = (path: string, host: string) => rawGet(path, { ...FLAVOR, Host: host });

    it.each([
      'evil.example',
      'evil.example:80',
      `rebind.attacker.test:${8082}`,
      '169.254.169.254',
      '10.0.0.1:8082',
      'localhost.evil.example',
      '[::2]:80',
    ])('refuses a request whose Host is %s with 403, minting nothing', async (host) => {
      const before = emulator.stats.identityRequests;
      const res = await getWithHost(
        `${V1}/instance/service-accounts/default/identity?audience=a`,
        host,
      );
      expect(res.status).toBe(403);
      expect(res.body).toMatch(/answers only requests addressed to a loopback address/);
      expect(res.body).not.toContain(host);
      expect(emulator.stats.identityRequests).toBe(before);
    });

    it.each([
      '127.0.0.1:8082',
      '127.0.0.1',
      '127.1.2.3:1',
      'localhost:8082',
      'LOCALHOST',
      'metadata.google.internal',
      'metadata',
      'metadata:80',
      '[::1]:8082',
    ])('answers a request whose Host is %s', async (host) => {
      const res = await getWithHost(
        `${V1}/instance/service-accounts/default/identity?audience=a`,
        host,
      );
      expect(res.status).toBe(200);
    });

    it.each([
      undefined,
      '',
      '127.0.0.1.evil.example',
      '127.0.0.256',
      'metadata.google.internal.evil',
      '[::ffff:10.0.0.1]',
      // Only the whole value counts: no name found inside or before something else.
      'evil:localhost',
      'localhost:8082x',
      '[abcdef:127.0.0.1]',
    ])('does not take %p for the metadata server', (host) => {
      expect(isMetadataHost(host)).toBe(false);
    });

    it.each([
      '//computeMetadata//v1///instance/service-accounts/default/identity?audience=a',
      '/oauth2/v3/certs/../../computeMetadata/v1/instance/service-accounts/default/identity?audience=a',
      '//oauth2/v3/certs/..//..//computeMetadata/v1/instance/service-accounts/default/identity?audience=a',
      '/computeMetadata%2Fv1%2Finstance/service-accounts/default/identity?audience=a',
      'http://localhost/computeMetadata/v1/instance/service-accounts/default/identity?audience=a',
      'http://computeMetadata/v1/instance/service-accounts/default/identity?audience=a',
    ])('a hostile target does not get around the rules: %s', async (target) => {
      const before = emulator.stats.identityRequests;
      expect((await getWithHost(target, 'evil.example')).status).toBe(403);
      expect((await rawGet(target, { Host: 'localhost' })).status).toBe(403);
      expect(emulator.stats.identityRequests).toBe(before);
    });

    it('takes an IPv4-mapped loopback address for the metadata server', () => {
      expect(isMetadataHost('[::ffff:127.0.0.1]:8082')).toBe(true);
    });

    it('refuses requests carrying X-Forwarded-For with 403, even with the flavor header', async () => {
      const res = await get(`${V1}/instance/service-accounts/default/identity?audience=a`, {
        ...FLAVOR,
        'X-Forwarded-For': '10.0.0.1',
      });
      expect(res.status).toBe(403);
    });

    it('accepts the legacy X-Google-Metadata-Request header', async () => {
      const res = await get(`${V1}/project/project-id`, { 'X-Google-Metadata-Request': 'True' });
      expect(await res.text()).toBe('my-project');
    });

    it('puts Metadata-Flavor and a Content-Type on every response, 404s included', async () => {
      for (const path of ['/', `${V1}/instance/`, `${V1}/nothing/here`, '/oauth2/v3/certs']) {
        const res = await get(path);
        expect([path, res.headers.get('metadata-flavor')]).toEqual([path, 'Google']);
        expect(res.headers.get('content-type')).toBeTruthy();
        // The real server's other headers; not Express's.
        expect([
          res.headers.get('server'),
          res.headers.get('x-xss-protection'),
          res.headers.get('x-frame-options'),
        ]).toEqual(['Metadata Server for VM', '0', 'SAMEORIGIN']);
        expect(res.headers.get('x-powered-by')).toBeNull();
      }
      const rejected = emulator.stats.rejectedRequests;
      expect((await get(`${V1}/nothing/here`)).status).toBe(404);
      expect(emulator.stats.rejectedRequests).toBe(rejected + 1);
    });

    it('answers 500 in the same form when minting fails, with no stack trace', async () => {
      const failing = await startEmulator(
        {},
        { key: { ...emulator.key, sign: () => Promise.reject(new Error('no key')) } },
      );
      try {
        const res = await fetch(
          `${failing.url}${V1}/instance/service-accounts/default/identity?audience=a`,
          { headers: FLAVOR },
        );
        expect([res.status, res.headers.get('content-type'), await res.text()]).toEqual([
          500,
          'text/html; charset=UTF-8',
          'Internal Server Error\n',
        ]);
      } finally {
        await failing.close();
      }
    });
  });

  describe('answers as the real server does', () => {
    const ETAG = /^[\da-f]{16}$/;

    it('takes repeated slashes as one on every path, and leaves the query alone', async () => {
      const token = await (
        await get(`${V1}//instance/service-accounts/default//identity?audience=https://x//y`)
      ).text();
      expect(decodeJwt(token).aud).toBe('https://x//y');
      expect(await (await get('//computeMetadata//v1///project//project-id')).text()).toBe(
        'my-project',
      );
      expect((await get('/oauth2//v3/certs', {})).status).toBe(200);
      // Every rule still holds on such a path.
      expect((await get(`${V1}//project/project-id`, {})).status).toBe(403);
    });

    it('puts an ETag of the body on every answer, errors included', async () => {
      const paths = [
        `${V1}/project/project-id`,
        `${V1}/instance/?recursive=true`,
        `${V1}/instance/service-accounts/default/token`,
        `${V1}/nothing`,
      ];
      const tags = new Set<string>();
      for (const path of paths) {
        const [first, second] = await Promise.all([get(path), get(path)]);
        expect(first.headers.get('etag')).toMatch(ETAG);
        tags.add(first.headers.get('etag')!);
        // The same value, the same tag; the access token differs each time, and so does its tag.
        if (!path.endsWith('/token'))
          expect(second.headers.get('etag')).toBe(first.headers.get('etag'));
        else expect(second.headers.get('etag')).not.toBe(first.headers.get('etag'));
      }
      expect(tags.size).toBe(paths.length);
      expect((await get(`${V1}/project/project-id`, {})).headers.get('etag')).toMatch(ETAG);
    });

    it('wait_for_change with a last_etag that is not the current one answers at once', async () => {
      // A 300 s wait would outlast this test's timeout.
      const res = await get(
        `${V1}/project/project-id?wait_for_change=true&timeout_sec=300&last_etag=0000000000000000`,
      );
      expect([res.status, await res.text()]).toEqual([200, 'my-project']);
    });

    it('wait_for_change with the current etag holds the request until timeout_sec, then answers the value', async () => {
      const now = await get(`${V1}/instance/id`);
      const etag = now.headers.get('etag')!;
      const res = await get(
        `${V1}/instance/id?wait_for_change=true&timeout_sec=1&last_etag=${etag}`,
      );
      expect([res.status, res.headers.get('etag'), await res.text()]).toEqual([
        200,
        etag,
        await now.text(),
      ]);
    });

    it('holds a wait (without last_etag too) until it ends; a client that leaves costs nothing; once ended, waits answer at once', async () => {
      // An emulator of its own: ending its waits is for good.
      const own = await startEmulator({ PROJECT_ID: 'my-project' });
      const { logger, lines } = capturingLogger();
      const logged = await startEmulator({ PROJECT_ID: 'my-project' }, { logger });
      try {
        const ownGet = (path: string, signal?: AbortSignal) =>
          fetch(`${own.url}${path}`, { headers: FLAVOR, ...(signal ? { signal } : {}) });
        let answered = false;
        const held = ownGet(`${V1}/project/project-id?wait_for_change=TRUE`).then(async (res) => {
          answered = true;
          return res.text();
        });
        const left = new AbortController();
        const gone = fetch(`${logged.url}${V1}/instance/?recursive=true&wait_for_change=true`, {
          headers: FLAVOR,
          signal: left.signal,
        });
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(answered).toBe(false);
        expect([own.stats.heldRequests, logged.stats.heldRequests]).toEqual([1, 1]);
        left.abort();
        await expect(gone).rejects.toThrow();
        for (let i = 0; i < 100 && logged.stats.heldRequests > 0; i += 1)
          await new Promise((resolve) => setTimeout(resolve, 10));
        expect(logged.stats.heldRequests).toBe(0);
        expect(await (await ownGet(`${V1}/project/project-id`)).text()).toBe('my-project');
        own.endWaits();
        expect(await held).toBe('my-project');
        expect(own.stats.heldRequests).toBe(0);
        // A 60 s wait would outlast this test's timeout.
        expect(
          await (
            await ownGet(`${V1}/project/project-id?wait_for_change=true&timeout_sec=60`)
          ).text(),
        ).toBe('my-project');
        // Leaving a wait is no problem, and logged as none.
        await new Promise((resolve) => setTimeout(resolve, 50));
        expect(lines.filter((line) => line.includes('"severity":"WARNING"'))).toEqual([]);
      } finally {
        await own.close();
        await logged.close();
      }
    });

    it('holds a wait at most 60 s, whatever timeout_sec asks', async () => {
      const own = await startEmulator({ PROJECT_ID: 'my-project' });
      const turn = () => new Promise((resolve) => setImmediate(resolve));
      // setTimeout alone is fake: the wait's timer moves with the test's clock, sockets do not.
      jest.useFakeTimers({
        doNotFake: [
          'Date',
          'hrtime',
          'nextTick',
          'performance',
          'queueMicrotask',
          'setImmediate',
          'clearImmediate',
          'setInterval',
          'clearInterval',
        ],
      });
      try {
        let answered = false;
        const held = fetch(
          `${own.url}${V1}/project/project-id?wait_for_change=true&timeout_sec=3600`,
          { headers: FLAVOR },
        ).then((res) => {
          answered = true;
          return res.text();
        });
        for (let i = 0; i < 5000 && own.stats.heldRequests === 0; i += 1) await turn();
        expect(own.stats.heldRequests).toBe(1);
        jest.advanceTimersByTime(59_999);
        for (let i = 0; i < 50; i += 1) await turn();
        expect(answered).toBe(false);
        jest.advanceTimersByTime(1);
        jest.useRealTimers();
        expect(await held).toBe('my-project');
      } finally {
        jest.useRealTimers();
        await own.close();
      }
    });

    it('refuses wait_for_change on a directory listing, as it is not a value (recursive=true is)', async () => {
      const res = await get(`${V1}/instance/?wait_for_change=true`);
      expect([res.status, await res.text()]).toEqual([
        400,
        'wait_for_change on a directory needs recursive=true\n',
      ]);
    });

    it.each(['-1', '1.5', 'soon', ''])('refuses timeout_sec=%s with 400', async (timeout) => {
      const res = await get(`${V1}/project/project-id?wait_for_change=true&timeout_sec=${timeout}`);
      expect([res.status, await res.text()]).toEqual([
        400,
        'timeout_sec must be a whole number of seconds\n',
      ]);
    });
  });

  describe('metadata values', () => {
    it.each([
      ['/project/project-id', 'my-project'],
      ['/project/numeric-project-id', '555000111222'],
      [
        '/instance/service-accounts/default/email',
        '555000111222-compute@developer.gserviceaccount.com',
      ],
      ['/instance/zone', 'projects/555000111222/zones/us-central1-1'],
      ['/instance/region', 'projects/555000111222/regions/us-central1'],
      ['/universe/universe-domain', 'googleapis.com'],
    ])('answers %s as text', async (path, value) => {
      const res = await get(`${V1}${path}`);
      expect(res.status).toBe(200);
      // Exactly, no charset: Debian's python3-google-auth 1.5.1 compares it whole.
      expect(res.headers.get('content-type')).toBe('application/text');
      expect(await res.text()).toBe(value);
    });

    it('answers the root ping that Python google-auth sends', async () => {
      const res = await get('/');
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('computeMetadata/\n');
    });

    it('lists directories with or without the trailing slash', async () => {
      for (const path of ['/instance', '/instance/']) {
        const text = await (await get(`${V1}${path}`)).text();
        expect(text.split('\n')).toEqual(
          expect.arrayContaining(['service-accounts/', 'zone', 'id']),
        );
      }
    });

    it('answers 404 for a value with a trailing slash, tokens included, and reads paths case by case, as the real server does', async () => {
      for (const path of [
        '/project/project-id/',
        '/instance/service-accounts/default/identity/?audience=a',
        '/instance/service-accounts/default/token/',
      ]) {
        expect([path, (await get(`${V1}${path}`)).status]).toEqual([path, 404]);
      }
      expect((await get(`${V1}/project/project-id`)).status).toBe(200);
      expect(
        (await get('/COMPUTEMETADATA/v1/instance/service-accounts/default/identity?audience=a'))
          .status,
      ).toBe(404);
      expect((await get(`${V1}/PROJECT/project-id`)).status).toBe(404);
      // The root listing, with or without its slash.
      for (const path of [V1, `${V1}/`])
        expect((await (await get(path)).text()).split('\n')).toContain('instance/');
    });

    it('answers a malformed %-escape with 400 of its own kind, no stack trace', async () => {
      const res = await get(`${V1}/instance/service-accounts/%ZZ/identity?audience=a`);
      expect([
        res.status,
        res.headers.get('content-type'),
        res.headers.get('metadata-flavor'),
      ]).toEqual([400, 'text/html; charset=UTF-8', 'Google']);
      expect(res.headers.get('etag')).toMatch(/^[\da-f]{16}$/);
      expect(await res.text()).toBe('Bad Request\n');
    });

    it('answers in full whatever If-None-Match says (no bodiless 304)', async () => {
      const first = await get(`${V1}/project/project-id`);
      const again = await get(`${V1}/project/project-id`, {
        ...FLAVOR,
        'If-None-Match': first.headers.get('etag')!,
      });
      expect([again.status, again.headers.get('content-type'), await again.text()]).toEqual([
        200,
        'application/text',
        'my-project',
      ]);
    });

    it('leaves the path of an absolute-form target as it is (its authority is not path)', async () => {
      const answer = await rawGet('http://computeMetadata/v1/project/project-id', {
        ...FLAVOR,
        Host: 'localhost',
      });
      // Its path is /v1/project/project-id: no such path, where collapsing "//" would have made one.
      expect(answer.status).toBe(404);
    });

    it('lists service accounts by alias and by email, as gcloud expects', async () => {
      const text = await (await get(`${V1}/instance/service-accounts/`)).text();
      expect(text).toBe('default/\n555000111222-compute@developer.gserviceaccount.com/\n');
    });

    it('answers recursive=true with JSON in the real server camelCase', async () => {
      const answer = await get(`${V1}/instance/service-accounts/default/?recursive=true`);
      expect(answer.headers.get('content-type')).toBe('application/json');
      const account = await answer.json();
      expect(account).toEqual({
        aliases: ['default'],
        email: '555000111222-compute@developer.gserviceaccount.com',
        scopes: ['https://www.googleapis.com/auth/cloud-platform'],
      });
      const project = await (await get(`${V1}/project/?recursive=true`)).json();
      expect(project).toEqual({
        attributes: {},
        numericProjectId: 555000111222,
        projectId: 'my-project',
      });
      const instance = (await (await get(`${V1}/instance/?recursive=true`)).json()) as Record<
        string,
        unknown
      >;
      expect(Object.keys(instance.serviceAccounts as object)).toEqual([
        'default',
        '555000111222-compute@developer.gserviceaccount.com',
      ]);
    });

    it('answers an access token for gcloud, by alias or email', async () => {
      for (const account of ['default', emulator.config.serviceAccount]) {
        const res = await get(`${V1}/instance/service-accounts/${account}/token`);
        expect(res.headers.get('content-type')).toBe('application/json');
        const body = (await res.json()) as { access_token: string };
        expect(body).toEqual({
          access_token: expect.stringMatching(/^ya29\./),
          expires_in: 3599,
          token_type: 'Bearer',
        });
        // For the emulator's account, checkable by whoever holds its key (the local Admin API).
        expect(
          emulator.key.accessTokens.verify(body.access_token, Math.floor(Date.now() / 1000)),
        ).toBe(emulator.config.serviceAccount);
      }
    });

    it('answers 404 for an unknown service account, tokens included, and counts only what it mints', async () => {
      const before = { ...emulator.stats };
      for (const what of ['identity?audience=a', 'token']) {
        expect((await get(`${V1}/instance/service-accounts/someone@else.com/${what}`)).status).toBe(
          404,
        );
      }
      expect((await get(`${V1}/instance/service-accounts/default/token`)).status).toBe(200);
      expect(emulator.stats).toMatchObject({
        identityRequests: before.identityRequests,
        accessTokenRequests: before.accessTokenRequests + 1,
      });
    });

    it('takes the first of repeated query parameters', async () => {
      expect(decodeJwt(await identity('audience=first&audience=second')).aud).toBe('first');
    });

    it('answers alt=json on a directory with its entries, and /computeMetadata/ with its versions', async () => {
      const res = await get(`${V1}/project/?alt=json`);
      expect([res.headers.get('content-type'), await res.json()]).toEqual([
        'application/json',
        ['attributes/', 'numeric-project-id', 'project-id'],
      ]);
      for (const path of ['/computeMetadata', '/computeMetadata/'])
        expect(await (await get(path)).text()).toBe('v1/\n');
    });
  });

  describe('identity tokens', () => {
    it('answers 400 without an audience', async () => {
      for (const query of ['', 'audience=', 'format=full']) {
        const res = await get(`${V1}/instance/service-accounts/default/identity?${query}`);
        expect(res.status).toBe(400);
      }
    });

    it('answers 400 for an unknown format', async () => {
      expect(
        (await get(`${V1}/instance/service-accounts/default/identity?audience=a&format=tiny`))
          .status,
      ).toBe(400);
    });

    it('mints an RS256 token shaped like Google (standard format)', async () => {
      const token = await identity('audience=https%3A%2F%2Freceiving.example');
      expect(decodeProtectedHeader(token)).toEqual({
        alg: 'RS256',
        kid: emulator.key.kid,
        typ: 'JWT',
      });
      const claims = decodeJwt(token);
      expect(Object.keys(claims).sort()).toEqual([
        'aud',
        'azp',
        'email',
        'email_verified',
        'exp',
        'iat',
        'iss',
        'sub',
      ]);
      expect(claims).toMatchObject({
        aud: 'https://receiving.example',
        iss: 'https://accounts.google.com',
        email: '555000111222-compute@developer.gserviceaccount.com',
        email_verified: true,
        iat: clock,
        exp: clock + 3600,
      });
      expect(claims.sub).toMatch(/^1\d{20}$/);
      expect(claims.azp).toBe(claims.sub);
    });

    it('keeps the subject stable across tokens and audiences', async () => {
      const a = decodeJwt(await identity('audience=a'));
      const b = decodeJwt(await identity('audience=b', emulator.config.serviceAccount));
      expect(a.sub).toBe(b.sub);
    });

    it('adds google.compute_engine claims with format=full, and license_id with licenses=TRUE', async () => {
      const full = decodeJwt(await identity('audience=a&format=full'));
      expect(full.google).toEqual({
        compute_engine: {
          instance_creation_timestamp: expect.any(Number),
          instance_id: expect.stringMatching(/^\d+$/),
          instance_name: 'local-instance',
          project_id: 'my-project',
          project_number: 555000111222,
          zone: 'us-central1-1',
        },
      });
      const licensed = decodeJwt(await identity('audience=a&format=full&licenses=TRUE'));
      expect((licensed.google as { compute_engine: object }).compute_engine).toHaveProperty(
        'license_id',
        [],
      );
      const standard = decodeJwt(await identity('audience=a&format=standard&licenses=FALSE'));
      expect(standard.google).toBeUndefined();
    });

    it('reads an unencoded audience the way the real server does (the query ends at &)', async () => {
      const claims = decodeJwt(await identity('format=full&audience=https://x.example/p?a=1&b=2'));
      expect(claims.aud).toBe('https://x.example/p?a=1');
    });

    it('counts the identity tokens it mints', async () => {
      const before = emulator.stats.identityRequests;
      await identity('audience=a');
      await identity('audience=b');
      expect(emulator.stats.identityRequests).toBe(before + 2);
      const stats = await (await get('/emulator/stats')).json();
      expect(stats).toMatchObject({ identityRequests: before + 2 });
    });
  });

  describe('published keys', () => {
    it('publishes a JWKS like https://www.googleapis.com/oauth2/v3/certs', async () => {
      const res = await get('/oauth2/v3/certs', {});
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        keys: [
          {
            kty: 'RSA',
            alg: 'RS256',
            use: 'sig',
            kid: emulator.key.kid,
            n: expect.any(String),
            e: 'AQAB',
          },
        ],
      });
    });

    it('publishes X.509 certificates like https://www.googleapis.com/oauth2/v1/certs: one per kid, self-signed, for the JWKS key', async () => {
      const certs = (await (await get('/oauth2/v1/certs', {})).json()) as Record<string, string>;
      const jwks = (await (await get('/oauth2/v3/certs', {})).json()) as {
        keys: { kid: string }[];
      };
      expect(Object.keys(certs)).toEqual(jwks.keys.map((k) => k.kid));
      const pem = certs[emulator.key.kid]!;
      expect(pem).toMatch(
        /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+\n-----END CERTIFICATE-----\n$/,
      );
      const certificate = new X509Certificate(pem);
      const jwk = createPublicKey({ key: jwks.keys[0]!, format: 'jwk' });
      expect(certificate.publicKey.equals(jwk)).toBe(true);
      expect(certificate.verify(jwk)).toBe(true);
      expect(certificate.subject).toBe('CN=metadata-emulator.local');
      expect(certificate.subject).toBe(certificate.issuer);
      // Verifiers cache the keys as Cache-Control says (Java refetches with 5 minutes or less left).
      expect((await get('/oauth2/v1/certs', {})).headers.get('cache-control')).toBe(
        'public, max-age=300',
      );
      expect((await get('/oauth2/v3/certs', {})).headers.get('cache-control')).toBe(
        'public, max-age=300',
      );
      expect(certificate.ca).toBe(false);
      const now = Date.now();
      expect(Date.parse(certificate.validFrom)).toBeLessThanOrEqual(now);
      expect(Date.parse(certificate.validTo)).toBeGreaterThan(now + 300 * 24 * 3600_000);
      // Its key verifies the emulator's tokens.
      const [header, payload, signature] = (await identity('audience=a')).split('.');
      const ok = createVerify('RSA-SHA256')
        .update(`${header}.${payload}`)
        .verify(certificate.publicKey, Buffer.from(signature!, 'base64url'));
      expect(ok).toBe(true);
    });
  });
});
