import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, generateKeyPair, type JWTPayload } from 'jose';
import { freePort } from '../../../scripts/lib/processes.js';
import { createCloudRunFront } from '../../../local/cloud-run-front/front.js';
import { PolicyFile, addBinding, removeBinding, writePolicyFile, type Policy } from '../../../local/cloud-run-front/policy.js';
import type { ServiceManifest } from '../../../local/cloud-run-front/service.js';
import { capturingLogger } from '../../helpers/logs.js';
import { nowS, startEmulator, type RunningEmulator } from '../../helpers/servers.js';
import { claimsFor } from '../../helpers/tokens.js';

const CALLER = 'cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com';
const OTHER = 'someone-else@local-project.iam.gserviceaccount.com';
const invokers = (...members: string[]): Policy => ({ bindings: [{ role: 'roles/run.invoker', members }] });

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
      res.writeHead(200, { 'content-type': 'text/plain', 'x-from': 'container' }).end(`Hello from ${req.method} ${req.url}`);
    if (req.url === '/slow') setTimeout(answer, 3000).unref();
    else if (req.url === '/stall') res.writeHead(200, { 'content-type': 'text/plain' }).write('part of an answer');
    else if (req.url === '/reset') {
      res.writeHead(200, { 'content-type': 'text/plain' }).write('part of an answer');
      setTimeout(() => req.socket.destroy(), 50).unref();
    } else if (req.url === '/hop') {
      res.writeHead(200, { 'keep-alive': 'timeout=99', 'proxy-connection': 'keep-alive', 'x-kept': 'yes' }).end('hop');
    } else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    closedEarly,
    server,
    close: () => new Promise((resolve) => server.closeAllConnections() ?? server.close(() => resolve())),
  };
}

