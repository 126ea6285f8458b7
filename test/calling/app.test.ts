import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { decodeJwt } from 'jose';
import request from 'supertest';
import { freePort } from '../../scripts/lib/processes.js';
import { capturingLogger } from '../helpers/logs.js';
import {
  serve,
  startCalling,
  startEmulator,
  type Running,
  type RunningEmulator,
} from '../helpers/servers.js';

describe('calling over HTTP', () => {
  let upstream: Running;
  let emulator: RunningEmulator;
  let seen: IncomingHttpHeaders[];
  let answer: { status: number; body: string; challenge?: string };
  let calling: Running | undefined;
  /** The audiences calling asked the emulator for, and the token it got. */
  const audienceOf = (header: string | string[] | undefined) =>
    decodeJwt(String(header).replace(/^Bearer /, '')).aud;

  beforeAll(async () => {
    const app = express();
    app.get('/', (req, res) => {
      seen.push(req.headers);
      if (answer.challenge !== undefined) res.set('WWW-Authenticate', answer.challenge);
      res.status(answer.status).type('text/plain').send(answer.body);
    });
    upstream = await serve(app);
    emulator = await startEmulator();
  });
  beforeEach(() => {
    seen = [];
    answer = { status: 200, body: 'Hello World!' };
  });
  afterEach(async () => {
    await calling?.close();
    calling = undefined;
  });
  afterAll(async () => {
    await upstream.close();
    await emulator.close();
  });

  /** calling from its env; metadata: where its metadata server is (the emulator unless given). */
  const start = async (env: Record<string, string> = {}, metadata = emulator.host) => {
    calling = await startCalling({
      URL: upstream.url,
      AUDIENCE: 'https://receiving.example',
      GCE_METADATA_HOST: metadata,
      ...env,
    });
    return calling.url;
  };
  const noMetadataServer = async () => `127.0.0.1:${await freePort()}`;

  it('calls URL with a bearer token for the audience and relays the answer', async () => {
    const res = await request(await start()).get('/');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.text).toBe('Second service says: Hello World!');
    expect(audienceOf(seen[0]!.authorization)).toBe('https://receiving.example');
  });

  it.each([
    ['authorization', true, false],
    ['x-serverless-authorization', false, true],
    ['both', true, true],
  ] as const)(
    'with TOKEN_HEADER=%s puts the token where Cloud Run expects it',
    async (tokenHeader, authorization, serverless) => {
      await request(await start({ AUDIENCE: 'a', TOKEN_HEADER: tokenHeader })).get('/');
      const headers = seen[0]!;
      expect([
        headers.authorization !== undefined,
        headers['x-serverless-authorization'] !== undefined,
      ]).toEqual([authorization, serverless]);
      for (const header of [headers.authorization, headers['x-serverless-authorization']]) {
        if (header !== undefined) expect(audienceOf(header)).toBe('a');
      }
      if (tokenHeader === 'both')
        expect(headers.authorization).toBe(headers['x-serverless-authorization']);
    },
  );

  it('relays any 2xx as a 200, and says nothing of its framework or of freshness', async () => {
    answer = { status: 299, body: 'Hello World!' };
    const res = await request(await start()).get('/');
    expect([res.status, res.text]).toEqual([200, 'Second service says: Hello World!']);
    expect(res.headers).not.toHaveProperty('x-powered-by');
    expect(res.headers).not.toHaveProperty('etag');
  });

  it('sends no token with AUTH=none, and asks no metadata server for one', async () => {
    const res = await request(await start({ AUTH: 'none' }, await noMetadataServer())).get('/');
    expect(res.status).toBe(200);
    expect(seen[0]!.authorization).toBeUndefined();
  });

  it('never forwards the inbound Authorization, cookies or other credentials', async () => {
    await request(await start())
      .get('/')
      .set('Authorization', 'Bearer the-end-users-token')
      .set('Cookie', 'session=secret')
      .set('Proxy-Authorization', 'Basic abc')
      .set('X-Serverless-Authorization', 'Bearer other');
    const headers = seen[0]!;
    expect(audienceOf(headers.authorization)).toBe('https://receiving.example');
    expect(headers.cookie).toBeUndefined();
    expect(headers['proxy-authorization']).toBeUndefined();
    expect(headers['x-serverless-authorization']).toBeUndefined();
  });

  it.each([401, 403, 404, 500, 503])(
    'answers 502 saying what came back when receiving answers %i',
    async (status) => {
      answer = { status, body: 'Forbidden page' };
      const res = await request(await start()).get('/');
      expect(res.status).toBe(502);
      expect(res.text).toContain(`answered ${status}`);
      expect(res.text).not.toContain('Second service says');
    },
  );

  it("passes on receiving's reason for a 401, from its WWW-Authenticate, with no ETag on the answer", async () => {
    answer = {
      status: 401,
      body: 'Unauthorized',
      challenge: 'Bearer error="invalid_token", error_description="token has expired"',
    };
    const res = await request(await start()).get('/');
    expect(res.status).toBe(502);
    expect(res.text).toContain('Receiving said: token has expired.');
    expect(res.headers).not.toHaveProperty('etag');
  });

  it('answers RFC 9457 problem details to a client that asks for JSON', async () => {
    answer = { status: 403, body: 'Forbidden page' };
    const res = await request(await start())
      .get('/')
      .set('Accept', 'application/json');
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(res.text)).toEqual({
      type: 'urn:cloudrun-service-auth:problem:upstream-forbidden',
      title: 'The receiving service refused this caller',
      status: 502,
      detail: expect.stringContaining('answered 403'),
      code: 'UPSTREAM_FORBIDDEN',
      upstreamStatus: 403,
      caller: emulator.config.serviceAccount,
      audience: 'https://receiving.example',
      fix: expect.stringContaining('--role=roles/run.invoker'),
    });
  });

  it('keeps one connection to receiving alive across requests', async () => {
    let connections = 0;
    const count = () => (connections += 1);
    upstream.server.on('connection', count);
    try {
      const url = await start();
      for (let i = 0; i < 3; i += 1) await request(url).get('/').expect(200);
      expect(connections).toBe(1);
    } finally {
      upstream.server.off('connection', count);
    }
  });

  it('logs what happened on the wire as the cause of a 502', async () => {
    const { logger, lines } = capturingLogger();
    calling = await startCalling(
      { URL: `http://127.0.0.1:${await freePort()}/`, AUTH: 'none' },
      logger,
    );
    await request(calling.url).get('/').expect(502);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const line = lines
      .map((l) => JSON.parse(l) as { error?: { code: string; cause?: string } })
      .find((l) => l.error !== undefined);
    expect(line?.error).toMatchObject({
      code: 'UPSTREAM_UNREACHABLE',
      cause: 'could not be reached (the connection was refused)',
    });
  });

  it('calls an https URL over TLS, checking its certificate', async () => {
    const fixtures = new URL('../fixtures/tls/', import.meta.url);
    const tls = https.createServer({
      key: readFileSync(new URL('loopback.key', fixtures)),
      cert: readFileSync(new URL('loopback.crt', fixtures)),
    });
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = tls.address() as AddressInfo;
      calling = await startCalling({
        URL: `https://127.0.0.1:${port}/`,
        GCE_METADATA_HOST: emulator.host,
      });
      const res = await request(calling.url).get('/');
      // Node's own CAs do not hold the self-signed loopback certificate: refused by TLS, not sent in clear.
      expect(res.status).toBe(502);
      expect(res.text).toContain('could not be reached (TLS failed: DEPTH_ZERO_SELF_SIGNED_CERT)');
    } finally {
      await new Promise((resolve) => tls.close(resolve));
    }
  });

  it('answers 503 with a clear message when no token can be had', async () => {
    const res = await request(await start({}, await noMetadataServer())).get('/');
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
    expect(res.text).toMatch(
      /could not get an identity token for audience https:\/\/receiving.example/,
    );
    expect(res.text).toMatch(/GCE_METADATA_HOST/);
    expect(seen).toHaveLength(0);
  });

  it('answers /health without calling anyone', async () => {
    const res = await request(await start({}, await noMetadataServer())).get('/health');
    expect([res.status, res.text]).toEqual([200, 'ok\n']);
    expect(seen).toHaveLength(0);
  });
});
