import request from 'supertest';
import type { ReceivingConfig } from '../../services/receiving/config.js';
import {
  startEmulator,
  startReceiving,
  type Running,
  type RunningEmulator,
} from '../helpers/servers.js';
import { claimsFor } from '../helpers/tokens.js';

const AUDIENCE = 'https://receiving-abc123-uc.a.run.app';

/** receiving wired from its config exactly as main.ts wires it, over real HTTP. */
describe('TOKEN_CHECK: what each mode admits', () => {
  let emulator: RunningEmulator;
  const running: Running[] = [];
  beforeAll(async () => {
    emulator = await startEmulator();
  });
  afterAll(async () => {
    await Promise.all(running.map((r) => r.close()));
    await emulator.close();
  });

  const receiving = async (
    tokenCheck: ReceivingConfig['tokenCheck'],
    options: { audiences?: string[]; invokers?: string[] } = {},
  ) => {
    const server = await startReceiving({
      TOKEN_CHECK: tokenCheck,
      AUDIENCES: (options.audiences ?? [AUDIENCE]).join(','),
      JWKS_URL: emulator.jwksUrl.href,
      INVOKERS: (options.invokers ?? []).join(','),
    });
    running.push(server);
    return (headers: Record<string, string>) => request(server.url).get('/').set(headers);
  };
  const signed = (overrides = {}) => emulator.key.sign(claimsFor(emulator, AUDIENCE, overrides));
  /** What Cloud Run forwards after checking a token. */
  const stripped = async (overrides = {}) =>
    (await signed(overrides)).replace(/[^.]+$/, 'SIGNATURE_REMOVED_BY_GOOGLE');

  it('verify: admits a signed token in Authorization and refuses a stripped one', async () => {
    const get = await receiving('verify');
    expect((await get({ Authorization: `Bearer ${await signed()}` })).status).toBe(200);
    const res = await get({ Authorization: `Bearer ${await stripped()}` });
    expect([res.status, res.text]).toEqual([
      401,
      'invalid token: token signature does not verify\n',
    ]);
  });

  it('verify: does not read X-Serverless-Authorization', async () => {
    const get = await receiving('verify');
    const res = await get({ 'X-Serverless-Authorization': `Bearer ${await signed()}` });
    expect(res.status).toBe(401);
    expect(res.text).toMatch(/no bearer token/);
  });

  it('platform: trusts a stripped token in X-Serverless-Authorization before Authorization', async () => {
    const get = await receiving('platform');
    const both = await get({
      'X-Serverless-Authorization': `Bearer ${await stripped()}`,
      Authorization: 'Bearer not-a-token',
    });
    expect([both.status, both.text]).toEqual([200, 'Hello World!']);
    const serverlessBad = await get({
      'X-Serverless-Authorization': 'Bearer not-a-token',
      Authorization: `Bearer ${await stripped()}`,
    });
    expect(serverlessBad.status).toBe(401);
  });

  it('platform: trusts a stripped token in Authorization, verifies a signed one, refuses a forged one', async () => {
    const get = await receiving('platform');
    expect((await get({ Authorization: `Bearer ${await stripped()}` })).status).toBe(200);
    expect((await get({ Authorization: `Bearer ${await signed()}` })).status).toBe(200);
    const forged = await signed({ aud: 'https://elsewhere.example' });
    expect((await get({ Authorization: `Bearer ${forged}` })).status).toBe(401);
    const res = await get({});
    expect(res.status).toBe(401);
  });

  it('platform without AUDIENCES: refuses a signed token it cannot verify', async () => {
    const get = await receiving('platform', { audiences: [] });
    const res = await get({ Authorization: `Bearer ${await signed()}` });
    expect([res.status, res.text]).toEqual([
      401,
      'invalid token: a signed token can only be verified with AUDIENCES set\n',
    ]);
  });

  it('platform with INVOKERS: refuses a caller Cloud Run admitted but INVOKERS does not name', async () => {
    const get = await receiving('platform', {
      invokers: ['serviceAccount:someone-else@p.iam.gserviceaccount.com'],
    });
    const res = await get({ Authorization: `Bearer ${await stripped()}` });
    expect(res.status).toBe(403);
    expect(res.text).toContain(
      `${emulator.config.serviceAccount} is not allowed to invoke this service`,
    );
  });

  it('none: answers without a token', async () => {
    const get = await receiving('none');
    expect((await get({})).status).toBe(200);
  });
});
