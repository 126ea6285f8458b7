import request from 'supertest';
import { createMetadataEmulator, type EmulatorStats } from '../../local/metadata-emulator/app.js';
import { loadReceivingConfig } from '../../services/receiving/config.js';
import { createReceiving } from '../../services/receiving/app.js';
import { freePort } from '../../scripts/lib/processes.js';
import { faultyFront, rawServer, resettingServer } from '../helpers/faults.js';
import { silentLogger } from '../helpers/logs.js';
import {
  serve,
  startCalling as serveCalling,
  startEmulator,
  type Running,
  type RunningEmulator,
} from '../helpers/servers.js';

/**
 * The chain over real HTTP on loopback, with the metadata server and the receiving service
 * misbehaving on demand. calling must answer each fault with the right status and words, stay up,
 * and recover without a restart once the fault clears.
 */
describe('calling under bursts and faults', () => {
  let emulator: RunningEmulator;
  let metadata: ReturnType<typeof faultyFront>;
  let metadataServer: Running;
  let identityStats: EmulatorStats;
  let receivingPort: number;
  let receivingFront: ReturnType<typeof faultyFront>;
  let receiving: Running | undefined;
  const running: Running[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  const startReceiving = async () => {
    receiving = await serve(receivingFront.app, receivingPort);
  };
  const stopReceiving = async () => {
    await receiving?.close();
    receiving = undefined;
  };

  /** A fresh calling service (cold token cache), as main.ts builds it from its env. */
  const startCalling = async (metadataHost = metadataServer.host, upstreamTimeoutMs = 500) => {
    const calling = await serveCalling({
      URL: `http://127.0.0.1:${receivingPort}/`,
      GCE_METADATA_HOST: metadataHost,
      // Named, so that calling asks the metadata server for tokens only (not for the project id).
      GOOGLE_CLOUD_PROJECT: 'local-project',
      UPSTREAM_TIMEOUT_MS: String(upstreamTimeoutMs),
    });
    running.push(calling);
    return calling.url;
  };

  const expectHello = async (url: string) => {
    const res = await request(url).get('/');
    expect([res.status, res.text]).toEqual([200, 'Second service says: Hello World!']);
  };

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    emulator = await startEmulator();
    const inner = createMetadataEmulator({
      config: emulator.config,
      key: emulator.key,
      logger: silentLogger(),
    });
    identityStats = inner.stats;
    // Slower than calling's 2 s per attempt: each attempt times out.
    metadata = faultyFront(inner.app, 6000);
    metadataServer = await serve(metadata.app);
    receivingPort = await freePort();
    const config = loadReceivingConfig({
      AUDIENCES: `http://127.0.0.1:${receivingPort}`,
      JWKS_URL: emulator.jwksUrl.href,
    });
    receivingFront = faultyFront(createReceiving(config, silentLogger()), 5000);
    await startReceiving();
  });
  afterEach(() => {
    metadata.fault = 'none';
    receivingFront.fault = 'none';
  });
  afterAll(async () => {
    await Promise.all(running.map((r) => r.close()));
    await stopReceiving();
    await metadataServer.close();
    await emulator.close();
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).toEqual([]);
  });

  it('answers 200 concurrent requests on a fresh calling service with one identity request', async () => {
    const url = await startCalling();
    const before = identityStats.identityRequests;
    const answers = await Promise.all(
      Array.from({ length: 200 }, () =>
        fetch(`${url}/`).then(async (r) => [r.status, await r.text()]),
      ),
    );
    expect(answers.filter(([status]) => status !== 200)).toEqual([]);
    expect(identityStats.identityRequests - before).toBe(1);
  });

  describe('metadata server faults: 503 with Retry-After, then recovery once the fault clears', () => {
    it.each([
      ['slow', 'did not answer within'],
      ['error-500', 'answered 500'],
      ['no-flavor', 'answered without Metadata-Flavor: Google'],
    ] as const)('%s', async (fault, words) => {
      const url = await startCalling();
      metadata.fault = fault;
      const res = await request(url).get('/');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toMatch(/^\d+$/);
      expect(res.text).toContain('could not get an identity token for audience');
      expect(res.text).toContain(words);
      metadata.fault = 'none';
      await expectHello(url);
    });

    it('slow: the 503 names the whole wait across attempts, not one attempt’s 2 s', async () => {
      const url = await startCalling();
      metadata.fault = 'slow';
      const res = await request(url).get('/');
      const [, waitedMs, attempts] =
        /did not answer within (\d+) ms \((\d) attempts\)/.exec(res.text) ?? [];
      expect(Number(waitedMs)).toBeGreaterThanOrEqual(4000);
      expect(Number(attempts)).toBeGreaterThanOrEqual(2);
      metadata.fault = 'none';
    });

    it('retries a transient failure: three attempts for a server answering 500', async () => {
      const url = await startCalling();
      metadata.fault = 'error-500';
      const before = metadata.requests;
      await request(url).get('/');
      expect(metadata.requests - before).toBe(3);
    });

    it('down at start-up, then back: the next requests succeed', async () => {
      const port = await freePort();
      const url = await startCalling(`127.0.0.1:${port}`);
      const down = await request(url).get('/');
      expect(down.status).toBe(503);
      expect(down.text).toContain(
        `the metadata server at 127.0.0.1:${port} could not be reached (the connection was refused)`,
      );
      const back = await serve(metadata.app, port);
      running.push(back);
      await expectHello(url);
    });
  });

  describe('receiving faults: which side failed, then recovery', () => {
    it('down: 502 saying it could not be reached', async () => {
      const url = await startCalling();
      await stopReceiving();
      const res = await request(url).get('/');
      expect(res.status).toBe(502);
      expect(res.text).toContain('could not be reached (the connection was refused)');
      await startReceiving();
      await expectHello(url);
    });

    it('silent past UPSTREAM_TIMEOUT_MS: 504', async () => {
      const url = await startCalling(metadataServer.host, 300);
      receivingFront.fault = 'silent';
      const res = await request(url).get('/');
      expect(res.status).toBe(504);
      expect(res.text).toContain('did not answer within 300 ms');
      receivingFront.fault = 'none';
      await expectHello(url);
    });

    it('answering 500: 502 saying so', async () => {
      const url = await startCalling();
      receivingFront.fault = 'error-500';
      const res = await request(url).get('/');
      expect(res.status).toBe(502);
      expect(res.text).toContain('answered 500');
      receivingFront.fault = 'none';
      await expectHello(url);
    });

    it.each([
      ['a Content-Length body', 'Content-Length: 100\r\n\r\nHello'],
      ['a chunked body', 'Transfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n'],
    ])(
      'dying mid-answer with %s: 502 saying the connection was reset, not a 504 after UPSTREAM_TIMEOUT_MS',
      async (_what, rest) => {
        const dying = await rawServer((socket) =>
          socket.end(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n${rest}`),
        );
        const port = receivingPort;
        receivingPort = Number(dying.url.port);
        const url = await startCalling(metadataServer.host, 10_000);
        receivingPort = port;
        try {
          const res = await request(url).get('/').set('Accept', 'application/json');
          expect([res.status, res.body.code]).toEqual([502, 'UPSTREAM_UNREACHABLE']);
          expect(res.body.detail).toContain('the connection was reset');
        } finally {
          await dying.close();
        }
      },
    );

    it('resetting connections: 502 saying the connection was reset', async () => {
      const url = await startCalling();
      await stopReceiving();
      const resetting = await resettingServer();
      const port = receivingPort;
      // Put the resetting server where receiving was.
      receivingPort = resetting.port;
      const resetUrl = await startCalling();
      receivingPort = port;
      const res = await request(resetUrl).get('/');
      expect(res.status).toBe(502);
      expect(res.text).toContain('the connection was reset');
      await resetting.close();
      await startReceiving();
      await expectHello(url);
    });
  });
});
