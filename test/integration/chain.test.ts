import request from 'supertest';
import { createCallingApp } from '../../services/calling/app.js';
import { createIdTokenSource } from '../../services/calling/id-token-source.js';
import { createUpstreamClient, type UpstreamClient } from '../../services/calling/upstream-client.js';
import { createReceivingApp } from '../../services/receiving/app.js';
import { authenticate } from '../../services/receiving/authenticate.js';
import { parseInvokers } from '../../services/receiving/invokers.js';
import { createJwksTokenVerifier } from '../../services/receiving/token-verifier.js';
import { freePort } from '../../scripts/lib/processes.js';
import { silentLogger } from '../helpers/logs.js';
import { serve, startEmulator, type Running, type RunningEmulator } from '../helpers/servers.js';

/**
 * The three services in this process on ephemeral loopback ports, over real HTTP: calling gets
 * its tokens from the emulator, receiving verifies them with jose.
 */
describe('the chain: calling → receiving, tokens from the metadata emulator', () => {
  let emulator: RunningEmulator;
  const running: Running[] = [];
  let upstream: UpstreamClient;

  beforeAll(async () => {
    emulator = await startEmulator();
    upstream = createUpstreamClient({ timeoutMs: 5000 });
  });
  afterAll(async () => {
    upstream.close();
    await Promise.all(running.map((r) => r.close()));
    await emulator.close();
  });

  const startReceiving = async (invokers: string[]) => {
    // The audience is receiving's own URL, so its port is chosen first.
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const verifier = createJwksTokenVerifier({
      jwksUrl: emulator.jwksUrl,
      audiences: [url],
      issuers: ['https://accounts.google.com'],
    });
    const app = createReceivingApp({
      authenticate: authenticate(
        verifier,
        parseInvokers(invokers, (p) => {
          throw new Error(p);
        }),
      ),
      logger: silentLogger(),
    });
    const receiving = await serve(app, port);
    running.push(receiving);
    return { receiving, audience: receiving.url };
  };

  const startCalling = async (receivingUrl: string, audience: string, auth: 'id-token' | 'none' = 'id-token') => {
    const calling = await serve(
      createCallingApp({
        url: new URL(receivingUrl),
        audience,
        auth,
        idTokens: createIdTokenSource({ kind: 'metadata', host: emulator.host }, silentLogger()),
        upstream,
        logger: silentLogger(),
      }),
    );
    running.push(calling);
    return calling;
  };

  it('answers "Second service says: Hello World!" when calling is an invoker', async () => {
    const { receiving, audience } = await startReceiving([`serviceAccount:${emulator.config.serviceAccount}`]);
    const calling = await startCalling(receiving.url, audience);
    const before = emulator.stats.identityRequests;
    for (let i = 0; i < 3; i += 1) {
      const res = await request(calling.url).get('/');
      expect(res.status).toBe(200);
      expect(res.text).toBe('Second service says: Hello World!');
    }
    // One token serves every request of its lifetime.
    expect(emulator.stats.identityRequests - before).toBe(1);
  });

  it('is refused (502 naming the 401) when calling sends no token', async () => {
    const { receiving, audience } = await startReceiving([`serviceAccount:${emulator.config.serviceAccount}`]);
    const calling = await startCalling(receiving.url, audience, 'none');
    const res = await request(calling.url).get('/');
    expect(res.status).toBe(502);
    expect(res.text).toContain('answered 401');
  });

  it('is refused (502 naming the 403) when calling is not an invoker', async () => {
    const { receiving, audience } = await startReceiving(['serviceAccount:someone-else@p.iam.gserviceaccount.com']);
    const calling = await startCalling(receiving.url, audience);
    const res = await request(calling.url).get('/');
    expect(res.status).toBe(502);
    expect(res.text).toContain('answered 403');
    const sa = emulator.config.serviceAccount;
    expect(res.text).toContain(`calling called as ${sa} with a token for audience ${audience}`);
    expect(res.text).toContain(`--member=serviceAccount:${sa} --role=roles/run.invoker`);

    const problem = await request(calling.url).get('/').set('Accept', 'application/problem+json');
    expect(problem.body).toMatchObject({ status: 502, upstreamStatus: 403, caller: sa, audience });
  });

  it('is refused when calling asks for a token for the wrong audience', async () => {
    const { receiving } = await startReceiving([]);
    const calling = await startCalling(receiving.url, 'https://some-other-service.example');
    const res = await request(calling.url).get('/');
    expect(res.status).toBe(502);
    expect(res.text).toContain('answered 401');
    expect(res.text).toContain('Receiving said: token audience is not this service.');
    expect(res.text).toContain('set AUDIENCE on calling to match (it is https://some-other-service.example)');
  });

  it('refuses a direct call to receiving without a token', async () => {
    const { receiving } = await startReceiving([]);
    const res = await request(receiving.url).get('/');
    expect(res.status).toBe(401);
  });
});
