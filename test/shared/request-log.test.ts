import http from 'node:http';
import express from 'express';
import request from 'supertest';
import { requestLog } from '../../services/shared/request-log.js';
import { sendText } from '../../services/shared/send-text.js';
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
    app.use(requestLog(captured.logger, () => project));
    app.get('/hello', (_req, res) => {
      res.set('Content-Length', '5').end('hello');
    });
    app.get('/slow', (_req, res) => {
      setTimeout(() => res.end('late'), 300).unref();
    });
    app.get('/text', (_req, res) => sendText(res, 'héllo'));
    app.get('/held', (_req, res) => {
      res.locals.held = true; // a long poll, as the emulator's wait_for_change
      setTimeout(() => res.end('changed'), 300).unref();
    });
    app.get('/teapot', (_req, res) => {
      res.status(418).end('short and stout');
    });
    app.get('/broken', (_req, res) => {
      res.status(503).end('down');
    });
    app.get('/failed', (_req, res) => {
      res.status(500).end('failed');
    });
    app.get('/health', (_req, res) => {
      res.end('ok');
    });
    app.get('/chunked', (_req, res) => {
      res.write('part one, ');
      res.end('part two');
    });
    app.get('/caller/:kind', (req, res) => {
      res.locals.caller =
        req.params.kind === 'email'
          ? { email: 'sa@p.iam.gserviceaccount.com', subject: '123' }
          : { subject: '456' };
      res.end('hi');
    });
    const mounted = express.Router();
    mounted.get('/inner', (_req, res) => {
      res.end('inner');
    });
    app.use('/mounted', mounted);
    running = await serve(app);
  });
  afterAll(() => running.close());
  beforeEach(() => {
    project = 'my-project';
  });

  interface LogLine {
    [key: string]: unknown;
    severity?: string;
    message: string;
    httpRequest: { [key: string]: unknown; latency: string };
  }
  const last = () => JSON.parse(lines.at(-1)!) as LogLine;
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  it('logs a success at INFO with the response size and no query string', async () => {
    await request(running.url).get('/hello?token=secret').set('User-Agent', 'ua/1');
    await settle();
    expect(last()).toMatchObject({
      severity: 'INFO',
      message: expect.stringMatching(/^GET \/hello 200 in \d+ ms$/),
      httpRequest: {
        requestUrl: '/hello',
        status: 200,
        responseSize: '5',
        userAgent: 'ua/1',
        remoteIp: expect.stringMatching(/127\.0\.0\.1/),
      },
    });
    expect(lines.at(-1)).not.toContain('secret');
    expect(last().httpRequest.protocol).toBe('HTTP/1.1');
    // A token a client put in its User-Agent is no more logged than one in its path.
    await request(running.url).get('/hello').set('User-Agent', 'tool/1 ya29.a0AfH6SMBx-secret');
    await settle();
    expect(last().httpRequest.userAgent).toBe('tool/1 [token]');
    expect(last()).not.toHaveProperty('err');
    expect(last()).not.toHaveProperty('caller');
  });

  it("logs the size of the services' own text answers (sendText), in bytes", async () => {
    await request(running.url).get('/text').expect(200, 'héllo');
    await settle();
    expect(last().httpRequest.responseSize).toBe('6');
  });

  it('leaves out responseSize when the answer has no Content-Length (chunked)', async () => {
    const res = await request(running.url).get('/chunked');
    expect(res.headers['transfer-encoding']).toBe('chunked');
    await settle();
    expect(last().httpRequest.status).toBe(200);
    expect(last().httpRequest).not.toHaveProperty('responseSize');
  });

  it('logs /health at DEBUG, so probes do not fill the INFO log', async () => {
    await request(running.url).get('/health');
    await settle();
    expect([last().severity, last().httpRequest.requestUrl]).toEqual(['DEBUG', '/health']);
  });

  it('measures latency in seconds and the message in milliseconds', async () => {
    await new Promise<void>((resolve) => {
      http.get(`${running.url}/slow`, (res) => res.resume().on('end', resolve));
    });
    await settle();
    const seconds = Number(/^(\d+\.\d{3})s$/.exec(last().httpRequest.latency)![1]);
    const ms = Number(/ in (\d+) ms$/.exec(last().message)![1]);
    expect(seconds).toBeGreaterThanOrEqual(0.29);
    expect(seconds).toBeLessThan(10);
    expect(Math.abs(ms - seconds * 1000)).toBeLessThanOrEqual(2);
  });

  it('names the caller by email, or by subject when the token has no email', async () => {
    await request(running.url).get('/caller/email');
    await settle();
    expect(last().caller).toBe('sa@p.iam.gserviceaccount.com');
    await request(running.url).get('/caller/subject');
    await settle();
    expect(last().caller).toBe('subject 456');
  });

  it('logs the full path of a route mounted under a prefix', async () => {
    await request(running.url).get('/mounted/inner');
    await settle();
    expect(last().httpRequest.requestUrl).toBe('/mounted/inner');
  });

  it('logs a 4xx at WARNING and a 5xx at ERROR', async () => {
    await request(running.url).get('/teapot');
    await settle();
    expect([last().severity, last().httpRequest.status]).toEqual(['WARNING', 418]);
    await request(running.url).get('/broken');
    await settle();
    expect([last().severity, last().httpRequest.status]).toEqual(['ERROR', 503]);
    await request(running.url).get('/failed');
    await settle();
    expect([last().severity, last().httpRequest.status]).toEqual(['ERROR', 500]);
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
    expect(last()).toMatchObject({
      severity: 'WARNING',
      message: expect.stringMatching(/^GET \/slow 200 \(client went away\) in \d+ ms$/),
    });
  });

  it('a client that stops waiting on a long poll is no problem: logged at the success level, saying so', async () => {
    const req = http.get(`${running.url}/held`);
    req.on('error', () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    req.destroy();
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(last()).toMatchObject({
      severity: 'INFO',
      message: expect.stringMatching(/^GET \/held: the client stopped waiting after \d+ ms$/),
    });
    // Answered in full, a long poll is logged as any request.
    await request(running.url).get('/held').expect(200, 'changed');
    await settle();
    expect(last()).toMatchObject({
      severity: 'INFO',
      message: expect.stringMatching(/^GET \/held 200 in \d+ ms$/),
    });
  });

  it('writes the trace fields only when the project is known', async () => {
    await request(running.url).get('/hello').set('X-Cloud-Trace-Context', `${TRACE}/1;o=1`);
    await settle();
    expect(last()['logging.googleapis.com/trace']).toBe(`projects/my-project/traces/${TRACE}`);
    expect(last()['logging.googleapis.com/spanId']).toBe('0000000000000001');
    expect(last()['logging.googleapis.com/trace_sampled']).toBe(true);
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
    let projectAsked = 0;
    const projectId = () => {
      projectAsked += 1;
      return undefined;
    };
    app.use(requestLog(createLogger('emulator', 'info', destination), projectId, 'debug'));
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
      expect(written.map((l) => JSON.parse(l).message)).toEqual([
        expect.stringMatching(/^GET \/missing 404/),
      ]);
      // A line below the level costs nothing: not even the project is looked up.
      expect(projectAsked).toBe(1);
    } finally {
      await quiet.close();
    }
  });
});
