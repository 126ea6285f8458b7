import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type Server,
} from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, generateKeyPair, type JWTPayload } from 'jose';
import { freePort } from '../../../scripts/lib/processes.js';
import { connect, createServer as createNetServer } from 'node:net';
import {
  GCLOUD_CLIENT_ID,
  HEADERS_TIMEOUT_MS,
  createCloudRunFront,
  shown,
} from '../../../local/cloud-run-front/front.js';
import {
  PolicyStore,
  addBinding,
  removeBinding,
  type Policy,
} from '../../../local/cloud-run-front/policy.js';
import type { ServiceManifest } from '../../../local/cloud-run-front/service.js';
import { capturingLogger } from '../../helpers/logs.js';
import { nowS, startEmulator, type RunningEmulator } from '../../helpers/servers.js';
import { b64url, claimsFor } from '../../helpers/tokens.js';

const CALLER = 'cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com';
const OTHER = 'someone-else@local-project.iam.gserviceaccount.com';
const invokers = (...members: string[]): Policy => ({
  bindings: [{ role: 'roles/run.invoker', members }],
});

/** A stand-in container: answers 200 with what it saw; /slow answers after 3 s. */
async function container(): Promise<{
  url: string;
  seen: IncomingHttpHeaders[];
  closedEarly: string[];
  close(): Promise<void>;
  server: Server;
}> {
  const seen: IncomingHttpHeaders[] = [];
  const closedEarly: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    req.once('close', () => {
      if (!res.writableEnded) closedEarly.push(req.url!);
    });
    const answer = () =>
      res
        .writeHead(200, { 'content-type': 'text/plain', 'x-from': 'container' })
        .end(`Hello from ${req.method} ${req.url}`);
    if (req.url === '/slow') setTimeout(answer, 3000).unref();
    else if (req.url === '/stall')
      res.writeHead(200, { 'content-type': 'text/plain' }).write('part of an answer');
    else if (req.url === '/reset') {
      res.writeHead(200, { 'content-type': 'text/plain' }).write('part of an answer');
      setTimeout(() => req.socket.destroy(), 50).unref();
    } else if (req.url === '/hop') {
      res
        .writeHead(200, {
          'keep-alive': 'timeout=99',
          'proxy-connection': 'keep-alive',
          'x-kept': 'yes',
        })
        .end('hop');
    } else if (req.url === '/named-hop') {
      res
        .writeHead(200, {
          connection: 'keep-alive, X-Internal',
          'x-internal': 'secret',
          'x-kept': 'yes',
          upgrade: 'h2c',
          trailer: 'x-sum',
        })
        .end('hop');
    } else if (req.method === 'POST') {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`Got ${body}`));
    } else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    closedEarly,
    server,
    close: () =>
      new Promise((resolve) => server.closeAllConnections() ?? server.close(() => resolve())),
  };
}

/**
 * A request written byte for byte (what fetch would not send: odd targets, repeated headers), on a
 * connection of its own that the front is asked to close after answering. Resolves with what came
 * back, or with status 0 if the connection closed with nothing.
 */
function raw(url: string, request: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    let text = '';
    socket.on('data', (chunk) => (text += chunk));
    socket.once('error', reject);
    socket.once('close', () =>
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }),
    );
    socket.write(request.replace(/\r\n\r\n$/, '\r\nConnection: close\r\n\r\n'));
  });
}

const manifest = (overrides: Partial<ServiceManifest> = {}): ServiceManifest => ({
  name: 'receiving',
  region: 'us-central1',
  document: {},
  invokerIamDisabled: false,
  customAudiences: [],
  timeoutSeconds: 30,
  serviceAccount: 'cloudrun-receiving-sa@local-project.iam.gserviceaccount.com',
  env: {},
  ...overrides,
});

