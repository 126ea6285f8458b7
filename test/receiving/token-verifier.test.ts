import { createHmac, createPublicKey } from 'node:crypto';
import { jest } from '@jest/globals';
import express from 'express';
import { createSigningKey, type SigningKey } from '../../local/metadata-emulator/signing-key.js';
import { SigningKeysUnavailableError, TokenInvalidError } from '../../services/shared/errors.js';
import { errors } from 'jose';
import {
  createJwksTokenVerifier,
  type TokenVerifier,
} from '../../services/receiving/token-verifier.js';
import {
  serve,
  startEmulator,
  nowS,
  type Running,
  type RunningEmulator,
} from '../helpers/servers.js';
import { fakeClock } from '../helpers/timers.js';
import { b64url, claimsFor } from '../helpers/tokens.js';

afterEach(() => jest.useRealTimers());

const AUDIENCE = 'https://receiving-abc123-uc.a.run.app';

async function reasonFor(verifier: TokenVerifier, token: string): Promise<string> {
  const error = await verifier.verify(token).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(TokenInvalidError);
  return (error as TokenInvalidError).reason;
}

describe('createJwksTokenVerifier with the emulator keys', () => {
  let emulator: RunningEmulator;
  let verifier: TokenVerifier;
  beforeAll(async () => {
    emulator = await startEmulator();
    verifier = createJwksTokenVerifier({
      jwksUrl: emulator.jwksUrl,
      audiences: ['https://other.example', AUDIENCE],
      issuers: ['https://accounts.google.com', 'accounts.google.com'],
    });
  });
  afterAll(() => emulator.close());

  const sign = (overrides = {}) => emulator.key.sign(claimsFor(emulator, AUDIENCE, overrides));

  it('accepts a token minted by the emulator and reports its caller', async () => {
    const res = await fetch(
      `${emulator.url}/computeMetadata/v1/instance/service-accounts/default/identity?audience=${encodeURIComponent(AUDIENCE)}&format=full`,
      { headers: { 'Metadata-Flavor': 'Google' } },
    );
    const caller = await verifier.verify(await res.text());
    expect(caller).toEqual({
      subject: expect.stringMatching(/^\d{21}$/),
      email: emulator.config.serviceAccount,
      emailVerified: true,
    });
  });

  it('accepts the short issuer form and email_verified sent as a string', async () => {
    const caller = await verifier.verify(
      await sign({ iss: 'accounts.google.com', email_verified: 'true' }),
    );
    expect(caller.emailVerified).toBe(true);
  });

  it.each([
    ['a word', 'not-a-token', 'token is malformed'],
    ['three garbage parts', 'a.b.c', 'token is malformed'],
    ['a header that is not JSON', 'bm90IGpzb24.e30.c2ln', 'token is malformed'],
  ])('refuses %s as malformed', async (_name, token, reason) => {
    expect(await reasonFor(verifier, token)).toBe(reason);
  });

  it.each([
    ['stripped', ''],
    ['replaced as Cloud Run does', 'SIGNATURE_REMOVED_BY_GOOGLE'],
  ])('refuses a token whose signature was %s', async (_name, signature) => {
    const unsigned = (await sign()).replace(/[^.]+$/, signature);
    expect(await reasonFor(verifier, unsigned)).toBe('token signature does not verify');
  });

  it('refuses alg none', async () => {
    const token = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claimsFor(emulator, AUDIENCE))}.`;
    expect(await reasonFor(verifier, token)).toBe('token algorithm is not RS256');
  });

  it('refuses HS256 keyed with the public key (algorithm confusion)', async () => {
    const pem = createPublicKey(emulator.key.certificates[emulator.key.kid]!).export({
      type: 'spki',
      format: 'pem',
    });
    const signingInput = `${b64url({ alg: 'HS256', typ: 'JWT', kid: emulator.key.kid })}.${b64url(claimsFor(emulator, AUDIENCE))}`;
    const signature = createHmac('sha256', pem).update(signingInput).digest('base64url');
    expect(await reasonFor(verifier, `${signingInput}.${signature}`)).toBe(
      'token algorithm is not RS256',
    );
  });

  it('refuses a token signed by a key it does not publish (unknown kid)', async () => {
    const foreign = await createSigningKey();
    expect(await reasonFor(verifier, await foreign.sign(claimsFor(emulator, AUDIENCE)))).toBe(
      'token is signed by an unknown key',
    );
  });

  it('refuses a token signed by a foreign key that claims the emulator kid', async () => {
    const foreign = await createSigningKey();
    const [, payload, signature] = (await foreign.sign(claimsFor(emulator, AUDIENCE))).split('.');
    const header = b64url({ alg: 'RS256', kid: emulator.key.kid, typ: 'JWT' });
    expect(await reasonFor(verifier, `${header}.${payload}.${signature}`)).toBe(
      'token signature does not verify',
    );
  });

  it('refuses a tampered payload', async () => {
    const [header, , signature] = (await sign()).split('.');
    const forged = b64url(claimsFor(emulator, AUDIENCE, { email: 'admin@example.com' }));
    expect(await reasonFor(verifier, `${header}.${forged}.${signature}`)).toBe(
      'token signature does not verify',
    );
  });

  it.each([
    ['expired', { iat: nowS() - 3720, exp: nowS() - 120 }, 'token has expired'],
    [
      'issued in the future',
      { iat: nowS() + 600, exp: nowS() + 4200 },
      'token is issued in the future',
    ],
    [
      'valid for more than a day',
      { exp: nowS() + 2 * 86400 },
      'token is valid for more than a day',
    ],
    [
      'issued more than a day ago',
      { iat: nowS() - 2 * 86400, exp: nowS() + 60 },
      'token was issued too long ago',
    ],
    ['not valid yet (nbf)', { nbf: nowS() + 600 }, 'token is not valid yet (nbf)'],
    [
      'for another audience',
      { aud: 'https://calling.example' },
      'token audience is not this service',
    ],
    ['from another issuer', { iss: 'https://evil.example' }, 'token issuer is not trusted'],
    [
      'whose audience is a list holding this service',
      { aud: [AUDIENCE] },
      'token audience must be one string, not a list',
    ],
    [
      'whose audience is a list of this and another',
      { aud: [AUDIENCE, 'https://other.example'] },
      'token audience must be one string, not a list',
    ],
    [
      'whose audience is a list of others',
      { aud: ['https://calling.example'] },
      'token audience is not this service',
    ],
    ['without exp', { exp: undefined }, 'token has no expiry (exp)'],
    ['without iat', { iat: undefined }, 'token has no issue time (iat)'],
    ['without aud', { aud: undefined }, 'token has no audience'],
    ['without iss', { iss: undefined }, 'token has no issuer'],
    ['without sub', { sub: undefined }, 'token has no subject'],
    ['whose exp is null', { exp: null }, 'token claim exp is not a number'],
    ['whose iat is a string', { iat: String(nowS()) }, 'token claim iat is not a number'],
  ])('refuses a token %s', async (_name, overrides, reason) => {
    expect(await reasonFor(verifier, await sign(overrides))).toBe(reason);
  });

  it('refuses a token with a critical header it does not understand, keeping jose’s error as the cause', async () => {
    const [, payload, signature] = (await sign()).split('.');
    const header = b64url({
      alg: 'RS256',
      kid: emulator.key.kid,
      crit: ['urn:example:must-understand'],
      'urn:example:must-understand': 1,
    });
    const error = await verifier
      .verify(`${header}.${payload}.${signature}`)
      .catch((err: unknown) => err);
    expect((error as TokenInvalidError).reason).toBe('token uses an unsupported algorithm or key');
    expect((error as Error).cause).toBeInstanceOf(errors.JOSENotSupported);
  });

  it('accepts a token (remembered or not) until its exp plus 30 s of clock tolerance, to the second', async () => {
    fakeClock(Date.now());
    const clocked = createJwksTokenVerifier({
      jwksUrl: emulator.jwksUrl,
      audiences: [AUDIENCE],
      issuers: ['https://accounts.google.com'],
    });
    const exp = nowS() + 120;
    const token = await sign({ exp });
    await clocked.verify(token);
    jest.setSystemTime((exp + 29) * 1000);
    await expect(clocked.verify(token)).resolves.toMatchObject({ emailVerified: true });
    jest.setSystemTime((exp + 30) * 1000);
    expect(await reasonFor(clocked, token)).toBe('token has expired');
    // And one never seen before, at the same instants.
    const fresh = await sign({ exp, sub: 'other' });
    jest.setSystemTime((exp + 29) * 1000);
    await expect(clocked.verify(fresh)).resolves.toMatchObject({ subject: 'other' });
  });

  it('refuses a remembered token when the clock steps back before its iat or nbf, as a fresh check would', async () => {
    fakeClock(Date.now());
    const clocked = createJwksTokenVerifier({
      jwksUrl: emulator.jwksUrl,
      audiences: [AUDIENCE],
      issuers: ['https://accounts.google.com'],
    });
    const iat = nowS();
    const withIat = await sign({ iat, exp: iat + 600 });
    const withNbf = await sign({ iat: iat - 60, nbf: iat, exp: iat + 600, sub: 'nbf' });
    for (const token of [withIat, withNbf]) await clocked.verify(token);
    jest.setSystemTime((iat - 30) * 1000); // within the tolerance: still admitted
    for (const token of [withIat, withNbf])
      await expect(clocked.verify(token)).resolves.toMatchObject({ emailVerified: true });
    jest.setSystemTime((iat - 31) * 1000);
    expect(await reasonFor(clocked, withIat)).toBe('token is issued in the future');
    expect(await reasonFor(clocked, withNbf)).toBe('token is not valid yet (nbf)');
  });

  it('stops accepting a remembered token once it expires', async () => {
    fakeClock(Date.now());
    const clocked = createJwksTokenVerifier({
      jwksUrl: emulator.jwksUrl,
      audiences: [AUDIENCE],
      issuers: ['https://accounts.google.com'],
    });
    const token = await sign({ exp: nowS() + 120 });
    await expect(clocked.verify(token)).resolves.toMatchObject({ emailVerified: true });
    await expect(clocked.verify(token)).resolves.toMatchObject({ emailVerified: true });
    jest.setSystemTime(Date.now() + 10 * 60_000);
    expect(await reasonFor(clocked, token)).toBe('token has expired');
  });

  it('accepts a token valid for exactly a day, the longest allowed', async () => {
    const iat = nowS();
    await expect(verifier.verify(await sign({ iat, exp: iat + 86400 }))).resolves.toMatchObject({
      emailVerified: true,
    });
    expect(await reasonFor(verifier, await sign({ iat, exp: iat + 86401 }))).toBe(
      'token is valid for more than a day',
    );
  });

  it('forgives a small clock skew', async () => {
    await expect(
      verifier.verify(await sign({ iat: nowS() + 10, exp: nowS() + 3610 })),
    ).resolves.toMatchObject({
      emailVerified: true,
    });
  });
});

describe('createJwksTokenVerifier key fetching', () => {
  let keys: SigningKey[];
  let fetches: number;
  let jwks: Running;
  beforeEach(async () => {
    keys = [await createSigningKey()];
    fetches = 0;
    const app = express();
    app.get('/certs', (_req, res) => {
      fetches += 1;
      res.json({ keys: keys.flatMap((k) => k.jwks.keys) });
    });
    jwks = await serve(app);
  });
  afterEach(() => jwks.close());

  const claims = () => ({
    aud: AUDIENCE,
    iss: 'https://accounts.google.com',
    sub: '1',
    iat: nowS(),
    exp: nowS() + 3600,
  });
  const verifierWith = () =>
    createJwksTokenVerifier({
      jwksUrl: new URL(`${jwks.url}/certs`),
      audiences: [AUDIENCE],
      issuers: ['https://accounts.google.com'],
    });

  it('fetches the key set once for many verifications', async () => {
    const verifier = verifierWith();
    const token = await keys[0]!.sign(claims());
    await Promise.all(Array.from({ length: 50 }, () => verifier.verify(token)));
    await verifier.verify(token);
    expect(fetches).toBe(1);
  });

  it('refetches on an unknown kid once the 30 s cooldown is over, so rotated keys are picked up', async () => {
    fakeClock(Date.now());
    const verifier = verifierWith();
    await verifier.verify(await keys[0]!.sign(claims()));
    jest.setSystemTime(Date.now() + 30_000);
    const rotated = await createSigningKey();
    keys.push(rotated);
    await expect(verifier.verify(await rotated.sign(claims()))).resolves.toMatchObject({
      subject: '1',
    });
    expect(fetches).toBe(2);
  });

  it('refetches at most once per cooldown however many unknown kids arrive', async () => {
    const verifier = verifierWith();
    await verifier.verify(await keys[0]!.sign(claims()));
    const strangers = await Promise.all([
      createSigningKey(),
      createSigningKey(),
      createSigningKey(),
    ]);
    for (const stranger of strangers) {
      expect(await reasonFor(verifier, await stranger.sign(claims()))).toBe(
        'token is signed by an unknown key',
      );
    }
    expect(fetches).toBe(1);
  });

  it('answers SigningKeysUnavailable, not an invalid token, when the key server is down', async () => {
    const token = await keys[0]!.sign(claims());
    await jwks.close();
    const error = await verifierWith()
      .verify(token)
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(SigningKeysUnavailableError);
    expect((error as SigningKeysUnavailableError).status).toBe(503);
  });
});
