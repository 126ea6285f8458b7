import http from 'node:http';
import express from 'express';
import request from 'supertest';
import { requestLog } from '../../services/shared/request-log.js';
import { createLogger } from '../../services/shared/logger.js';
import { capturingLogger } from '../helpers/logs.js';
import { serve, type Running } from '../helpers/servers.js';
import { Writable } from 'node:stream';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

/** One app, one request log; each test reads the line its request wrote. */
describe('requestLog', () => {
  let running: Running;
  let lines: string[];
  let project: string | undefined;
  beforeAll(async () => {
    const captured = capturingLogger();
    lines = captured.lines;
    const app = express();
    app.use(requestLog(captured.logger, { projectId: () => project }));
    app.get('/hello', (_req, res) => {
      res.set('Content-Length', '5').end('hello');
    });
    app.get('/slow', (_req, res) => {
      setTimeout(() => res.end('late'), 300).unref();
    });
    app.get('/teapot', (_req, res) => {
      res.status(418).end('short and stout');
    });
    app.get('/broken', (_req, res) => {
      res.status(503).end('down');
    });
    running = await serve(app);
  });
  afterAll(() => running.close());
  beforeEach(() => {
    project = 'my-project';
  });

  const last = () => JSON.parse(lines.at(-1)!) as Record<string, any>;
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  it('logs a success at INFO with the response size and no query string', async () => {
    await request(running.url).get('/hello?token=secret').set('User-Agent', 'ua/1');
    await settle();
    expect(last()).toMatchObject({
      severity: 'INFO',
      message: expect.stringMatching(/^GET \/hello 200 in \d+ ms$/),
      httpRequest: { requestUrl: '/hello', status: 200, responseSize: '5', userAgent: 'ua/1', remoteIp: expect.stringMatching(/127\.0\.0\.1/) },
    });
    expect(lines.at(-1)).not.toContain('secret');
  });

  it('logs a 4xx at WARNING and a 5xx at ERROR', async () => {
    await request(running.url).get('/teapot');
    await settle();
    expect([last().severity, last().httpRequest.status]).toEqual(['WARNING', 418]);
    await request(running.url).get('/broken');
    await settle();
    expect([last().severity, last().httpRequest.status]).toEqual(['ERROR', 503]);
  });

  it('says when the client went away before the answer, at WARNING', async () => {
    await new Promise<void>((resolve) => {
      const req = http.get(`${running.url}/slow`);
      req.on('error', () => resolve());
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 50);
    });
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(last()).toMatchObject({ severity: 'WARNING', message: expect.stringMatching(/^GET \/slow 200 \(client went away\) in \d+ ms$/) });
  });

  it('writes the trace fields only when the project is known', async () => {
    await request(running.url).get('/hello').set('X-Cloud-Trace-Context', `${TRACE}/1;o=1`);
    await settle();
    expect(last()['logging.googleapis.com/trace']).toBe(`projects/my-project/traces/${TRACE}`);
    project = undefined;
    await request(running.url).get('/hello').set('X-Cloud-Trace-Context', `${TRACE}/1;o=1`);
    await settle();
    expect(Object.keys(last()).filter((k) => k.startsWith('logging.googleapis.com'))).toEqual([]);
  });

  it('logs successes at the level asked for (the emulator logs them at DEBUG)', async () => {
    const written: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        written.push(String(chunk));
        done();
      },
    });
    const app = express();
    app.use(requestLog(createLogger('emulator', { level: 'info', destination }), { projectId: () => undefined, level: 'debug' }));
    app.get('/', (_req, res) => {
      res.end('ok');
    });
    app.get('/missing', (_req, res) => {
      res.status(404).end();
    });
    const quiet = await serve(app);
    try {
      await request(quiet.url).get('/');
      await request(quiet.url).get('/missing');
      await settle();
      expect(written.map((l) => JSON.parse(l).message)).toEqual([expect.stringMatching(/^GET \/missing 404/)]);
    } finally {
      await quiet.close();
    }
  });
});
