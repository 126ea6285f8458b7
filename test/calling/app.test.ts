import type { IncomingHttpHeaders } from 'node:http';
import express from 'express';
import request from 'supertest';
import { createCallingApp } from '../../services/calling/app.js';
import type { AuthMode, TokenHeader } from '../../services/calling/config.js';
import type { IdTokenSource } from '../../services/calling/id-token-source.js';
import { createUpstreamClient, type UpstreamClient } from '../../services/calling/upstream-client.js';
import { IdTokenUnavailableError } from '../../services/shared/errors.js';
import { silentLogger } from '../helpers/logs.js';
import { serve, type Running } from '../helpers/servers.js';

/** A fake token source: one token per audience, or a failure. */
const tokens = (fail = false): IdTokenSource & { audiences: string[] } => {
  const audiences: string[] = [];
  return {
    audiences,
    async getIdToken(audience) {
      audiences.push(audience);
      if (fail)
        throw new IdTokenUnavailableError(audience, 'the metadata server at 127.0.0.1:9 refused the connection', 'Set GCE_METADATA_HOST.');
      return `token-for-${audience}`;
    },
  };
};

describe('calling over HTTP', () => {
  let upstream: Running;
  let seen: IncomingHttpHeaders[];
  let answer: { status: number; body: string };
  let client: UpstreamClient;
  let calling: Running | undefined;

  beforeAll(async () => {
    const app = express();
    app.get('/', (req, res) => {
      seen.push(req.headers);
      res.status(answer.status).type('text/plain').send(answer.body);
    });
    upstream = await serve(app);
    client = createUpstreamClient({ timeoutMs: 2000 });
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
    client.close();
    await upstream.close();
  });

  const start = async (
    source: IdTokenSource,
    auth: AuthMode = 'id-token',
    audience = 'https://receiving.example',
    tokenHeader?: TokenHeader,
  ) => {
    calling = await serve(
      createCallingApp({
        url: new URL(upstream.url),
        audience,
        auth,
        ...(tokenHeader ? { tokenHeader } : {}),
        idTokens: source,
        upstream: client,
        logger: silentLogger(),
      }),
    );
    return calling.url;
  };

  it('calls URL with a bearer token for the audience and relays the answer', async () => {
    const source = tokens();
    const res = await request(await start(source)).get('/');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.text).toBe('Second service says: Hello World!');
    expect(source.audiences).toEqual(['https://receiving.example']);
    expect(seen[0]!.authorization).toBe('Bearer token-for-https://receiving.example');
  });

  it.each([
    ['authorization', 'Bearer token-for-a', undefined],
    ['x-serverless-authorization', undefined, 'Bearer token-for-a'],
    ['both', 'Bearer token-for-a', 'Bearer token-for-a'],
  ] as const)('with TOKEN_HEADER=%s puts the token where Cloud Run expects it', async (tokenHeader, authorization, serverless) => {
    await request(await start(tokens(), 'id-token', 'a', tokenHeader)).get('/');
    expect(seen[0]!.authorization).toBe(authorization);
    expect(seen[0]!['x-serverless-authorization']).toBe(serverless);
  });

  it('sends no token with AUTH=none', async () => {
    const source = tokens();
    await request(await start(source, 'none')).get('/');
    expect(seen[0]!.authorization).toBeUndefined();
    expect(source.audiences).toEqual([]);
  });

  it('never forwards the inbound Authorization, cookies or other credentials', async () => {
    await request(await start(tokens()))
      .get('/')
      .set('Authorization', 'Bearer the-end-users-token')
      .set('Cookie', 'session=secret')
      .set('Proxy-Authorization', 'Basic abc')
      .set('X-Serverless-Authorization', 'Bearer other');
    const headers = seen[0]!;
    expect(headers.authorization).toBe('Bearer token-for-https://receiving.example');
    expect(headers.cookie).toBeUndefined();
    expect(headers['proxy-authorization']).toBeUndefined();
    expect(headers['x-serverless-authorization']).toBeUndefined();
  });

  it.each([401, 403, 404, 500, 503])('answers 502 saying what came back when receiving answers %i', async (status) => {
    answer = { status, body: 'Forbidden page' };
    const res = await request(await start(tokens())).get('/');
    expect(res.status).toBe(502);
    expect(res.text).toContain(`answered ${status}`);
    expect(res.text).not.toContain('Second service says');
  });

  it('answers RFC 9457 problem details to a client that asks for JSON', async () => {
    answer = { status: 403, body: 'Forbidden page' };
    const res = await request(await start(tokens()))
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
      caller: 'an identity its token does not name',
      audience: 'https://receiving.example',
      fix: expect.stringContaining('--role=roles/run.invoker'),
    });
  });

  it('answers 503 with a clear message when no token can be had', async () => {
    const res = await request(await start(tokens(true))).get('/');
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
    expect(res.text).toMatch(/could not get an identity token for audience https:\/\/receiving.example/);
    expect(res.text).toMatch(/GCE_METADATA_HOST/);
    expect(seen).toHaveLength(0);
  });

  it('answers /health without calling anyone', async () => {
    const res = await request(await start(tokens(true))).get('/health');
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(0);
  });
});