describe('the local Cloud Run front door, over real HTTP: client, front, stand-in container', () => {
  let emulator: RunningEmulator;
  let backend: Awaited<ReturnType<typeof container>>;
  const fronts: Server[] = [];
  beforeAll(async () => {
    emulator = await startEmulator({ SERVICE_ACCOUNT: CALLER });
    backend = await container();
  });
  afterAll(async () => {
    for (const f of fronts) {
      f.closeAllConnections();
      f.close();
    }
    await backend.close();
    await emulator.close();
  });
  beforeEach(() => {
    backend.seen.length = 0;
    backend.closedEarly.length = 0;
  });

  /** A front on an ephemeral port; its URL is its audience. */
  async function front(
    service: Partial<ServiceManifest> | (() => ServiceManifest) = {},
    policies: () => Policy[] = () => [invokers(`serviceAccount:${CALLER}`)],
  ) {
    const { logger, lines } = capturingLogger();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const fixed = typeof service === 'function' ? undefined : manifest(service);
    const server = createCloudRunFront({
      service: typeof service === 'function' ? service : () => fixed!,
      url,
      target: backend.url,
      jwksUrl: emulator.jwksUrl,
      policies,
      logger,
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    fronts.push(server);
    return { url, lines, server };
  }

  /** An ID token from the emulator itself, as calling gets one. */
  const idToken = async (audience: string) => {
    const res = await fetch(
      `${emulator.url}/computeMetadata/v1/instance/service-accounts/default/identity?audience=${encodeURIComponent(audience)}`,
      {
        headers: { 'Metadata-Flavor': 'Google' },
      },
    );
    return res.text();
  };
  const signed = (claims: JWTPayload) => emulator.key.sign(claims);
  const get = (url: string, headers: Record<string, string> = {}) => fetch(url, { headers });

  it('refuses a request without a token with 403 and Cloud Run’s page; the container never sees it; the log says why', async () => {
    const { url, lines } = await front();
    const res = await get(`${url}/`);
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toBe('text/html; charset=UTF-8');
    const body = await res.text();
    expect(body).toContain('<title>403 Forbidden</title>');
    expect(body).toContain('<h1>Error: Forbidden</h1>');
    expect(body).toContain(
      'Your client does not have permission to get URL <code>/</code> from this server.',
    );
    expect(backend.seen).toEqual([]);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      severity: 'WARNING',
      rule: 'token-missing',
      status: 403,
    });
    expect(lines[0]).toContain(
      'receiving front refused GET / with 403: the request has no token: receiving is private',
    );
  });

  it('admits an invoker’s ID token and hands the container the token without its signature', async () => {
    const { url } = await front();
    const token = await idToken(url);
    const res = await get(`${url}/hello?x=1`, { Authorization: `Bearer ${token}` });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('Hello from GET /hello?x=1');
    expect(res.headers.get('x-from')).toBe('container');
    const [seen] = backend.seen;
    const [header, payload] = token.split('.');
    expect(seen!.authorization).toBe(`Bearer ${header}.${payload}.SIGNATURE_REMOVED_BY_GOOGLE`);
    expect(seen!['x-serverless-authorization']).toBeUndefined();
    expect(seen!['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen!['x-forwarded-proto']).toBe('http');
    // A trace is started for a request that has none, in both of Cloud Run's formats.
    const traceparent = /^00-([\da-f]{32})-([\da-f]{16})-00$/.exec(String(seen!.traceparent));
    expect(traceparent).not.toBeNull();
    expect(seen!['x-cloud-trace-context']).toBe(
      `${traceparent![1]}/${BigInt(`0x${traceparent![2]}`)};o=0`,
    );
  });

  it('keeps a trace the request brings, and adds to X-Forwarded-For', async () => {
    const { url } = await front();
    const traceparent = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
    await get(`${url}/`, {
      Authorization: `Bearer ${await idToken(url)}`,
      traceparent,
      'X-Forwarded-For': '203.0.113.7',
    });
    expect(backend.seen[0]!.traceparent).toBe(traceparent);
    expect(backend.seen[0]!['x-cloud-trace-context']).toBeUndefined();
    expect(backend.seen[0]!['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
  });

  it('checks X-Serverless-Authorization when present and leaves Authorization untouched', async () => {
    const { url } = await front();
    const token = await idToken(url);
    const res = await get(`${url}/`, {
      'X-Serverless-Authorization': `Bearer ${token}`,
      Authorization: 'Bearer app-level-token',
    });
    expect(res.status).toBe(200);
    expect(backend.seen[0]!['x-serverless-authorization']).toBe(
      `Bearer ${token.split('.').slice(0, 2).join('.')}.SIGNATURE_REMOVED_BY_GOOGLE`,
    );
    expect(backend.seen[0]!.authorization).toBe('Bearer app-level-token');
  });

  it('answers 401 to a header that is there but not "Bearer <token>", saying so', async () => {
    const { url, lines } = await front();
    for (const value of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer a b']) {
      expect({ value, status: (await get(`${url}/`, { Authorization: value })).status }).toEqual({
        value,
        status: 401,
      });
    }
    expect(
      (
        await get(`${url}/`, {
          'X-Serverless-Authorization': 'Token x',
          Authorization: `Bearer ${await idToken(url)}`,
        })
      ).status,
    ).toBe(401);
    expect(lines[0]).toContain('the Authorization header is not \\"Bearer <ID token>\\"');
    expect(lines[3]).toContain(
      'the X-Serverless-Authorization header is not \\"Bearer <ID token>\\"',
    );
    expect(JSON.parse(lines[0]!)).toMatchObject({ rule: 'token-invalid', status: 401 });
    expect(backend.seen).toEqual([]);
  });

  it('takes an empty token header for no token (403), an empty X-Serverless-Authorization too', async () => {
    const { url, lines } = await front();
    for (const value of ['', '  ']) {
      expect(
        (await raw(url, `GET / HTTP/1.1\r\nHost: x\r\nAuthorization:${value}\r\n\r\n`)).status,
      ).toBe(403);
    }
    expect(JSON.parse(lines[0]!)).toMatchObject({ rule: 'token-missing', status: 403 });
    // X-Serverless-Authorization is there, so it alone is checked, and it holds nothing.
    const token = await idToken(url);
    const res = await raw(
      url,
      `GET / HTTP/1.1\r\nHost: x\r\nX-Serverless-Authorization: \r\nAuthorization: Bearer ${token}\r\n\r\n`,
    );
    expect(res.status).toBe(403);
    // A no-break space is no HTTP blank: a header holding one is there, and is no Bearer token.
    const nbsp = await raw(
      url,
      `GET / HTTP/1.1\r\nHost: x\r\nX-Serverless-Authorization: \xa0\r\nAuthorization: Bearer ${token}\r\n\r\n`,
    );
    expect(nbsp.status).toBe(401);
    expect(backend.seen).toEqual([]);
  });

  it('answers 401 to several tokens: a header sent twice, or two JWTs in one', async () => {
    const { url, lines } = await front();
    const token = await idToken(url);
    for (const header of ['Authorization', 'X-Serverless-Authorization']) {
      const res = await raw(
        url,
        `GET / HTTP/1.1\r\nHost: x\r\n${header}: Bearer ${token}\r\n${header.toLowerCase()}: Bearer ${token}\r\n\r\n`,
      );
      expect({ header, status: res.status }).toEqual({ header, status: 401 });
    }
    // Node keeps only the first Authorization: an empty one first must not hide the second.
    expect(
      (
        await raw(
          url,
          `GET / HTTP/1.1\r\nHost: x\r\nAuthorization:\r\nAuthorization: Bearer ${token}\r\n\r\n`,
        )
      ).status,
    ).toBe(401);
    expect(lines[0]).toContain('the request has 2 Authorization headers: send one');
    expect(lines[1]).toContain('the request has 2 X-Serverless-Authorization headers: send one');
    expect(lines[2]).toContain('the request has 2 Authorization headers: send one');
    lines.splice(2, 1);
    for (const value of [
      `Bearer ${token} ${token}`,
      `Bearer ${token},${token}`,
      `Bearer ${token}, Bearer ${token}`,
    ]) {
      expect((await get(`${url}/`, { Authorization: value })).status).toBe(401);
    }
    expect(
      lines
        .slice(2)
        .every((line) =>
          line.includes('the Authorization header holds several JWTs: send one ID token'),
        ),
    ).toBe(true);
    expect(lines).toHaveLength(5);
    expect(backend.seen).toEqual([]);
  });

  it('does not fall back to Authorization when X-Serverless-Authorization is present but bad', async () => {
    const { url, lines } = await front();
    const res = await get(`${url}/`, {
      'X-Serverless-Authorization': 'Bearer not-a-jwt',
      Authorization: `Bearer ${await idToken(url)}`,
    });
    expect(res.status).toBe(401);
    expect(lines[0]).toContain('the X-Serverless-Authorization token is not a JWT');
    expect(backend.seen).toEqual([]);
  });

  it('refuses a token for another audience with 401, naming both audiences but never the token', async () => {
    const { url, lines } = await front();
    const token = await idToken('https://a.example');
    const res = await get(`${url}/`, { Authorization: `Bearer ${token}` });
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toBe('text/html; charset=UTF-8');
    expect(res.headers.get('www-authenticate')).toBe(
      'Bearer error="invalid_token" error_description="The access token could not be verified"',
    );
    const body = await res.text();
    expect(body).toContain('<title>401 Unauthorized</title>');
    expect(body).toContain(
      'Your client does not have permission to the requested URL <code>/</code>.',
    );
    expect(lines[0]).toContain(
      `aud is \\"https://a.example\\" but this service accepts ${url} (its URL, with or without a trailing /), ` +
        `${GCLOUD_CLIENT_ID} (the gcloud CLI's tokens) and no custom audience`,
    );
    for (const part of token.split('.')) expect(lines.join('\n')).not.toContain(part);
  });

  it.each([
    ['expired', { exp: nowS() - 10, iat: nowS() - 3610 }, 'token expired at'],
    [
      'from another issuer',
      { iss: 'https://evil.example' },
      'iss is \\"https://evil.example\\", not Google\'s',
    ],
    ['without an email', { email: undefined }, 'has no email claim'],
  ])('refuses a token %s with 401 and says so', async (_what, overrides, reason) => {
    const { url, lines } = await front();
    const res = await get(`${url}/`, {
      Authorization: `Bearer ${await signed(claimsFor(emulator, url, overrides))}`,
    });
    expect(res.status).toBe(401);
    expect(lines[0]).toContain(reason);
    expect(backend.seen).toEqual([]);
  });

  it('refuses tokens Google did not sign: another key, a forged alg, an access token', async () => {
    const { url, lines } = await front();
    const { privateKey } = await generateKeyPair('RS256');
    const foreign = await new SignJWT(claimsFor(emulator, url))
      .setProtectedHeader({ alg: 'RS256', kid: emulator.key.kid })
      .sign(privateKey);
    const [h, p] = (await idToken(url)).split('.');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${p}.`;
    const stripped = `${h}.${p}.SIGNATURE_REMOVED_BY_GOOGLE`;
    for (const token of [foreign, none, stripped, 'ya29.a0AfH6SMBx-access-token']) {
      const res = await get(`${url}/`, { Authorization: `Bearer ${token}` });
      expect({ token, status: res.status }).toEqual({ token, status: 401 });
    }
    expect(lines[0]).toContain("signature does not verify with Google's keys");
    expect(lines[1]).toContain('is not RS256');
    expect(lines[3]).toContain(
      'the Authorization token is not a JWT (an ID token is three base64url parts): perhaps an OAuth access token, ' +
        'which Cloud Run does not take; send an ID token (gcloud auth print-identity-token)',
    );
    expect(backend.seen).toEqual([]);
  });

  it('refuses a valid token whose identity holds no invoker role with 403, naming it and the command that fixes it', async () => {
    const { url, lines } = await front({}, () => [invokers(`serviceAccount:${OTHER}`)]);
    const res = await get(`${url}/`, { Authorization: `Bearer ${await idToken(url)}` });
    expect(res.status).toBe(403);
    expect((JSON.parse(lines[0]!) as { reason: string }).reason).toBe(
      `${CALLER} holds no roles/run.invoker on receiving; grant it with: gcloud run services add-iam-policy-binding receiving ` +
        `--member=serviceAccount:${CALLER} --role=roles/run.invoker (in a shell set up by eval "$(npm run -s local-env)"; ` +
        'or npm run local -- run services add-iam-policy-binding ...)',
    );
    expect(JSON.parse(lines[0]!)).toMatchObject({ rule: 'not-invoker' });
  });

  it('accepts a custom audience from the manifest', async () => {
    const { url } = await front({ customAudiences: ['https://receiving.example.com'] });
    expect(
      (
        await get(`${url}/`, {
          Authorization: `Bearer ${await idToken('https://receiving.example.com')}`,
        })
      ).status,
    ).toBe(200);
    // The URL itself, or with a trailing slash; with any other path it is another audience.
    expect(
      (await get(`${url}/`, { Authorization: `Bearer ${await idToken(`${url}/`)}` })).status,
    ).toBe(200);
    expect(
      (await get(`${url}/`, { Authorization: `Bearer ${await idToken(`${url}/x`)}` })).status,
    ).toBe(401);
    expect(
      (await get(`${url}/`, { Authorization: `Bearer ${await idToken(`${url}//`)}` })).status,
    ).toBe(401);
    const { url: plain, lines } = await front();
    expect(
      (
        await get(`${plain}/`, {
          Authorization: `Bearer ${await idToken('https://receiving.example.com')}`,
        })
      ).status,
    ).toBe(401);
    expect(lines[0]).toContain('and no custom audience');
    const { url: other, lines: otherLines } = await front({
      customAudiences: ['https://x.example', 'https://y.example'],
    });
    await get(`${other}/`, { Authorization: `Bearer ${await idToken('https://a.example')}` });
    expect(otherLines[0]).toContain(
      `(the gcloud CLI's tokens) and its custom audiences https://x.example, https://y.example`,
    );
    expect(
      (await get(`${other}/`, { Authorization: `Bearer ${await idToken('https://y.example')}` }))
        .status,
    ).toBe(200);
    // However many custom audiences a replace sets, a refusal's line shows 200 characters of them.
    const many = Array.from({ length: 500 }, (_, i) => `https://audience-${i}.example`);
    const { url: crowded, lines: crowdedLines } = await front({ customAudiences: many });
    await get(`${crowded}/`, { Authorization: `Bearer ${await idToken('https://a.example')}` });
    const reason = (JSON.parse(crowdedLines[0]!) as { reason: string }).reason;
    expect(reason).toContain(`and its custom audiences ${many.join(', ').slice(0, 200)}…`);
    expect(reason.length).toBeLessThan(600);
  });

  it('admits a project Editor (the tutorial’s default compute identity) through the project policy', async () => {
    const editor = { bindings: [{ role: 'roles/editor', members: [`serviceAccount:${CALLER}`] }] };
    const { url } = await front({}, () => [{ bindings: [] }, editor]);
    expect((await get(`${url}/`, { Authorization: `Bearer ${await idToken(url)}` })).status).toBe(
      200,
    );
    const viewer = { bindings: [{ role: 'roles/viewer', members: [`serviceAccount:${CALLER}`] }] };
    const { url: url2 } = await front({}, () => [{ bindings: [] }, viewer]);
    expect((await get(`${url2}/`, { Authorization: `Bearer ${await idToken(url2)}` })).status).toBe(
      403,
    );
  });

  it('allUsers admits anyone, token or not; allAuthenticatedUsers admits any valid Google token only', async () => {
    const { url } = await front({}, () => [invokers('allUsers')]);
    expect((await get(`${url}/`)).status).toBe(200);
    expect((await get(`${url}/`, { Authorization: 'Bearer whatever' })).status).toBe(200);
    const { url: authed } = await front({}, () => [invokers('allAuthenticatedUsers')]);
    expect((await get(`${authed}/`)).status).toBe(403);
    const anyone = await signed(claimsFor(emulator, authed, { email: OTHER }));
    expect((await get(`${authed}/`, { Authorization: `Bearer ${anyone}` })).status).toBe(200);
  });

  it('checks nothing when the invoker IAM check is disabled, and passes headers on untouched', async () => {
    const { url } = await front({ name: 'calling', invokerIamDisabled: true }, () => {
      throw new Error('a public service has no policy to read');
    });
    const res = await get(`${url}/`, { Authorization: 'Bearer not-a-google-token' });
    expect(res.status).toBe(200);
    expect(backend.seen[0]!.authorization).toBe('Bearer not-a-google-token');
  });

  it('enforces the policy store as it changes, from the next request, without a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-'));
    try {
      const store = new PolicyStore(dir);
      store.reset('receiving', invokers(`serviceAccount:${OTHER}`));
      const { url } = await front({}, () => [store.current('receiving')]);
      const token = await idToken(url);
      const status = async () =>
        (await get(`${url}/`, { Authorization: `Bearer ${token}` })).status;
      expect(await status()).toBe(403);

      store.set(
        'receiving',
        addBinding(store.current('receiving'), 'roles/run.invoker', `serviceAccount:${CALLER}`),
      );
      expect(await status()).toBe(200);
      store.set(
        'receiving',
        removeBinding(store.current('receiving'), 'roles/run.invoker', `serviceAccount:${CALLER}`)!,
      );
      expect(await status()).toBe(403);

      // A policy that cannot be read makes the front answer 500 and say why, not admit.
      store.set('receiving', invokers(`serviceAccount:${CALLER}`));
      expect(await status()).toBe(200);
      rmSync(store.file('receiving'));
      expect(await status()).toBe(500);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes a change of its manifest (a replace through the Admin API) from the next request', async () => {
    let current = manifest();
    const { url } = await front(() => current);
    const token = await idToken(url);
    expect((await get(`${url}/`)).status).toBe(403);
    current = manifest({ invokerIamDisabled: true });
    expect((await get(`${url}/`)).status).toBe(200);
    current = manifest({ customAudiences: ['https://receiving.example.com'] });
    expect((await get(`${url}/`)).status).toBe(403);
    const custom = await idToken('https://receiving.example.com');
    expect((await get(`${url}/`, { Authorization: `Bearer ${custom}` })).status).toBe(200);
    current = manifest();
    expect((await get(`${url}/`, { Authorization: `Bearer ${custom}` })).status).toBe(401);
    expect((await get(`${url}/`, { Authorization: `Bearer ${token}` })).status).toBe(200);
  });

  it('ends a request that outlasts timeoutSeconds with 504 and keeps serving', async () => {
    const { url, lines } = await front({ timeoutSeconds: 1 });
    const auth = { Authorization: `Bearer ${await idToken(url)}` };
    const res = await get(`${url}/slow`, auth);
    expect(res.status).toBe(504);
    expect(res.headers.get('content-type')).toBe('text/plain');
    expect(await res.text()).toBe('upstream request timeout');
    expect(lines.at(-1)).toContain('no full answer within timeoutSeconds 1');
    expect((await get(`${url}/`, auth)).status).toBe(200);
  });

  it('answers 503 when the container is not there', async () => {
    const { logger, lines } = capturingLogger();
    const server = createCloudRunFront({
      service: () => manifest({ invokerIamDisabled: true }),
      url: 'http://127.0.0.1:1',
      target: 'http://127.0.0.1:1',
      jwksUrl: emulator.jwksUrl,
      policies: () => [],
      logger,
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    fronts.push(server);
    const res = await get(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('text/html; charset=UTF-8');
    const page = await res.text();
    expect(page).toContain('<title>503 Service Unavailable</title>');
    expect(page).toContain(
      'The service you requested is not available yet. Please try again in 30 seconds.',
    );
    expect(lines[0]).toContain(
      'could not reach its container at http://127.0.0.1:1 (ECONNREFUSED)',
    );
    expect(JSON.parse(lines[0]!)).toMatchObject({
      rule: 'container-unreachable',
      status: 503,
      code: 'ECONNREFUSED',
    });
  });

  it('keeps a token pasted into the path out of its log', async () => {
    const { url, lines } = await front();
    const token = await idToken('https://a.example');
    const res = await get(`${url}/${token}`);
    expect(res.status).toBe(403);
    expect(await res.text()).not.toContain(token.split('.')[1]!);
    expect(lines.join('\n')).not.toContain(token.split('.')[1]!);
  });
  it('accepts Google’s other issuer spelling, accounts.google.com', async () => {
    const { url } = await front();
    const token = await signed(
      claimsFor(emulator, url, { iss: 'accounts.google.com', email: CALLER }),
    );
    expect((await get(`${url}/`, { Authorization: `Bearer ${token}` })).status).toBe(200);
  });

  it('reads the scheme in any case with blanks around, and nothing else as a bearer token', async () => {
    const { url } = await front();
    const token = await idToken(url);
    for (const value of [`bearer ${token}`, `BEARER  ${token}`, `Bearer\t${token} `]) {
      expect({
        value: value.slice(0, 8),
        status: (await get(`${url}/`, { Authorization: value })).status,
      }).toEqual({
        value: value.slice(0, 8),
        status: 200,
      });
    }
    for (const value of [`xBearer ${token}`, `Bearer ${token} x`, `Bearer${token}`]) {
      expect({
        value: value.slice(0, 8),
        status: (await get(`${url}/`, { Authorization: value })).status,
      }).toEqual({
        value: value.slice(0, 8),
        status: 401,
      });
    }
  });

  it('does not forward hop-by-hop headers either way', async () => {
    const { url } = await front({ invokerIamDisabled: true });
    const answer = await new Promise<{ headers: IncomingHttpHeaders; body: string }>(
      (resolve, reject) => {
        const req = httpRequest(
          `${url}/hop`,
          {
            headers: {
              'keep-alive': 'timeout=1',
              'proxy-connection': 'close',
              te: 'trailers',
              'x-mine': 'kept',
            },
          },
          (res) => {
            let body = '';
            res.on('data', (c) => (body += c));
            res.on('end', () => resolve({ headers: res.headers, body }));
          },
        );
        req.once('error', reject);
        req.end();
      },
    );
    expect(answer.body).toBe('hop');
    expect(answer.headers['x-kept']).toBe('yes');
    expect(answer.headers['proxy-connection']).toBeUndefined();
    expect(answer.headers['keep-alive']).not.toBe('timeout=99');
    const [seen] = backend.seen;
    expect(seen!['x-mine']).toBe('kept');
    for (const name of ['keep-alive', 'proxy-connection', 'te'])
      expect({ name, value: seen![name] }).toEqual({ name, value: undefined });
  });

  it('starts no trace when the request brings X-Cloud-Trace-Context only', async () => {
    const { url } = await front({ invokerIamDisabled: true });
    await get(`${url}/`, { 'X-Cloud-Trace-Context': `${'c'.repeat(32)}/1;o=1` });
    expect(backend.seen[0]!.traceparent).toBeUndefined();
    expect(backend.seen[0]!['x-cloud-trace-context']).toBe(`${'c'.repeat(32)}/1;o=1`);
  });

  it('passes a public service’s token through untouched: allUsers, or the invoker check disabled', async () => {
    const { url } = await front({}, () => [invokers('allUsers')]);
    const token = await idToken(url);
    await get(`${url}/`, { Authorization: `Bearer ${token}` });
    const { url: open } = await front({ invokerIamDisabled: true });
    await get(`${open}/`, {
      Authorization: `Bearer ${token}`,
      'X-Serverless-Authorization': `Bearer ${token}`,
    });
    expect(backend.seen.map((h) => h.authorization)).toEqual([
      `Bearer ${token}`,
      `Bearer ${token}`,
    ]);
    expect(backend.seen[1]!['x-serverless-authorization']).toBe(`Bearer ${token}`);
    expect(
      backend.seen.flatMap((h) => Object.keys(h)).filter((name) => name === 'undefined'),
    ).toEqual([]);
  });

  it('refuses everyone when the service has no policy at all (only the project’s)', async () => {
    const { url, lines } = await front({}, () => []);
    expect((await get(`${url}/`)).status).toBe(403);
    expect((await get(`${url}/`, { Authorization: `Bearer ${await idToken(url)}` })).status).toBe(
      403,
    );
    expect(lines[1]).toContain('holds no roles/run.invoker on receiving');
  });

  it('answers 500 and keeps serving when its policy cannot be read, or lies', async () => {
    const { url, lines } = await front({}, () => {
      throw new Error('policy store down');
    });
    const res = await get(`${url}/`);
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toBe('text/html; charset=UTF-8');
    const page = await res.text();
    expect(page).toContain('<title>500 Server Error</title>');
    expect(page).toContain('<h2>The server encountered an error.</h2>');
    expect(JSON.parse(lines[0]!)).toMatchObject({ rule: 'policy', status: 500 });
    expect(JSON.parse(lines[0]!)).toMatchObject({ reason: 'policy store down' });
    const { url: lying, lines: lyingLines } = await front({}, () => [null as unknown as Policy]);
    expect((await get(`${lying}/x`)).status).toBe(500);
    expect((await get(`${lying}/x`)).status).toBe(500);
    expect(lyingLines[0]).toContain('receiving front failed on GET /x');
    expect(JSON.parse(lyingLines[0]!)).toMatchObject({
      severity: 'ERROR',
      err: { type: 'TypeError' },
    });
    expect(backend.seen).toEqual([]);
  });

  it('says when a token is signed with a key Google does not have, and when Google’s keys cannot be had', async () => {
    const { url, lines } = await front();
    const { privateKey } = await generateKeyPair('RS256');
    const unknownKid = await new SignJWT(claimsFor(emulator, url))
      .setProtectedHeader({ alg: 'RS256', kid: 'f'.repeat(40) })
      .sign(privateKey);
    expect((await get(`${url}/`, { Authorization: `Bearer ${unknownKid}` })).status).toBe(401);
    expect(lines[0]).toContain(
      "the Authorization token is signed with a key that is not one of Google's (kid unknown)",
    );
    expect(JSON.parse(lines[0]!)).toMatchObject({ rule: 'token-invalid', status: 401 });

    const { logger, lines: deadLines } = capturingLogger();
    const port = await freePort();
    const server = createCloudRunFront({
      service: () => manifest(),
      url: `http://127.0.0.1:${port}`,
      target: backend.url,
      jwksUrl: new URL(`http://127.0.0.1:${await freePort()}/oauth2/v3/certs`),
      policies: () => [invokers(`serviceAccount:${CALLER}`)],
      logger,
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    fronts.push(server);
    expect(
      (
        await get(`http://127.0.0.1:${port}/`, {
          Authorization: `Bearer ${await idToken(`http://127.0.0.1:${port}`)}`,
        })
      ).status,
    ).toBe(401);
    expect(deadLines[0]).toContain(
      "Google's keys could not be fetched to check the Authorization token",
    );
  });

  it('names the time a token expired, and a token with an empty email', async () => {
    const { url, lines } = await front();
    const exp = nowS() - 100;
    await get(`${url}/`, {
      Authorization: `Bearer ${await signed(claimsFor(emulator, url, { exp, iat: exp - 3600 }))}`,
    });
    expect(lines[0]).toContain(
      `the Authorization token expired at ${new Date(exp * 1000).toISOString()}; fetch a new one`,
    );
    expect(
      (
        await get(`${url}/`, {
          Authorization: `Bearer ${await signed(claimsFor(emulator, url, { email: '' }))}`,
        })
      ).status,
    ).toBe(401);
    expect(lines[1]).toContain('the Authorization token has no email claim');
    expect(JSON.parse(lines[1]!)).toMatchObject({ rule: 'token-invalid', status: 401 });
  });

  it('escapes the path it shows in its pages', async () => {
    const { url } = await front();
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${url}/`, { path: `/<b>"&'` }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve(text));
      });
      req.once('error', reject);
      req.end();
    });
    expect(body).toContain('<code>/&#60;b&#62;&#34;&#38;&#39;</code>');
  });

  it('leaves no timeout behind an answer that came in time', async () => {
    const { url, lines } = await front({ timeoutSeconds: 1 });
    expect((await get(`${url}/`, { Authorization: `Bearer ${await idToken(url)}` })).status).toBe(
      200,
    );
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(lines).toEqual([]);
  });

  it('cuts an answer that stalls past timeoutSeconds once it has begun, and keeps serving', async () => {
    const { url, lines } = await front({ timeoutSeconds: 1, invokerIamDisabled: true });
    const res = await get(`${url}/stall`);
    expect(res.status).toBe(200);
    await expect(res.text()).rejects.toThrow();
    expect(JSON.parse(lines[0]!)).toMatchObject({ rule: 'timeout', status: 504 });
    expect((await get(`${url}/`)).status).toBe(200);
  });

  it('survives a container that resets mid-answer: the client sees the cut, the front keeps serving', async () => {
    const { url } = await front({ invokerIamDisabled: true });
    const res = await get(`${url}/reset`);
    await expect(res.text()).rejects.toThrow();
    expect((await get(`${url}/`)).status).toBe(200);
  });

  it('ends the container’s request when the client goes away', async () => {
    const { url, lines } = await front({ invokerIamDisabled: true });
    const aborted = new AbortController();
    const pending = fetch(`${url}/slow`, { signal: aborted.signal }).catch(() => 'aborted');
    await new Promise((resolve) => setTimeout(resolve, 200));
    aborted.abort();
    expect(await pending).toBe('aborted');
    for (let i = 0; i < 50 && backend.closedEarly.length === 0; i += 1)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(backend.closedEarly).toEqual(['/slow']);
    // The container did nothing wrong: no 503, no line blaming it.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(lines).toEqual([]);
  });
  it('names the claim a token fails, a header jose cannot read, and a header it does not support', async () => {
    const { url, lines } = await front();
    const payload = Buffer.from(JSON.stringify(claimsFor(emulator, url))).toString('base64url');
    const badHeader = `bm90LWpzb24.${payload}.c2ln`;
    const future = await signed(claimsFor(emulator, url, { nbf: nowS() + 3600 }));
    // An unknown critical header is refused before the signature is looked at: no real signature needed.
    const critHeader = Buffer.from(
      JSON.stringify({ alg: 'RS256', kid: emulator.key.kid, crit: ['x-ext'], 'x-ext': 1 }),
    ).toString('base64url');
    const crit = `${critHeader}.${payload}.c2ln`;
    for (const token of [badHeader, future, crit])
      expect((await get(`${url}/`, { Authorization: `Bearer ${token}` })).status).toBe(401);
    expect(lines[0]).toContain('the Authorization token is not a JWT');
    expect(lines[1]).toContain('the Authorization token fails its nbf claim: ');
    expect(lines[2]).toContain('the Authorization token does not verify: ');
    expect(lines[2]).not.toContain("Google's keys could not be fetched");
  });

  describe('as an attacker sees it', () => {
    /** A stand-in for any other host on this machine: it only counts who connects. */
    let other: { port: number; connections: number; close(): Promise<void> };
    beforeAll(async () => {
      const server = createNetServer((socket) => {
        other.connections += 1;
        socket.destroy();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      other = {
        port: (server.address() as { port: number }).port,
        connections: 0,
        close: () => new Promise((resolve) => server.close(() => resolve())),
      };
    });
    afterAll(() => other.close());

    it('sends every path, whatever it holds, to its own container and nowhere else', async () => {
      const { url } = await front({ invokerIamDisabled: true });
      const o = other.port;
      const targets = [
        `//127.0.0.1:${o}/x`,
        `///127.0.0.1:${o}/x`,
        `/\\127.0.0.1:${o}/x`,
        `//2130706433:${o}/x`,
        `//%31%32%37.0.0.1:${o}/x`,
        `//localhost:${o}`,
        `/%2F%2F127.0.0.1:${o}/`,
        `/..//127.0.0.1:${o}/`,
        '//',
        '///',
        '/?next=//127.0.0.1',
      ];
      for (const target of targets) {
        const res = await raw(
          url,
          `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: session=1\r\n\r\n`,
        );
        expect({ target, status: res.status }).toEqual({ target, status: 200 });
        expect(res.text).toContain(`\r\nHello from GET ${target}\r\n`);
      }
      expect(backend.seen).toHaveLength(targets.length);
      expect(other.connections).toBe(0);
    });

    it('answers 400 to a target naming another host, or none it can read, and opens no connection for it', async () => {
      const { url, lines } = await front();
      const token = await idToken(url);
      const o = other.port;
      const targets = [
        `http://127.0.0.1:${o}/x`,
        `http://2130706433:${o}/`,
        `http://127.1:${o}/`,
        `https://127.0.0.1:${o}/`,
        'http://[::1',
        'ftp://127.0.0.1/',
        '*',
      ];
      for (const target of targets) {
        // Both headers, as a caller with an app-level token sends them: neither may leave.
        const res = await raw(
          url,
          `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${new URL(url).port}\r\n` +
            `X-Serverless-Authorization: Bearer ${token}\r\nAuthorization: Bearer ${token}\r\n\r\n`,
        );
        expect({ target, status: res.status }).toEqual({ target, status: 400 });
        expect(res.text).toContain('<title>400 Bad Request</title>');
        expect(res.text).toContain('Your client has issued a malformed or illegal request.');
        expect(res.text.toLowerCase()).toContain('content-type: text/html; charset=utf-8');
        expect(res.text.toLowerCase()).toContain('connection: close');
      }
      expect(
        lines
          .map((line) => JSON.parse(line) as { rule: string })
          .every((l) => l.rule === 'bad-request'),
      ).toBe(true);
      expect(lines[0]).toContain(
        `names another host than this service (127.0.0.1:${new URL(url).port})`,
      );
      expect(lines[4]).toContain(
        'the request target http://[::1 is neither a path nor an absolute URL',
      );
      // Node's own parser refuses what is no request target at all, before the front sees it.
      expect((await raw(url, 'GET x HTTP/1.1\r\nHost: a\r\n\r\n')).status).toBe(400);
      const connect = await raw(
        url,
        `CONNECT 127.0.0.1:${o} HTTP/1.1\r\nHost: 127.0.0.1:${o}\r\n\r\n`,
      );
      expect(connect.status).toBe(400);
      expect(connect.text).toContain('<title>400 Bad Request</title>');
      expect(connect.text).toContain('Your client has issued a malformed or illegal request.');
      expect(JSON.parse(lines.at(-1)!)).toMatchObject({
        rule: 'bad-request',
        status: 400,
        method: 'CONNECT',
        path: `127.0.0.1:${o}`,
      });
      expect(lines.at(-1)).toContain(
        `refused CONNECT 127.0.0.1:${o} with 400: the front is not a forward proxy`,
      );
      expect(backend.seen).toEqual([]);
      expect(other.connections).toBe(0);
    });

    it('counts headers by name only: a value that spells a header name is no second copy', async () => {
      const { url } = await front();
      const token = await idToken(url);
      const res = await raw(
        url,
        `GET / HTTP/1.1\r\nHost: a\r\nX-A: authorization\r\nX-B: host\r\nAuthorization: Bearer ${token}\r\n\r\n`,
      );
      expect(res.status).toBe(200);
    });

    it('drops quietly a request whose client left while the check ran: nothing forwarded, nothing logged', async () => {
      // A new front fetches Google's keys for its first token: the check takes a round trip.
      const { url, lines } = await front();
      const token = await idToken(url);
      await new Promise<void>((resolve) => {
        const socket = connect(Number(new URL(url).port), '127.0.0.1');
        socket.on('error', () => undefined);
        socket.once('close', () => resolve());
        socket.write(`GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\n\r\n`, () =>
          socket.destroy(),
        );
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(lines).toEqual([]);
      expect(backend.seen).toEqual([]);
      expect((await get(`${url}/`, { Authorization: `Bearer ${token}` })).status).toBe(200);
    });

    it('closes a CONNECT connection after its 400, even when the client keeps its side open', async () => {
      const { url, server } = await front();
      const socket = connect({
        port: Number(new URL(url).port),
        host: '127.0.0.1',
        allowHalfOpen: true,
      });
      socket.on('error', () => undefined);
      let text = '';
      socket.on('data', (chunk) => (text += chunk));
      const ended = new Promise((resolve) => socket.once('end', resolve));
      socket.write(
        `CONNECT 127.0.0.1:${other.port} HTTP/1.1\r\nHost: 127.0.0.1:${other.port}\r\n\r\n`,
      );
      try {
        await ended;
        expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request/);
        const open = () =>
          new Promise<number>((resolve) => server.getConnections((_err, count) => resolve(count)));
        for (let i = 0; i < 50 && (await open()) > 0; i += 1)
          await new Promise((resolve) => setTimeout(resolve, 20));
        expect(await open()).toBe(0);
      } finally {
        socket.destroy();
      }
    });

    it('serves an absolute-form target for its own host as its path and query', async () => {
      const { url } = await front();
      const host = new URL(url).host;
      const res = await raw(
        url,
        `GET http://${host}/y?z=1 HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${await idToken(url)}\r\n\r\n`,
      );
      expect(res.status).toBe(200);
      expect(res.text).toContain('Hello from GET /y?z=1');
      const bare = await raw(
        url,
        `GET http://${host.toUpperCase()} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${await idToken(url)}\r\n\r\n`,
      );
      expect(bare.text).toContain('Hello from GET /');
      const https = await raw(
        url,
        `GET https://${host}/s HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${await idToken(url)}\r\n\r\n`,
      );
      expect(https.text).toContain('Hello from GET /s');
      for (const scheme of ['xhttp', 'ws', 'ftp']) {
        expect({
          scheme,
          status: (await raw(url, `GET ${scheme}://${host}/ HTTP/1.1\r\nHost: ${host}\r\n\r\n`))
            .status,
        }).toEqual({
          scheme,
          status: 400,
        });
      }
      // A Host header naming another host than the target is not this host either.
      expect(
        (await raw(url, `GET http://${host}/ HTTP/1.1\r\nHost: other.example\r\n\r\n`)).status,
      ).toBe(400);
    });

    it('answers 400 to a repeated Host, and drops the headers Connection names, both ways', async () => {
      const { url, lines } = await front({ invokerIamDisabled: true });
      expect((await raw(url, 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n')).status).toBe(400);
      expect(lines[0]).toContain('the request has 2 Host headers');
      expect(backend.seen).toEqual([]);
      const res = await raw(
        url,
        'GET /named-hop HTTP/1.1\r\nHost: a\r\nX-Hop: 1\r\nX-Mine: 2\r\nConnection: keep-alive, X-Hop\r\n\r\n',
      );
      expect(res.status).toBe(200);
      expect(backend.seen[0]!['x-hop']).toBeUndefined();
      expect(backend.seen[0]!['x-mine']).toBe('2');
      expect(res.text.toLowerCase()).toContain('x-kept: yes');
      expect(res.text.toLowerCase()).not.toContain('x-internal');
      // Neither the container's Upgrade and Trailer nor the client's own Connection value pass on.
      expect(res.text.toLowerCase()).not.toMatch(/\r\n(upgrade|trailer):/);
      expect(backend.seen[0]!.connection).toBe('keep-alive');
    });

    it('decides before 100 Continue: a refused client is never asked for its body', async () => {
      const { url } = await front();
      const refused = await raw(
        url,
        'POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n',
      );
      expect(refused.status).toBe(403);
      expect(refused.text).not.toContain('100 Continue');
      const token = await idToken(url);
      const text = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(new URL(url).port), '127.0.0.1');
        let seen = '';
        socket.on('data', (chunk) => {
          seen += chunk;
          if (seen === 'HTTP/1.1 100 Continue\r\n\r\n') socket.write('hello');
        });
        socket.once('error', reject);
        socket.once('close', () => resolve(seen));
        socket.write(
          `POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n`,
        );
      });
      expect(text.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK')).toBe(true);
      expect(text).toContain('Got hello');
    });

    it('cuts off a client that sends its headers too slowly (408), within seconds', async () => {
      const { url, server } = await front({ invokerIamDisabled: true });
      expect(HEADERS_TIMEOUT_MS).toBeLessThanOrEqual(10_000);
      expect(server.headersTimeout).toBe(HEADERS_TIMEOUT_MS);
      // The whole request within the manifest's timeoutSeconds (30 here), as Cloud Run counts it.
      expect(server.requestTimeout).toBe(30_000);
      const text = await new Promise<string>((resolve) => {
        const socket = connect(Number(new URL(url).port), '127.0.0.1');
        let seen = '';
        socket.on('data', (chunk) => (seen += chunk));
        socket.once('close', () => resolve(seen));
        socket.write('GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ');
      });
      expect(text).toMatch(/^HTTP\/1\.1 408 Request Timeout/);
      expect(backend.seen).toEqual([]);
    });

    it('refuses a WebSocket upgrade with 501 once the IAM check has passed, and 403 before', async () => {
      const { url, lines } = await front();
      const upgrade =
        'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
      expect((await raw(url, `GET /ws HTTP/1.1\r\nHost: a\r\n${upgrade}\r\n`)).status).toBe(403);
      const res = await raw(
        url,
        `GET /ws HTTP/1.1\r\nHost: a\r\n${upgrade}Authorization: Bearer ${await idToken(url)}\r\n\r\n`,
      );
      expect(res.status).toBe(501);
      expect(res.text).toContain('<title>501 Not Implemented</title>');
      expect(res.text).toContain('does not proxy protocol upgrades (WebSocket)');
      expect(JSON.parse(lines[1]!)).toMatchObject({ rule: 'upgrade', status: 501 });
      expect(lines[1]).toContain(
        'asks to upgrade to websocket: this local front does not proxy protocol upgrades',
      );
      expect(backend.seen).toEqual([]);
    });

    it('keeps serving through a barrage of hostile targets and clients that vanish', async () => {
      const rejections: unknown[] = [];
      const onRejection = (reason: unknown) => rejections.push(reason);
      process.on('unhandledRejection', onRejection);
      try {
        const { url } = await front({ timeoutSeconds: 5 });
        const port = Number(new URL(url).port);
        const token = await idToken(url);
        /** Writes a request and goes away without waiting, after `afterMs`. */
        const vanish = (request: string, afterMs: number) =>
          new Promise<void>((resolve) => {
            const socket = connect(port, '127.0.0.1');
            socket.on('error', () => undefined);
            socket.once('close', () => resolve());
            socket.write(request, () => setTimeout(() => socket.destroy(), afterMs));
          });
        const auth = `Authorization: Bearer ${token}\r\n`;
        const hostile = [
          '//',
          '///',
          'http://[::1',
          `//127.0.0.1:${other.port}`,
          '/\\x',
          '*',
          'http://a/',
          `/${'a'.repeat(8000)}`,
        ];
        const rounds: Promise<unknown>[] = [];
        for (let round = 0; round < 10; round += 1) {
          for (const target of hostile) {
            rounds.push(raw(url, `GET ${target} HTTP/1.1\r\nHost: a\r\n${auth}\r\n`));
            rounds.push(vanish(`GET ${target} HTTP/1.1\r\nHost: a\r\n${auth}\r\n`, 0));
          }
          rounds.push(vanish(`GET /slow HTTP/1.1\r\nHost: a\r\n${auth}\r\n`, 20));
          rounds.push(
            vanish(`POST / HTTP/1.1\r\nHost: a\r\n${auth}Content-Length: 100\r\n\r\nhalf`, 5),
          );
          rounds.push(vanish(`GET / HTTP/1.1\r\nHost: a\r\n${auth}\r\n`, 0));
          rounds.push(vanish('GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\n\r\n', 0));
          rounds.push(vanish('GET / HTTP/1.1\r\nHost', 0));
          rounds.push(vanish('\x00\x01garbage\r\n\r\n', 0));
        }
        await Promise.all(rounds);
        expect((await get(`${url}/`, { Authorization: `Bearer ${token}` })).status).toBe(200);
        expect(rejections).toEqual([]);
        expect(other.connections).toBe(0);
      } finally {
        process.off('unhandledRejection', onRejection);
      }
    });

    it('answers 500 to a policy file caught half-written, then serves again', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'policy-'));
      try {
        const path = join(dir, 'receiving.yaml');
        const store = new PolicyStore(dir);
        writeFileSync(path, 'bindings:\n- role: roles/run.invoker\n  members: [serviceAccount:');
        const { url } = await front({}, () => [store.current('receiving')]);
        const token = await idToken(url);
        expect((await get(`${url}/`, { Authorization: `Bearer ${token}` })).status).toBe(500);
        store.set('receiving', invokers(`serviceAccount:${CALLER}`));
        expect((await get(`${url}/`, { Authorization: `Bearer ${token}` })).status).toBe(200);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('the claims Google always mints, as receiving checks them', () => {
    it.each([
      ['no exp', { exp: undefined }, 'fails its exp claim: missing required \\"exp\\" claim'],
      ['no iat', { iat: undefined }, 'fails its iat claim: missing required \\"iat\\" claim'],
      [
        'a ten-year lifetime',
        { exp: nowS() + 10 * 365 * 86400 },
        "fails Google's ID token rules: token is valid for more than a day",
      ],
      ['an iat two days ago', { iat: nowS() - 2 * 86400 }, 'was issued more than a day ago (iat)'],
      [
        'a list of audiences',
        'list',
        "fails Google's ID token rules: token audience must be one string, not a list",
      ],
      ['no subject', { sub: undefined }, "fails Google's ID token rules: token has no subject"],
      ['no audience', { aud: undefined }, 'fails its aud claim: missing required \\"aud\\" claim'],
      ['no issuer', { iss: undefined }, 'fails its iss claim: missing required \\"iss\\" claim'],
    ])('refuses a token with %s with 401 and says so', async (_what, overrides, reason) => {
      const { url, lines } = await front();
      const claims = claimsFor(
        emulator,
        url,
        overrides === 'list' ? { aud: [url, 'https://other.example'] } : (overrides as JWTPayload),
      );
      const res = await get(`${url}/`, { Authorization: `Bearer ${await signed(claims)}` });
      expect(res.status).toBe(401);
      expect(lines[0]).toContain(reason);
      expect(backend.seen).toEqual([]);
    });

    it('takes only a verified email (email_verified true, or "true" as Google has also sent it)', async () => {
      const { url, lines } = await front();
      for (const [value, status] of [
        [false, 401],
        ['false', 401],
        [undefined, 401],
        ['true', 200],
      ] as const) {
        const token = await signed(claimsFor(emulator, url, { email_verified: value }));
        expect({
          value,
          status: (await get(`${url}/`, { Authorization: `Bearer ${token}` })).status,
        }).toEqual({ value, status });
      }
      expect(lines[0]).toContain(
        `the Authorization token's email is not verified (email_verified): IAM cannot take it for ${CALLER}`,
      );
    });

    it('admits the gcloud CLI’s own ID token (its OAuth client as audience), signature removed', async () => {
      const { url } = await front();
      const token = await idToken(GCLOUD_CLIENT_ID);
      const res = await get(`${url}/`, { Authorization: `Bearer ${token}` });
      expect(res.status).toBe(200);
      expect(backend.seen[0]!.authorization).toBe(
        `Bearer ${token.split('.').slice(0, 2).join('.')}.SIGNATURE_REMOVED_BY_GOOGLE`,
      );
      // Another OAuth client's id (ADC's, say) is not the gcloud CLI's.
      const adc = await idToken(
        '764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com',
      );
      expect((await get(`${url}/`, { Authorization: `Bearer ${adc}` })).status).toBe(401);
    });
  });

  describe('refusal logs a person can trust', () => {
    it('writes one JSON object with unique keys: the rule, the status, the reason', async () => {
      const { url, lines } = await front();
      await get(`${url}/p`);
      const [line] = lines;
      const keys = [...line!.matchAll(/"([^"]+)":/g)].map((m) => m[1]);
      expect(keys.filter((key, i) => keys.indexOf(key) !== i)).toEqual([]);
      expect(JSON.parse(line!)).toMatchObject({
        rule: 'token-missing',
        status: 403,
        method: 'GET',
        path: '/p',
      });
      expect(JSON.parse(line!).reason).toContain('the request has no token');
    });

    it('shows an attacker’s audience, issuer and path cut short, and any token in them as [token]', async () => {
      const { url, lines } = await front();
      const planted = await idToken('https://planted.example');
      const aud = `${'a'.repeat(5000)} ${planted}`;
      await get(`${url}/`, {
        Authorization: `Bearer ${await signed(claimsFor(emulator, url, { aud }))}`,
      });
      await get(`${url}/`, {
        Authorization: `Bearer ${await signed(claimsFor(emulator, url, { iss: `x ${planted} ${'i'.repeat(5000)}` }))}`,
      });
      await get(`${url}/${'p'.repeat(3000)}`);
      for (const line of lines) {
        expect(line.length).toBeLessThan(1500);
        for (const part of planted.split('.')) expect(line).not.toContain(part);
      }
      expect(lines[0]).toContain(`aud is \\"${'a'.repeat(199)}…`);
      expect(lines[1]).toContain('iss is \\"x [token] iii');
      expect(lines[2]).toContain(`/${'p'.repeat(199)}…`);
    });

    it('never quotes jose’s words whole: a token hidden in an unknown crit header is shown as [token]', async () => {
      const { url, lines } = await front();
      const inner = await idToken('https://planted.example');
      const header = b64url({
        alg: 'RS256',
        kid: emulator.key.kid,
        crit: [inner, 'x'.repeat(1000)],
      });
      const token = `${header}.${b64url(claimsFor(emulator, url))}.c2ln`;
      expect((await get(`${url}/`, { Authorization: `Bearer ${token}` })).status).toBe(401);
      expect(lines[0]).toContain('the Authorization token does not verify: ');
      expect(lines[0]).toContain('[token]');
      for (const part of inner.split('.')) expect(lines[0]).not.toContain(part);
      expect(lines[0]!.length).toBeLessThan(1000);
    });

    it('cuts text at 200 characters and redacts before it cuts', () => {
      expect(shown('a'.repeat(200))).toBe('a'.repeat(200));
      expect(shown('a'.repeat(201))).toBe(`${'a'.repeat(200)}…`);
      const token = `eyJhbGciOiJSUzI1NiJ9.${'e'.repeat(300)}.sig`;
      expect(shown(`/${token}`)).toBe('/[token]');
    });
  });
});
