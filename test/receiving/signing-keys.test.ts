import { jest } from '@jest/globals';
import express from 'express';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { createSigningKey, type SigningKey } from '../../local/metadata-emulator/signing-key.js';
import {
  createJwksTokenVerifier,
  type TokenVerifier,
} from '../../services/receiving/token-verifier.js';
import { SigningKeysUnavailableError, TokenInvalidError } from '../../services/shared/errors.js';
import { freePort } from '../../scripts/lib/processes.js';
import { resettingServer } from '../helpers/faults.js';
import { serve, nowS, type Running } from '../helpers/servers.js';
import { fakeClock, timersOf } from '../helpers/timers.js';
import { b64url } from '../helpers/tokens.js';

const AUDIENCE = 'https://receiving-abc123-uc.a.run.app';
const COOLDOWN_MS = 30_000;

// The key cache's clock and its key requests' 5 s timeouts are faked; I/O and sleep are real.
const realSetTimeout = globalThis.setTimeout;
const sleep = (ms: number) => new Promise((resolve) => realSetTimeout(resolve, ms));
/** Moves the clock, firing the timeouts that fall due (a silent key server's, say). */
const advance = (ms: number) => jest.advanceTimersByTime(ms);
beforeEach(() => fakeClock(Date.now(), { timeouts: true }));
afterEach(() => jest.useRealTimers());

type Mode =
  | 'ok'
  | 'error-500'
  | 'silent'
  | 'refused'
  | 'not-json'
  | 'no-keys'
  | 'redirect'
  | 'huge'
  | 'null'
  | 'raw';

/**
 * A key server we control: serves `keys` with `Cache-Control: max-age=<maxAgeS>`, counts every
 * request, and fails on demand (500, never answers, connection refused, garbage, an empty set).
 */
class KeyServer {
  keys: SigningKey[] = [];
  /** Served as is in mode 'raw'. */
  raw: unknown = null;
  maxAgeS = 60;
  mode: Mode = 'ok';
  requests = 0;
  private running: Running | undefined;
  private port = 0;

  async start(): Promise<void> {
    const app = express();
    app.get('/certs', (_req, res) => {
      this.requests += 1;
      switch (this.mode) {
        case 'error-500':
          res.status(500).send('backend error');
          return;
        case 'silent':
          return;
        case 'not-json':
          res.type('text/html').send('<html>captive portal</html>');
          return;
        case 'no-keys':
          res.json({ keys: [] });
          return;
        case 'redirect':
          res.redirect(302, '/certs-elsewhere');
          return;
        case 'huge':
          res.json({ keys: this.keys.flatMap((k) => k.jwks.keys), padding: 'x'.repeat(70 * 1024) });
          return;
        case 'null':
          res.json(null);
          return;
        case 'raw':
          res.set('Cache-Control', `public, max-age=${this.maxAgeS}`).json(this.raw);
          return;
        default:
          res
            .set('Cache-Control', `public, max-age=${this.maxAgeS}`)
            .json({ keys: this.keys.flatMap((k) => k.jwks.keys) });
      }
    });
    this.port ||= await freePort();
    this.running = await serve(app, this.port);
  }

  /** Resolves once the server has had n requests in all. */
  async seen(n: number): Promise<void> {
    while (this.requests < n) await sleep(5);
  }

  get url(): URL {
    return new URL(`http://127.0.0.1:${this.port}/certs`);
  }

  async setMode(mode: Mode): Promise<void> {
    if (mode === 'refused' && this.running) {
      await this.running.close();
      this.running = undefined;
    } else if (mode !== 'refused' && !this.running) {
      await this.start();
    }
    this.mode = mode;
  }

  close(): Promise<void> {
    return this.running?.close() ?? Promise.resolve();
  }
}

/** A verifier of AUDIENCE tokens against the key server. */
const verifierFor = (server: KeyServer) =>
  createJwksTokenVerifier({
    jwksUrl: server.url,
    audiences: [AUDIENCE],
    issuers: ['https://accounts.google.com'],
  });

