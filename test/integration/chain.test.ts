import request from 'supertest';
import { freePort } from '../../scripts/lib/processes.js';
import {
  startCalling as serveCalling,
  startEmulator,
  startReceiving as serveReceiving,
  type Running,
  type RunningEmulator,
} from '../helpers/servers.js';

/**
 * The three services in this process on ephemeral loopback ports, over real HTTP: calling gets
 * its tokens from the emulator, receiving verifies them with jose.
 */
describe('the chain: calling → receiving, tokens from the metadata emulator', () => {
  let emulator: RunningEmulator;
  const running: Running[] = [];

  beforeAll(async () => {
    emulator = await startEmulator();
  });
  afterAll(async () => {
    await Promise.all(running.map((r) => r.close()));
    await emulator.close();
  });

  const startReceiving = async (invokers: string[]) => {
    // The audience is receiving's own URL, so its port is chosen first.
    const port = await freePort();
    const env = {
      AUDIENCES: `http://127.0.0.1:${port}`,
      JWKS_URL: emulator.jwksUrl.href,
      INVOKERS: invokers.join(','),
    };
    const receiving = await serveReceiving(env, undefined, port);
    running.push(receiving);
    return { receiving, audience: receiving.url };
  };

  const startCalling = async (
    receivingUrl: string,
    audience: string,
    auth: 'id-token' | 'none' = 'id-token',
  ) => {
    const calling = await serveCalling({
      URL: receivingUrl,
      AUDIENCE: audience,
      AUTH: auth,
      GCE_METADATA_HOST: emulator.host,
    });
    running.push(calling);
    return calling;
  };

  it('answers "Second service says: Hello World!" when calling is an invoker', async () => {
    const { receiving, audience } = await startReceiving([
      `serviceAccount:${emulator.config.serviceAccount}`,
    ]);
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
    const { receiving, audience } = await startReceiving([
      `serviceAccount:${emulator.config.serviceAccount}`,
    ]);
    const calling = await startCalling(receiving.url, audience, 'none');
    const res = await request(calling.url).get('/');
    expect(res.status).toBe(502);
    expect(res.text).toContain('answered 401');
  });

  it('is refused (502 naming the 403) when calling is not an invoker', async () => {
    const { receiving, audience } = await startReceiving([
      'serviceAccount:someone-else@p.iam.gserviceaccount.com',
    ]);
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
    expect(res.text).toContain(
      'set AUDIENCE on calling to match (it is https://some-other-service.example)',
    );
  });

  it('refuses a direct call to receiving without a token', async () => {
    const { receiving } = await startReceiving([]);
    const res = await request(receiving.url).get('/');
    expect(res.status).toBe(401);
  });
});
