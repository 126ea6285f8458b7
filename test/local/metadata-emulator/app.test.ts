import { createPublicKey, createVerify } from 'node:crypto';
import http from 'node:http';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { isMetadataHost } from '../../../local/metadata-emulator/app.js';
import { startEmulator, nowS, type RunningEmulator } from '../../helpers/servers.js';

const V1 = '/computeMetadata/v1';
const FLAVOR = { 'Metadata-Flavor': 'Google' };

describe('metadata emulator', () => {
  let emulator: RunningEmulator;
  let clock: number;
  beforeAll(async () => {
    clock = nowS();
    emulator = await startEmulator({ PROJECT_ID: 'my-project', PROJECT_NUMBER: '555000111222' }, { now: () => clock });
  });
  afterAll(() => emulator.close());

  const get = (path: string, headers: Record<string, string> = FLAVOR) => fetch(`${emulator.url}${path}`, { headers });
  const identity = async (query: string, account = 'default') => {
    const res = await get(`${V1}/instance/service-accounts/${account}/identity?${query}`);
    expect(res.status).toBe(200);
    return res.text();
  };

  describe('header rules of the real server', () => {
    it('refuses requests without Metadata-Flavor: Google with 403', async () => {
      const variants: Record<string, string>[] = [{}, { 'Metadata-Flavor': 'google' }, { 'Metadata-Flavor': 'Microsoft' }];
      for (const headers of variants) {
        const res = await get(`${V1}/project/project-id`, headers);
        expect(res.status).toBe(403);
        expect(res.headers.get('metadata-flavor')).toBe('Google');
        expect(res.headers.get('content-type')).toMatch(/^text\/html/);
        expect(await res.text()).toContain('Metadata-Flavor');
      }
    });

    /** fetch() cannot set Host; a DNS-rebinding page's request arrives with its own name there. */
    const getWithHost = (path: string, host: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.get(`${emulator.url}${path}`, { headers: { ...FLAVOR, Host: host } }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject);
      });

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
      const res = await getWithHost(`${V1}/instance/service-accounts/default/identity?audience=a`, host);
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
      const res = await getWithHost(`${V1}/instance/service-accounts/default/identity?audience=a`, host);
      expect(res.status).toBe(200);
    });

    it.each([undefined, '', '127.0.0.1.evil.example', '127.0.0.256', 'metadata.google.internal.evil', '[::ffff:10.0.0.1]'])(
      'does not take %p for the metadata server',
      (host) => {
        expect(isMetadataHost(host)).toBe(false);
      },
    );

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
      }
      expect((await get(`${V1}/nothing/here`)).status).toBe(404);
    });
  });

  describe('metadata values', () => {
    it.each([
      ['/project/project-id', 'my-project'],
      ['/project/numeric-project-id', '555000111222'],
      ['/instance/service-accounts/default/email', '555000111222-compute@developer.gserviceaccount.com'],
      ['/instance/zone', 'projects/555000111222/zones/us-central1-1'],
      ['/instance/region', 'projects/555000111222/regions/us-central1'],
      ['/universe/universe-domain', 'googleapis.com'],
    ])('answers %s as text', async (path, value) => {
      const res = await get(`${V1}${path}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^application\/text/);
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
        expect(text.split('\n')).toEqual(expect.arrayContaining(['service-accounts/', 'zone', 'id']));
      }
    });

    it('lists service accounts by alias and by email, as gcloud expects', async () => {
      const text = await (await get(`${V1}/instance/service-accounts/`)).text();
      expect(text).toBe('default/\n555000111222-compute@developer.gserviceaccount.com/\n');
    });

    it('answers recursive=true with JSON in the real server camelCase', async () => {
      const account = await (await get(`${V1}/instance/service-accounts/default/?recursive=true`)).json();
      expect(account).toEqual({
        aliases: ['default'],
        email: '555000111222-compute@developer.gserviceaccount.com',
        scopes: ['https://www.googleapis.com/auth/cloud-platform'],
      });
      const project = await (await get(`${V1}/project/?recursive=true`)).json();
      expect(project).toEqual({ attributes: {}, numericProjectId: 555000111222, projectId: 'my-project' });
      const instance = (await (await get(`${V1}/instance/?recursive=true`)).json()) as Record<string, unknown>;
      expect(Object.keys(instance.serviceAccounts as object)).toEqual(['default', '555000111222-compute@developer.gserviceaccount.com']);
    });

    it('answers an access token for gcloud, by alias or email', async () => {
      for (const account of ['default', emulator.config.serviceAccount]) {
        const res = await get(`${V1}/instance/service-accounts/${account}/token`);
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        const body = (await res.json()) as { access_token: string };
        expect(body).toEqual({ access_token: expect.stringMatching(/^ya29\./), expires_in: 3599, token_type: 'Bearer' });
        // For the emulator's account, checkable by whoever holds its key (the local Admin API).
        expect(emulator.key.accessTokens.verify(body.access_token, Math.floor(Date.now() / 1000))).toBe(emulator.config.serviceAccount);
      }
    });

    it('answers 404 for an unknown service account', async () => {
      const res = await get(`${V1}/instance/service-accounts/someone@else.com/identity?audience=a`);
      expect(res.status).toBe(404);
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
      expect((await get(`${V1}/instance/service-accounts/default/identity?audience=a&format=tiny`)).status).toBe(400);
    });

    it('mints an RS256 token shaped like Google (standard format)', async () => {
      const token = await identity('audience=https%3A%2F%2Freceiving.example');
      expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', kid: emulator.key.kid, typ: 'JWT' });
      const claims = decodeJwt(token);
      expect(Object.keys(claims).sort()).toEqual(['aud', 'azp', 'email', 'email_verified', 'exp', 'iat', 'iss', 'sub']);
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
      expect((licensed.google as { compute_engine: object }).compute_engine).toHaveProperty('license_id', []);
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
        keys: [{ kty: 'RSA', alg: 'RS256', use: 'sig', kid: emulator.key.kid, n: expect.any(String), e: 'AQAB' }],
      });
    });

    it('publishes a PEM map like https://www.googleapis.com/oauth2/v1/certs that verifies its tokens', async () => {
      const pems = (await (await get('/oauth2/v1/certs', {})).json()) as Record<string, string>;
      const token = await identity('audience=a');
      const [header, payload, signature] = token.split('.');
      const ok = createVerify('RSA-SHA256')
        .update(`${header}.${payload}`)
        .verify(createPublicKey(pems[emulator.key.kid]!), Buffer.from(signature!, 'base64url'));
      expect(ok).toBe(true);
    });
  });
});