const claims = () => ({
  aud: AUDIENCE,
  iss: 'https://accounts.google.com',
  sub: '1',
  iat: nowS(),
  exp: nowS() + 3600,
});

/** A token-shaped string naming a key id nobody publishes: what a flood of forgeries looks like. */
const forgedWithKid = (kid: string) =>
  `${b64url({ alg: 'RS256', kid, typ: 'JWT' })}.${b64url(claims())}.c2lnbmF0dXJl`;

async function outcome(verifier: TokenVerifier, token: string): Promise<string> {
  return verifier.verify(token).then(
    () => 'ok',
    (err: unknown) => {
      if (err instanceof SigningKeysUnavailableError)
        return `503 retry-after ${err.headers['Retry-After']}`;
      if (err instanceof TokenInvalidError) return `401 ${err.reason}`;
      throw err;
    },
  );
}

describe('signing keys: a cache that outlives the key server', () => {
  let server: KeyServer;
  let key: SigningKey;
  let verifier: TokenVerifier;

  beforeAll(async () => {
    key = await createSigningKey();
  });
  beforeEach(async () => {
    server = new KeyServer();
    server.keys = [key];
    await server.start();
    verifier = verifierFor(server);
  });
  afterEach(() => server.close());

  /** Lets a background refresh finish (a silent server's, once advance has fired its timeout). */
  const settle = () => sleep(200);

  it('fetches the key set once for a burst of verifications', async () => {
    const token = await key.sign(claims());
    const results = await Promise.all(Array.from({ length: 50 }, () => outcome(verifier, token)));
    expect(new Set(results)).toEqual(new Set(['ok']));
    expect(server.requests).toBe(1);
  });

  it('keeps keys for the max-age the key server sends, then refreshes them in the background', async () => {
    server.maxAgeS = 120;
    const token = await key.sign(claims());
    expect(await outcome(verifier, token)).toBe('ok');
    advance(60_000); // past the cooldown, well within max-age: nothing to fetch
    expect(await outcome(verifier, token)).toBe('ok');
    await settle();
    expect(server.requests).toBe(1);
    advance(59_999);
    expect(await outcome(verifier, token)).toBe('ok');
    await settle();
    expect(server.requests).toBe(1);
    advance(1); // exactly max-age
    expect(await outcome(verifier, token)).toBe('ok');
    await settle();
    expect(server.requests).toBe(2);
  });

  it.each([
    ['error-500' as const],
    ['silent' as const],
    ['refused' as const],
    ['not-json' as const],
    ['no-keys' as const],
  ])(
    'keeps verifying tokens on cached keys through a key server that is %s, long after max-age',
    async (mode) => {
      const token = await key.sign(claims());
      expect(await outcome(verifier, token)).toBe('ok');
      await server.setMode(mode);
      // Six hours of outage, one request every 5 minutes; the cached key stays in use throughout.
      for (let minute = 5; minute <= 360; minute += 5) {
        advance(5 * 60_000);
        // A token of the hour (an old one would have expired), signed by the cached key.
        expect(await outcome(verifier, await key.sign(claims()))).toBe('ok');
        if (minute === 180) await settle();
      }
      await settle();
      // Tried again (stale), but never more than once per request here, and never failing a request.
      if (mode !== 'refused') {
        expect(server.requests).toBeGreaterThan(1);
        expect(server.requests).toBeLessThanOrEqual(1 + 360 / 5);
      }
    },
  );

  it.each([
    ['answers 500', 'error-500' as const, '503 retry-after 30'],
    ['never answers', 'silent' as const, '503 retry-after 30'],
    ['refuses connections', 'refused' as const, '503 retry-after 30'],
  ])(
    'makes one key request per cooldown under a flood of unknown key ids while the key server %s',
    async (_name, mode, refusal) => {
      expect(await outcome(verifier, await key.sign(claims()))).toBe('ok');
      await server.setMode(mode);
      const before = server.requests;
      advance(COOLDOWN_MS);
      const flood = Promise.all(
        Array.from({ length: 200 }, (_v, i) => outcome(verifier, forgedWithKid(`forged-${i}`))),
      );
      if (mode === 'silent') {
        await server.seen(before + 1); // which it never answers
        advance(5000);
      }
      const concurrent = await flood;
      expect(new Set(concurrent)).toEqual(new Set([refusal]));
      const sequential: string[] = [];
      for (let i = 0; i < 200; i += 1)
        sequential.push(await outcome(verifier, forgedWithKid(`again-${i}`)));
      expect(new Set(sequential)).toEqual(new Set([refusal]));
      // A refused connection leaves no count; the same Retry-After shows no new attempt was made.
      if (mode !== 'refused') expect(server.requests - before).toBe(1);
      // A valid token on a cached key is not held hostage by the outage.
      expect(await outcome(verifier, await key.sign(claims()))).toBe('ok');
    },
  );

  it('backs off while the key server keeps failing, doubling the wait up to 5 minutes', async () => {
    await server.setMode('error-500');
    const flood = () => outcome(verifier, forgedWithKid('x'));
    const requestsAt: number[] = [];
    // 20 minutes, one forged token every 5 s.
    for (let s = 0; s <= 1200; s += 5) {
      await flood();
      requestsAt.push(server.requests);
      advance(5000);
    }
    // Requests at t = 0, 30, 90, 210, 450, 750, 1050 s: waits of 30, 60, 120, 240, then 300 (the cap).
    const firstSeen = [...new Set(requestsAt)].map((n) => requestsAt.indexOf(n) * 5);
    expect(firstSeen).toEqual([0, 30, 90, 210, 450, 750, 1050]);
    expect(server.requests).toBe(7);
  });

  it('answers 503 with Retry-After only for a token whose key is neither cached nor fetchable', async () => {
    await server.setMode('error-500');
    const token = await key.sign(claims());
    expect(await outcome(verifier, token)).toBe('503 retry-after 30');
    advance(10_000);
    expect(await outcome(verifier, token)).toBe('503 retry-after 20');
    expect(server.requests).toBe(1);
    const error = await verifier.verify(token).catch((err: unknown) => err);
    expect((error as Error).message).toBe(
      `cannot check this token right now: its signing key is not cached and the key server at ${server.url.href} ` +
        'answered 500; next try in 20 s',
    );
  });

  it.each([
    ['error-500' as const, 'answered 500', undefined],
    ['not-json' as const, 'answered something that is not JSON', undefined],
    ['no-keys' as const, 'answered a key set without RSA keys', undefined],
    ['null' as const, 'answered a key set without RSA keys', undefined],
    ['raw' as const, 'answered a key set without RSA keys', { keys: [null] }],
    ['raw' as const, 'answered a key set without RSA keys', { keys: 'not a list' }],
    [
      'raw' as const,
      'answered a malformed key set',
      { keys: [{ kty: 'RSA', n: 'AQAB', e: 'AQAB' }, 'not a key'] },
    ],
    ['redirect' as const, 'answered 302', undefined],
    ['huge' as const, 'answered more than 64 KB', undefined],
  ])('treats a key server in mode %s as failing: "%s"', async (mode, how, raw: unknown) => {
    server.mode = mode;
    server.raw = raw;
    const error = (await verifier
      .verify(await key.sign(claims()))
      .catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(SigningKeysUnavailableError);
    expect(error.message).toContain(`key server at ${server.url.href} ${how}; next try in 30 s`);
  });

  it('names a silent key server by its 5 s timeout and a refused one by the refusal', async () => {
    await server.setMode('silent');
    const waiting = verifier.verify(await key.sign(claims())).catch((e: Error) => e);
    await server.seen(1);
    advance(5000);
    expect(((await waiting) as Error).message).toContain('did not answer within 5000 ms');
    advance(COOLDOWN_MS);
    await server.setMode('refused');
    expect(
      ((await verifier.verify(await key.sign(claims())).catch((e: Error) => e)) as Error).message,
    ).toContain('could not be reached (the connection was refused)');
  });

  it('names a reset connection as reset', async () => {
    const reset = await resettingServer();
    try {
      const url = new URL(`http://127.0.0.1:${reset.port}/certs`);
      const resetting = createJwksTokenVerifier({
        jwksUrl: url,
        audiences: [AUDIENCE],
        issuers: ['https://accounts.google.com'],
      });
      const error = (await resetting
        .verify(await key.sign(claims()))
        .catch((e: unknown) => e)) as Error;
      expect(error.message).toContain(
        `key server at ${url.href} could not be reached (the connection was reset); next try in 30 s`,
      );
    } finally {
      await reset.close();
    }
  });

  it('does not fetch keys for a token without a key id', async () => {
    expect(await outcome(verifier, await key.sign(claims()))).toBe('ok');
    advance(COOLDOWN_MS + 1000); // a fetch would be allowed, and the keys are not stale
    const noKid = `${b64url({ alg: 'RS256', typ: 'JWT' })}.${b64url(claims())}.c2lnbmF0dXJl`;
    expect(await outcome(verifier, noKid)).toBe('401 token signature does not verify');
    await settle();
    expect(server.requests).toBe(1);
  });

  it('leaves no timer behind once the keys have come', async () => {
    const timers = await timersOf(5000, async () =>
      expect(await outcome(verifier, await key.sign(claims()))).toBe('ok'),
    );
    expect(timers).toEqual({ set: 1, uncleared: 0 });
  });

  it('refuses an unknown key id as the token’s fault (401) while the key server is healthy, without refetching', async () => {
    expect(await outcome(verifier, await key.sign(claims()))).toBe('ok');
    advance(1000);
    const results = await Promise.all(
      Array.from({ length: 100 }, (_v, i) => outcome(verifier, forgedWithKid(`k${i}`))),
    );
    expect(new Set(results)).toEqual(new Set(['401 token is signed by an unknown key']));
    expect(server.requests).toBe(1);
  });

  it('picks up a rotated key on an unknown key id once the cooldown allows, and recovers after an outage', async () => {
    expect(await outcome(verifier, await key.sign(claims()))).toBe('ok');
    const rotated = await createSigningKey();
    server.keys = [key, rotated];
    const token = await rotated.sign(claims());
    expect(await outcome(verifier, token)).toBe('401 token is signed by an unknown key');
    advance(COOLDOWN_MS);
    await server.setMode('error-500');
    expect(await outcome(verifier, token)).toBe('503 retry-after 30');
    advance(COOLDOWN_MS);
    await server.setMode('ok');
    expect(await outcome(verifier, token)).toBe('ok');
    expect(server.requests).toBe(3);
    // Success resets the backoff: the next wait is the plain cooldown again.
    await server.setMode('error-500');
    advance(COOLDOWN_MS);
    expect(await outcome(verifier, forgedWithKid('z'))).toBe('503 retry-after 30');
  });
});

describe('signing keys from an https key server (as Google’s is)', () => {
  it('checks the certificate: Node’s CAs and NODE_EXTRA_CA_CERTS only', async () => {
    const key = await createSigningKey();
    const fixtures = new URL('../fixtures/tls/', import.meta.url);
    const cert = readFileSync(new URL('loopback.crt', fixtures));
    const server = https.createServer(
      { key: readFileSync(new URL('loopback.key', fixtures)), cert },
      (_req, res) => {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify(key.jwks));
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = new URL(`https://127.0.0.1:${(server.address() as { port: number }).port}/certs`);
    try {
      // Trusted through NODE_EXTRA_CA_CERTS, in a process: test/scripts/service-startup.test.ts.
      const untrusting = createJwksTokenVerifier({
        jwksUrl: url,
        audiences: [AUDIENCE],
        issuers: ['https://accounts.google.com'],
      });
      const error = (await untrusting
        .verify(await key.sign(claims()))
        .catch((e: unknown) => e)) as Error;
      expect(error.message).toContain(
        'could not be reached (TLS failed: DEPTH_ZERO_SELF_SIGNED_CERT)',
      );
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('remembered tokens follow their key', () => {
  it('forgets a verified token once its key leaves the key set at the next refresh', async () => {
    const [old, fresh] = await Promise.all([createSigningKey(), createSigningKey()]);
    const server = new KeyServer();
    server.keys = [old];
    server.maxAgeS = 60;
    await server.start();
    const verifier = verifierFor(server);
    try {
      const oldToken = await old.sign(claims());
      const freshToken = await fresh.sign(claims());
      await verifier.verify(oldToken);
      await expect(verifier.verify(oldToken)).resolves.toMatchObject({ subject: '1' });
      // Google rotates: the old key is withdrawn. The next request past max-age, though answered
      // from memory, starts the refresh that drops the key and every token it signed.
      server.keys = [fresh];
      advance(61_000);
      await expect(verifier.verify(oldToken)).resolves.toMatchObject({ subject: '1' });
      await sleep(200);
      await expect(verifier.verify(oldToken)).rejects.toMatchObject({
        reason: 'token is signed by an unknown key',
      });
      await expect(verifier.verify(freshToken)).resolves.toMatchObject({ subject: '1' });
      expect(server.requests).toBe(2);
    } finally {
      await server.close();
    }
  });

  it('forgets a verified token without a key id at the next key change', async () => {
    const [a, b] = await Promise.all([
      generateKeyPair('RS256', { extractable: true }),
      generateKeyPair('RS256', { extractable: true }),
    ]);
    const jwkOf = async (pair: typeof a) => ({
      ...(await exportJWK(pair.publicKey)),
      alg: 'RS256',
      use: 'sig',
    });
    const server = new KeyServer();
    server.mode = 'raw';
    server.raw = { keys: [await jwkOf(a)] };
    server.maxAgeS = 60;
    await server.start();
    const verifier = verifierFor(server);
    try {
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: 'RS256' })
        .sign(a.privateKey);
      await verifier.verify(token);
      await expect(verifier.verify(token)).resolves.toMatchObject({ subject: '1' });
      server.raw = { keys: [await jwkOf(b)] };
      advance(61_000);
      await verifier.verify(token).catch(() => undefined); // starts the refresh
      await sleep(200);
      expect(server.requests).toBe(2);
      expect(
        (await verifier.verify(token).catch((e: unknown) => e)) as TokenInvalidError,
      ).toMatchObject({
        reason: 'token signature does not verify',
      });
    } finally {
      await server.close();
    }
  });

  it('forgets a verified token once the key behind its key id is replaced, the id kept', async () => {
    const [a, b] = await Promise.all([
      generateKeyPair('RS256', { extractable: true }),
      generateKeyPair('RS256', { extractable: true }),
    ]);
    const jwkOf = async (pair: typeof a) => ({
      ...(await exportJWK(pair.publicKey)),
      kid: 'k1',
      alg: 'RS256',
      use: 'sig',
    });
    const server = new KeyServer();
    server.mode = 'raw';
    server.raw = { keys: [await jwkOf(a)] };
    server.maxAgeS = 60;
    await server.start();
    const verifier = verifierFor(server);
    try {
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .sign(a.privateKey);
      expect(await outcome(verifier, token)).toBe('ok');
      server.raw = { keys: [await jwkOf(b)] };
      advance(61_000);
      expect(await outcome(verifier, token)).toBe('ok'); // the old keys, while the refresh runs
      await sleep(200);
      expect(server.requests).toBe(2);
      expect(await outcome(verifier, token)).toBe('401 token signature does not verify');
    } finally {
      await server.close();
    }
  });

  it('calls a token without a key id ambiguous when the key set holds more than one RSA key', async () => {
    const [a, b] = await Promise.all([
      generateKeyPair('RS256', { extractable: true }),
      generateKeyPair('RS256', { extractable: true }),
    ]);
    const jwkOf = async (pair: typeof a) => ({
      ...(await exportJWK(pair.publicKey)),
      alg: 'RS256',
      use: 'sig',
    });
    const server = new KeyServer();
    server.mode = 'raw';
    server.raw = { keys: [await jwkOf(a), await jwkOf(b)] };
    await server.start();
    const verifier = verifierFor(server);
    try {
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: 'RS256' })
        .sign(a.privateKey);
      expect(await outcome(verifier, token)).toBe('401 token key id is ambiguous');
    } finally {
      await server.close();
    }
  });

  it('keeps remembered tokens whose key is still published', async () => {
    const key = await createSigningKey();
    const server = new KeyServer();
    server.keys = [key];
    await server.start();
    const verifier = verifierFor(server);
    try {
      const token = await key.sign(claims());
      await verifier.verify(token);
      advance(61_000);
      await expect(verifier.verify(token)).resolves.toMatchObject({ subject: '1' });
      await sleep(200);
      expect(server.requests).toBe(2);
      await expect(verifier.verify(token)).resolves.toMatchObject({ subject: '1' });
    } finally {
      await server.close();
    }
  });
});

describe("how long keys are kept: the key server's Cache-Control max-age, from 30 s to a day", () => {
  it.each([
    [undefined, 300],
    ['public, max-age=19800, must-revalidate, no-transform', 19800],
    ['max-age=1', 30],
    ['max-age=999999', 86400],
    ['s-maxage=5', 300],
    ['no-store', 300],
    ['MAX-AGE="120"', 120],
    ['public , max-age = 120 , must-revalidate', 120],
    ['max-ageing=120', 300],
    ['max-age=120abc', 300],
  ])(
    'Cache-Control %p: refreshed after %d seconds, not a second before',
    async (header, seconds) => {
      const key = await createSigningKey();
      let requests = 0;
      const app = express();
      app.get('/certs', (_req, res) => {
        requests += 1;
        if (header !== undefined) res.set('Cache-Control', header);
        res.json(key.jwks);
      });
      const keyServer = await serve(app);
      const verifier = createJwksTokenVerifier({
        jwksUrl: new URL(`${keyServer.url}/certs`),
        audiences: [AUDIENCE],
        issuers: ['https://accounts.google.com'],
      });
      const settle = () => sleep(50);
      try {
        // Long after the token's hour its key is still looked up, and that is what starts a refresh.
        const token = await key.sign(claims());
        await verifier.verify(token);
        advance(seconds * 1000 - 1);
        await verifier.verify(token).catch(() => undefined);
        await settle();
        expect(requests).toBe(1);
        advance(1);
        await verifier.verify(token).catch(() => undefined);
        await settle();
        expect(requests).toBe(2);
      } finally {
        await keyServer.close();
      }
    },
  );
});

describe('receiving while its key server is down', () => {
  it('admits tokens on cached keys and answers 503 with Retry-After to an uncached key, one key request per cooldown', async () => {
    const key = await createSigningKey();
    const server = new KeyServer();
    server.keys = [key];
    server.maxAgeS = 30;
    await server.start();
    const verifier = verifierFor(server);
    try {
      const valid = await key.sign(claims());
      expect(await outcome(verifier, valid)).toBe('ok');
      await server.setMode('error-500');
      advance(10 * 60_000);
      const before = server.requests;
      const outcomes = await Promise.all([
        ...Array.from({ length: 100 }, (_v, i) => outcome(verifier, forgedWithKid(`forged-${i}`))),
        ...Array.from({ length: 20 }, () => outcome(verifier, valid)),
      ]);
      expect(new Set(outcomes.slice(0, 100))).toEqual(new Set(['503 retry-after 30']));
      const error = (await verifier
        .verify(forgedWithKid('one-more'))
        .catch((e: unknown) => e)) as Error;
      expect(error.message).toMatch(
        /key server at http:\/\/127\.0\.0\.1:\d+\/certs answered 500; next try in 30 s/,
      );
      expect(outcomes.slice(100)).toEqual(Array(20).fill('ok'));
      expect(server.requests - before).toBe(1);
    } finally {
      await server.close();
    }
  });
});