const manifest = (overrides: Partial<ServiceManifest> = {}): ServiceManifest => ({
  name: 'receiving',
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
  async function front(service: Partial<ServiceManifest> = {}, policies: () => Policy[] = () => [invokers(`serviceAccount:${CALLER}`)]) {
    const { logger, lines } = capturingLogger();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const server = createCloudRunFront({
      service: manifest(service),
      url,
      target: backend.url,
      jwksUrl: emulator.jwksUrl,
      policies,
      logger,
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    fronts.push(server);
    return { url, lines };
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
    expect(body).toContain('Your client does not have permission to get URL <code>/</code> from this server.');
    expect(backend.seen).toEqual([]);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ severity: 'WARNING', rule: 'token-missing', status: 403 });
    expect(lines[0]).toContain('receiving front refused GET / with 403: the request has no Authorization header: receiving is private');
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
    expect(seen!['x-cloud-trace-context']).toBe(`${traceparent![1]}/${BigInt(`0x${traceparent![2]}`)};o=0`);
  });

  it('keeps a trace the request brings, and adds to X-Forwarded-For', async () => {
    const { url } = await front();
    const traceparent = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
    await get(`${url}/`, { Authorization: `Bearer ${await idToken(url)}`, traceparent, 'X-Forwarded-For': '203.0.113.7' });
    expect(backend.seen[0]!.traceparent).toBe(traceparent);
    expect(backend.seen[0]!['x-cloud-trace-context']).toBeUndefined();
    expect(backend.seen[0]!['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
  });

  it('checks X-Serverless-Authorization when present and leaves Authorization untouched', async () => {
    const { url } = await front();
    const token = await idToken(url);
    const res = await get(`${url}/`, { 'X-Serverless-Authorization': `Bearer ${token}`, Authorization: 'Bearer app-level-token' });
    expect(res.status).toBe(200);
    expect(backend.seen[0]!['x-serverless-authorization']).toBe(
      `Bearer ${token.split('.').slice(0, 2).join('.')}.SIGNATURE_REMOVED_BY_GOOGLE`,
    );
    expect(backend.seen[0]!.authorization).toBe('Bearer app-level-token');
  });

  it('takes a header that is not "Bearer <token>" for no token: 403, saying so', async () => {
    const { url, lines } = await front();
    for (const value of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer a b']) {
      expect((await get(`${url}/`, { Authorization: value })).status).toBe(403);
    }
    expect((await get(`${url}/`, { 'X-Serverless-Authorization': 'Token x', Authorization: `Bearer ${await idToken(url)}` })).status).toBe(
      403,
    );
    expect(lines[0]).toContain('the request has an Authorization header that is not \\"Bearer <token>\\"');
    expect(lines[3]).toContain('the request has an X-Serverless-Authorization header that is not');
    expect(backend.seen).toEqual([]);
  });

  it('does not fall back to Authorization when X-Serverless-Authorization is present but bad', async () => {
    const { url, lines } = await front();
    const res = await get(`${url}/`, { 'X-Serverless-Authorization': 'Bearer not-a-jwt', Authorization: `Bearer ${await idToken(url)}` });
    expect(res.status).toBe(401);
    expect(lines[0]).toContain('the x-serverless-authorization token is not a JWT');
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
    expect(body).toContain('Your client does not have permission to the requested URL <code>/</code>.');
    expect(lines[0]).toContain(`aud is \\"https://a.example\\" but this service accepts ${url} (its URL) and no custom audience`);
    for (const part of token.split('.')) expect(lines.join('\n')).not.toContain(part);
  });

  it.each([
    ['expired', { exp: nowS() - 10, iat: nowS() - 3610 }, 'token expired at'],
    ['from another issuer', { iss: 'https://evil.example' }, 'iss is \\"https://evil.example\\", not Google\'s'],
    ['without an email', { email: undefined }, 'has no email claim'],
  ])('refuses a token %s with 401 and says so', async (_what, overrides, reason) => {
    const { url, lines } = await front();
    const res = await get(`${url}/`, { Authorization: `Bearer ${await signed(claimsFor(emulator, url, overrides))}` });
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
      'the authorization token is not a JWT (an ID token is three base64url parts): perhaps an OAuth access token, ' +
        'which Cloud Run also accepts but this front cannot check on one machine; send an ID token',
    );
    expect(backend.seen).toEqual([]);
  });

  it('refuses a valid token whose identity holds no invoker role with 403, naming it and the command that fixes it', async () => {
    const { url, lines } = await front({}, () => [invokers(`serviceAccount:${OTHER}`)]);
    const res = await get(`${url}/`, { Authorization: `Bearer ${await idToken(url)}` });
    expect(res.status).toBe(403);
    expect(lines[0]).toContain(
      `${CALLER} holds no roles/run.invoker on receiving; grant it with: npm run local -- run services add-iam-policy-binding receiving ` +
        `--member=serviceAccount:${CALLER} --role=roles/run.invoker`,
    );
    expect(JSON.parse(lines[0]!)).toMatchObject({ rule: 'not-invoker' });
  });

  it('accepts a custom audience from the manifest', async () => {
    const { url } = await front({ customAudiences: ['https://receiving.example.com'] });
    expect((await get(`${url}/`, { Authorization: `Bearer ${await idToken('https://receiving.example.com')}` })).status).toBe(200);
    // The URL itself, exactly: with a path (even "/") it is another audience.
    expect((await get(`${url}/`, { Authorization: `Bearer ${await idToken(`${url}/`)}` })).status).toBe(401);
    const { url: plain, lines } = await front();
    expect((await get(`${plain}/`, { Authorization: `Bearer ${await idToken('https://receiving.example.com')}` })).status).toBe(401);
    expect(lines[0]).toContain('and no custom audience');
    const { url: other, lines: otherLines } = await front({ customAudiences: ['https://x.example', 'https://y.example'] });
    await get(`${other}/`, { Authorization: `Bearer ${await idToken('https://a.example')}` });
    expect(otherLines[0]).toContain(`accepts ${other} (its URL) and its custom audiences https://x.example, https://y.example`);
    expect((await get(`${other}/`, { Authorization: `Bearer ${await idToken('https://y.example')}` })).status).toBe(200);
  });

  it('admits a project Editor (the tutorial’s default compute identity) through the project policy', async () => {
    const editor = { bindings: [{ role: 'roles/editor', members: [`serviceAccount:${CALLER}`] }] };
    const { url } = await front({}, () => [{ bindings: [] }, editor]);
    expect((await get(`${url}/`, { Authorization: `Bearer ${await idToken(url)}` })).status).toBe(200);
    const viewer = { bindings: [{ role: 'roles/viewer', members: [`serviceAccount:${CALLER}`] }] };
    const { url: url2 } = await front({}, () => [{ bindings: [] }, viewer]);
    expect((await get(`${url2}/`, { Authorization: `Bearer ${await idToken(url2)}` })).status).toBe(403);
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

  it('enforces a policy file as it changes, within a second, without a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-'));
    try {
      const path = join(dir, 'receiving.yaml');
      writePolicyFile(path, invokers(`serviceAccount:${OTHER}`));
      const file = new PolicyFile(path);
      const { url } = await front({}, () => [file.current()]);
      const token = await idToken(url);
      const status = async () => (await get(`${url}/`, { Authorization: `Bearer ${token}` })).status;
      expect(await status()).toBe(403);

      writePolicyFile(path, addBinding(file.current(), 'roles/run.invoker', `serviceAccount:${CALLER}`));
      const until = async (expected: number) => {
        const started = Date.now();
        while (Date.now() - started < 1000) {
          if ((await status()) === expected) return Date.now() - started;
          await new Promise((r) => setTimeout(r, 20));
        }
        throw new Error(`not ${expected} within a second`);
      };
      await until(200);
      writePolicyFile(path, removeBinding(file.current(), 'roles/run.invoker', `serviceAccount:${CALLER}`)!);
      await until(403);

      // A policy file that cannot be read makes the front answer 500 and say why, not admit.
      writePolicyFile(path, invokers(`serviceAccount:${CALLER}`));
      await until(200);
      rmSync(path);
      await until(500);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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
      service: manifest({ invokerIamDisabled: true }),
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
    expect(page).toContain('The service you requested is not available yet. Please try again in 30 seconds.');
    expect(lines[0]).toContain('could not reach its container at http://127.0.0.1:1 (ECONNREFUSED)');
    expect(JSON.parse(lines[0]!)).toMatchObject({ rule: 'container-unreachable', status: 503, code: 'ECONNREFUSED' });
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
    const token = await signed(claimsFor(emulator, url, { iss: 'accounts.google.com', email: CALLER }));
    expect((await get(`${url}/`, { Authorization: `Bearer ${token}` })).status).toBe(200);
  });

  it('reads the scheme in any case with blanks around, and nothing else as a bearer token', async () => {
    const { url } = await front();
    const token = await idToken(url);
    for (const value of [`bearer ${token}`, `BEARER  ${token}`, `Bearer\t${token} `]) {
      expect({ value: value.slice(0, 8), status: (await get(`${url}/`, { Authorization: value })).status }).toEqual({
        value: value.slice(0, 8),
        status: 200,
      });
    }
    for (const value of [`xBearer ${token}`, `Bearer ${token} x`, `Bearer${token}`]) {
      expect({ value: value.slice(0, 8), status: (await get(`${url}/`, { Authorization: value })).status }).toEqual({
        value: value.slice(0, 8),
        status: 403,
      });
    }
  });

  it('does not forward hop-by-hop headers either way', async () => {
    const { url } = await front({ invokerIamDisabled: true });
    const answer = await new Promise<{ headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const req = httpRequest(
        `${url}/hop`,
        { headers: { 'keep-alive': 'timeout=1', 'proxy-connection': 'close', te: 'trailers', 'x-mine': 'kept' } },
        (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ headers: res.headers, body }));
        },
      );
      req.once('error', reject);
      req.end();
    });
    expect(answer.body).toBe('hop');
    expect(answer.headers['x-kept']).toBe('yes');
    expect(answer.headers['proxy-connection']).toBeUndefined();
    expect(answer.headers['keep-alive']).not.toBe('timeout=99');
    const [seen] = backend.seen;
    expect(seen!['x-mine']).toBe('kept');
    for (const name of ['keep-alive', 'proxy-connection', 'te']) expect({ name, value: seen![name] }).toEqual({ name, value: undefined });
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
    await get(`${open}/`, { Authorization: `Bearer ${token}`, 'X-Serverless-Authorization': `Bearer ${token}` });
    expect(backend.seen.map((h) => h.authorization)).toEqual([`Bearer ${token}`, `Bearer ${token}`]);
    expect(backend.seen[1]!['x-serverless-authorization']).toBe(`Bearer ${token}`);
    expect(backend.seen.flatMap((h) => Object.keys(h)).filter((name) => name === 'undefined')).toEqual([]);
  });

  it('refuses everyone when the service has no policy at all (only the project’s)', async () => {
    const { url, lines } = await front({}, () => []);
    expect((await get(`${url}/`)).status).toBe(403);
    expect((await get(`${url}/`, { Authorization: `Bearer ${await idToken(url)}` })).status).toBe(403);
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
    expect(lines[0]).toContain('the IAM policy cannot be read: policy store down');
    const { url: lying, lines: lyingLines } = await front({}, () => [null as unknown as Policy]);
    expect((await get(`${lying}/x`)).status).toBe(500);
    expect((await get(`${lying}/x`)).status).toBe(500);
    expect(lyingLines[0]).toContain('receiving front failed on GET /x');
    expect(JSON.parse(lyingLines[0]!)).toMatchObject({ severity: 'ERROR', service: 'receiving', err: { type: 'TypeError' } });
    expect(backend.seen).toEqual([]);
  });

  it('says when a token is signed with a key Google does not have, and when Google’s keys cannot be had', async () => {
    const { url, lines } = await front();
    const { privateKey } = await generateKeyPair('RS256');
    const unknownKid = await new SignJWT(claimsFor(emulator, url))
      .setProtectedHeader({ alg: 'RS256', kid: 'f'.repeat(40) })
      .sign(privateKey);
    expect((await get(`${url}/`, { Authorization: `Bearer ${unknownKid}` })).status).toBe(401);
    expect(lines[0]).toContain("the authorization token is signed with a key that is not one of Google's (kid unknown)");
    expect(JSON.parse(lines[0]!)).toMatchObject({ rule: 'token-invalid', status: 401 });

    const { logger, lines: deadLines } = capturingLogger();
    const port = await freePort();
    const server = createCloudRunFront({
      service: manifest(),
      url: `http://127.0.0.1:${port}`,
      target: backend.url,
      jwksUrl: new URL(`http://127.0.0.1:${await freePort()}/oauth2/v3/certs`),
      policies: () => [invokers(`serviceAccount:${CALLER}`)],
      logger,
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    fronts.push(server);
    expect((await get(`http://127.0.0.1:${port}/`, { Authorization: `Bearer ${await idToken(`http://127.0.0.1:${port}`)}` })).status).toBe(
      401,
    );
    expect(deadLines[0]).toContain("Google's keys could not be fetched to check the authorization token");
  });

  it('names the time a token expired, and a token with an empty email', async () => {
    const { url, lines } = await front();
    const exp = nowS() - 100;
    await get(`${url}/`, { Authorization: `Bearer ${await signed(claimsFor(emulator, url, { exp, iat: exp - 3600 }))}` });
    expect(lines[0]).toContain(`the authorization token expired at ${new Date(exp * 1000).toISOString()}; fetch a new one`);
    expect((await get(`${url}/`, { Authorization: `Bearer ${await signed(claimsFor(emulator, url, { email: '' }))}` })).status).toBe(401);
    expect(lines[1]).toContain('the authorization token has no email claim');
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
    expect((await get(`${url}/`, { Authorization: `Bearer ${await idToken(url)}` })).status).toBe(200);
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
    const { url } = await front({ invokerIamDisabled: true });
    const aborted = new AbortController();
    const pending = fetch(`${url}/slow`, { signal: aborted.signal }).catch(() => 'aborted');
    await new Promise((resolve) => setTimeout(resolve, 200));
    aborted.abort();
    expect(await pending).toBe('aborted');
    for (let i = 0; i < 50 && backend.closedEarly.length === 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(backend.closedEarly).toEqual(['/slow']);
  });
  it('names the claim a token fails, a header jose cannot read, and a header it does not support', async () => {
    const { url, lines } = await front();
    const payload = Buffer.from(JSON.stringify(claimsFor(emulator, url))).toString('base64url');
    const badHeader = `bm90LWpzb24.${payload}.c2ln`;
    const future = await signed(claimsFor(emulator, url, { nbf: nowS() + 3600 }));
    // An unknown critical header is refused before the signature is looked at: no real signature needed.
    const critHeader = Buffer.from(JSON.stringify({ alg: 'RS256', kid: emulator.key.kid, crit: ['x-ext'], 'x-ext': 1 })).toString(
      'base64url',
    );
    const crit = `${critHeader}.${payload}.c2ln`;
    for (const token of [badHeader, future, crit]) expect((await get(`${url}/`, { Authorization: `Bearer ${token}` })).status).toBe(401);
    expect(lines[0]).toContain('the authorization token is not a JWT');
    expect(lines[1]).toContain('the authorization token fails its nbf claim: ');
    expect(lines[2]).toContain('the authorization token does not verify: ');
    expect(lines[2]).not.toContain("Google's keys could not be fetched");
  });
});
