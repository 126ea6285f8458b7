import request from 'supertest';
import { createCallingApp } from '../../services/calling/app.js';
import type { TokenHeader } from '../../services/calling/config.js';
import { createIdTokenSource } from '../../services/calling/id-token-source.js';
import { createUpstreamClient, type UpstreamClient } from '../../services/calling/upstream-client.js';
import { createReceivingApp } from '../../services/receiving/app.js';
import { createTokenCheck } from '../../services/receiving/token-check.js';
import { freePort } from '../../scripts/lib/processes.js';
import { cloudRunFront } from '../helpers/cloud-run-front.js';
import { silentLogger } from '../helpers/logs.js';
import { serve, startEmulator, type Running, type RunningEmulator } from '../helpers/servers.js';

/** calling → (a stand-in for Cloud Run IAM) → receiving, in each token mode. */
describe('token modes behind Cloud Run IAM', () => {
  let emulator: RunningEmulator;
  let upstream: UpstreamClient;
  const running: Running[] = [];
  beforeAll(async () => {
    emulator = await startEmulator();
    upstream = createUpstreamClient({ timeoutMs: 5000 });
  });
  afterAll(async () => {
    upstream.close();
    await Promise.all(running.map((r) => r.close()));
    await emulator.close();
  });

  const chain = async (tokenCheck: 'verify' | 'platform', tokenHeader: TokenHeader) => {
    const frontPort = await freePort();
    const audience = `http://127.0.0.1:${frontPort}`;
    const issuers = ['https://accounts.google.com'];
    // The same wiring receiving's main.ts uses for TOKEN_CHECK.
    const receivingAuth = createTokenCheck({ tokenCheck, audiences: [audience], jwksUrl: emulator.jwksUrl, issuers, invokers: null });
    const receiving = await serve(createReceivingApp({ authenticate: receivingAuth, logger: silentLogger() }));
    const front = await serve(
      cloudRunFront({ target: receiving.url, audience, jwksUrl: emulator.jwksUrl, invokers: [emulator.config.serviceAccount] }),
      frontPort,
    );
    const calling = await serve(
      createCallingApp({
        url: new URL(front.url),
        audience,
        auth: 'id-token',
        tokenHeader,
        idTokens: createIdTokenSource({ kind: 'metadata', host: emulator.host }, silentLogger()),
        upstream,
        logger: silentLogger(),
      }),
    );
    running.push(receiving, front, calling);
    return calling.url;
  };

  it('platform + Authorization: receiving trusts the token Cloud Run checked and stripped', async () => {
    const res = await request(await chain('platform', 'authorization')).get('/');
    expect([res.status, res.text]).toEqual([200, 'Second service says: Hello World!']);
  });

  it('verify + Authorization fails behind IAM: the signature is gone by the time receiving sees it', async () => {
    const res = await request(await chain('verify', 'authorization')).get('/');
    expect(res.status).toBe(502);
    expect(res.text).toContain('answered 401');
    expect(res.text).toContain('Receiving said: token signature does not verify.');
    expect(res.text).toContain('run receiving with TOKEN_CHECK=platform, or set TOKEN_HEADER=both');
  });

  it('verify + TOKEN_HEADER=both: IAM reads X-Serverless-Authorization, receiving verifies Authorization (defense in depth)', async () => {
    const res = await request(await chain('verify', 'both')).get('/');
    expect([res.status, res.text]).toEqual([200, 'Second service says: Hello World!']);
  });

  it('platform + TOKEN_HEADER=x-serverless-authorization works too', async () => {
    const res = await request(await chain('platform', 'x-serverless-authorization')).get('/');
    expect(res.status).toBe(200);
  });
});
