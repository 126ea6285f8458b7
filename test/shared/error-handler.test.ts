import express from 'express';
import request from 'supertest';
import { errorHandler, notFound } from '../../services/shared/error-handler.js';
import {
  IdTokenUnavailableError,
  TokenInvalidError,
  UpstreamRefusedError,
} from '../../services/shared/errors.js';
import { requestLog } from '../../services/shared/request-log.js';
import { capturingLogger } from '../helpers/logs.js';
import { serve, type Running } from '../helpers/servers.js';

/** An app whose routes fail in every way the services can, behind the shared error middleware. */
describe('errorHandler', () => {
  let running: Running;
  let lines: string[];
  beforeAll(async () => {
    const captured = capturingLogger();
    lines = captured.lines;
    const app = express();
    app.use(requestLog(captured.logger, () => undefined));
    app.use(express.json());
    app.get('/invalid', () => {
      throw new TokenInvalidError('token has expired', { cause: new Error('jose said exp') });
    });
    app.get('/refused', () => {
      throw new UpstreamRefusedError('UPSTREAM_FORBIDDEN', 'receiving refused the caller', {
        upstreamStatus: 403,
        caller: 'a@b.c',
      });
    });
    app.get('/no-token', () => {
      throw new IdTokenUnavailableError(
        'https://r.example',
        'the metadata server at h answered 500',
        'Check it.',
      );
    });
    app.get('/bug', () => {
      throw new Error('database password is hunter2');
    });
    app.get('/bug-with-status', () => {
      throw Object.assign(new Error('upstream library said 503 with secrets'), { status: 503 });
    });
    app.get('/status/:kind', (req) => {
      const status = { 'string-404': '404', '399': 399, '499': 499, '600': 600 }[req.params.kind];
      throw Object.assign(new Error('a library error with a status of its own'), { status });
    });
    app.post('/json', (_req, res) => {
      res.send('parsed');
    });
    app.use(notFound);
    app.use(errorHandler());
    running = await serve(app);
  });
  afterAll(() => running.close());

  const lastLine = () => JSON.parse(lines.at(-1)!) as Record<string, unknown>;

  it('answers a ServiceError with its status, headers and message as text', async () => {
    const res = await request(running.url).get('/invalid');
    expect(res.status).toBe(401);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.headers['www-authenticate']).toBe(
      'Bearer error="invalid_token", error_description="token has expired"',
    );
    expect(res.text).toBe('invalid token: token has expired\n');
  });

  it.each(['application/json', 'application/problem+json'])(
    'answers RFC 9457 problem details to Accept: %s',
    async (accept) => {
      const res = await request(running.url).get('/refused').set('Accept', accept);
      expect(res.status).toBe(502);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(res.text)).toEqual({
        type: 'urn:cloudrun-service-auth:problem:upstream-forbidden',
        title: 'The receiving service refused this caller',
        status: 502,
        detail: 'receiving refused the caller',
        code: 'UPSTREAM_FORBIDDEN',
        upstreamStatus: 403,
        caller: 'a@b.c',
      });
    },
  );

  it('prefers text when the client accepts anything', async () => {
    const res = await request(running.url).get('/no-token').set('Accept', '*/*');
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.text).toBe(
      'could not get an identity token for audience https://r.example: the metadata server at h answered 500. Check it.\n',
    );
  });

  it('logs the problem with its code, detail and cause on the request line', async () => {
    await request(running.url).get('/invalid');
    expect(lastLine()).toMatchObject({
      severity: 'WARNING',
      message: 'GET /invalid 401 in ' + String(lastLine().message).split(' in ')[1],
      error: {
        code: 'TOKEN_INVALID',
        detail: 'invalid token: token has expired',
        cause: 'jose said exp',
      },
    });
  });

  it('answers a bug with a generic 500 that leaks nothing, and logs it at ERROR with the error', async () => {
    const text = await request(running.url).get('/bug');
    expect([text.status, text.text]).toEqual([500, 'internal error\n']);
    const logged = lastLine();
    expect(logged.severity).toBe('ERROR');
    expect(JSON.stringify(logged.err)).toContain('database password is hunter2');
    const json = await request(running.url).get('/bug').set('Accept', 'application/json');
    expect(JSON.parse(json.text)).toEqual({
      type: 'about:blank',
      title: 'Internal error',
      status: 500,
    });
    expect(json.text).not.toContain('hunter2');
  });

  it('does not pass a 5xx status carried by a foreign error through', async () => {
    const res = await request(running.url).get('/bug-with-status');
    expect([res.status, res.text]).toEqual([500, 'internal error\n']);
  });

  it('passes through only a 4xx status that is a number, answering 500 for anything else', async () => {
    const answers: Record<string, [number, string]> = {};
    for (const kind of ['string-404', '399', '499', '600']) {
      const res = await request(running.url).get(`/status/${kind}`);
      answers[kind] = [res.status, res.text];
    }
    expect(answers).toEqual({
      'string-404': [500, 'internal error\n'],
      399: [500, 'internal error\n'],
      499: [499, 'bad request\n'],
      600: [500, 'internal error\n'],
    });
  });

  it('answers a malformed JSON body with 400 bad request, not 500', async () => {
    const res = await request(running.url)
      .post('/json')
      .set('Content-Type', 'application/json')
      .send('{"a":');
    expect([res.status, res.text]).toEqual([400, 'bad request\n']);
    const json = await request(running.url)
      .post('/json')
      .set('Content-Type', 'application/json')
      .set('Accept', 'application/json')
      .send('{"a":');
    expect(JSON.parse(json.text)).toEqual({
      type: 'about:blank',
      title: 'Bad request',
      status: 400,
    });
    // The client's mistake, not a bug: no error with a stack on its log line.
    expect(lastLine()).toMatchObject({ severity: 'WARNING' });
    expect(lastLine()).not.toHaveProperty('err');
  });

  it('answers 404 naming the path', async () => {
    const res = await request(running.url).get('/nowhere?token=secret');
    expect([res.status, res.text]).toEqual([404, 'no route for /nowhere\n']);
    expect(lines.at(-1)).not.toContain('secret');
  });
});
