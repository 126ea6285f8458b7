import request from 'supertest';
import {
  nowS,
  startEmulator,
  startReceiving,
  type Running,
  type RunningEmulator,
} from '../helpers/servers.js';
import { b64url, claimsFor } from '../helpers/tokens.js';

const AUDIENCE = 'https://receiving-abc123defg-uc.a.run.app';
/** What Cloud Run puts in place of the signature of a token it has checked. */
const SIGNATURE_REMOVED = 'SIGNATURE_REMOVED_BY_GOOGLE';

describe('receiving with TOKEN_CHECK=platform', () => {
  let emulator: RunningEmulator;
  let receiving: Running;
  const stripped = async (overrides = {}) =>
    (await emulator.key.sign(claimsFor(emulator, AUDIENCE, overrides))).replace(
      /[^.]+$/,
      SIGNATURE_REMOVED,
    );

  const start = (withAudiences: boolean) =>
    startReceiving({
      TOKEN_CHECK: 'platform',
      ...(withAudiences ? { AUDIENCES: AUDIENCE } : {}),
      JWKS_URL: emulator.jwksUrl.href,
      INVOKERS: `serviceAccount:${emulator.config.serviceAccount}`,
    });

  beforeAll(async () => {
    emulator = await startEmulator();
  });
  afterAll(() => emulator.close());
  afterEach(() => receiving.close());

  describe('with AUDIENCES', () => {
    beforeEach(async () => {
      receiving = await start(true);
    });

    it('trusts a token whose signature Cloud Run removed, for its claims', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await stripped()}`);
      expect([res.status, res.text]).toEqual([200, 'Hello World!']);
    });

    it('still applies INVOKERS to the claims of a stripped token', async () => {
      const token = await stripped({ email: 'other@p.iam.gserviceaccount.com' });
      const res = await request(receiving.url).get('/').set('Authorization', `Bearer ${token}`);
      expect(res.status).toBe(403);
      expect(res.text).toContain('other@p.iam.gserviceaccount.com is not allowed');
    });

    it('reads X-Serverless-Authorization first, as Cloud Run uses it for IAM', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set('X-Serverless-Authorization', `Bearer ${await stripped()}`)
        .set('Authorization', 'Basic dXNlcjpwYXNz');
      expect(res.status).toBe(200);
    });

    it('fully verifies a token that still carries a signature', async () => {
      const signed = await emulator.key.sign(claimsFor(emulator, AUDIENCE));
      expect(
        (await request(receiving.url).get('/').set('Authorization', `Bearer ${signed}`)).status,
      ).toBe(200);
      const tampered = signed.replace(/[^.]+$/, 'AAAA');
      const res = await request(receiving.url).get('/').set('Authorization', `Bearer ${tampered}`);
      expect(res.status).toBe(401);
      expect(res.text).toContain('signature does not verify');
    });

    it.each([
      ['no token', undefined, 'no bearer token'],
      [
        'a stripped token from another issuer',
        { iss: 'https://evil.example' },
        'issuer is not trusted',
      ],
      [
        'a stripped token long expired',
        () => ({ iat: nowS() - 7200, exp: nowS() - 3600 }),
        'token has expired',
      ],
      ['a stripped token without exp', { exp: undefined }, 'token has expired'],
      [
        'a stripped token expired just past the 30 s tolerance',
        () => ({ exp: nowS() - 31 }),
        'token has expired',
      ],
      [
        'a stripped token expired exactly at the 30 s tolerance',
        () => ({ exp: nowS() - 30 }),
        'token has expired',
      ],
      ['a stripped token without a subject', { sub: undefined }, 'token has no subject'],
    ])('refuses %s with 401', async (_name, overrides, reason) => {
      const req = request(receiving.url).get('/');
      // Times are taken now, not when the table was built: the 30 s boundary is to the second.
      if (overrides)
        req.set(
          'Authorization',
          `Bearer ${await stripped(typeof overrides === 'function' ? overrides() : overrides)}`,
        );
      const res = await req;
      expect(res.status).toBe(401);
      expect(res.text).toContain(reason);
    });

    it('refuses a malformed stripped token with 401', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${b64url({ alg: 'RS256' })}.not-json.${SIGNATURE_REMOVED}`);
      expect(res.status).toBe(401);
      expect(res.text).toContain('token is malformed');
    });

    it('admits a stripped token within the 30 s tolerance of its exp', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await stripped({ exp: nowS() - 25 })}`);
      expect([res.status, res.text]).toEqual([200, 'Hello World!']);
    });

    it('treats an email claim that is not a string as no email (403), not as a crash', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await stripped({ email: 42 })}`);
      expect(res.status).toBe(403);
      expect(res.text).toMatch(/no verified email/);
    });
  });

  it('without AUDIENCES refuses signed tokens, saying why', async () => {
    receiving = await start(false);
    const signed = await emulator.key.sign(claimsFor(emulator, AUDIENCE));
    const res = await request(receiving.url).get('/').set('Authorization', `Bearer ${signed}`);
    expect(res.status).toBe(401);
    expect(res.text).toContain('a signed token can only be verified with AUDIENCES set');
    expect(
      (
        await request(receiving.url)
          .get('/')
          .set('Authorization', `Bearer ${await stripped()}`)
      ).status,
    ).toBe(200);
  });
});
