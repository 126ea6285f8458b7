import request from 'supertest';
import { freePort } from '../../scripts/lib/processes.js';
import { capturingLogger } from '../helpers/logs.js';
import {
  startCalling,
  startEmulator,
  startReceiving,
  type Running,
  type RunningEmulator,
} from '../helpers/servers.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
type Line = Record<string, unknown> & { httpRequest?: Record<string, unknown> };

/** Both services over loopback, each logging to its own capture, as Cloud Logging would read them. */
describe('Cloud Logging lines from the chain', () => {
  let emulator: RunningEmulator;
  let calling: Running;
  let receiving: Running;
  let callingLines: string[];
  let receivingLines: string[];
  const parsed = (lines: string[]): Line[] => lines.map((l) => JSON.parse(l) as Line);
  const requestLines = (lines: string[]): Line[] =>
    parsed(lines).filter((l) => l.httpRequest !== undefined);

  beforeAll(async () => {
    emulator = await startEmulator();
    const port = await freePort();
    const audience = `http://127.0.0.1:${port}`;
    const receivingLog = capturingLogger();
    receivingLines = receivingLog.lines;
    const project = { GOOGLE_CLOUD_PROJECT: 'my-project' };
    const receivingEnv = {
      ...project,
      AUDIENCES: audience,
      JWKS_URL: emulator.jwksUrl.href,
      INVOKERS: `serviceAccount:${emulator.config.serviceAccount}`,
    };
    receiving = await startReceiving(receivingEnv, receivingLog.logger, port);
    const callingLog = capturingLogger();
    callingLines = callingLog.lines;
    calling = await startCalling(
      { ...project, URL: audience, GCE_METADATA_HOST: emulator.host },
      callingLog.logger,
    );
  });
  beforeEach(() => {
    callingLines.length = 0;
    receivingLines.length = 0;
  });
  afterAll(async () => {
    await calling.close();
    await receiving.close();
    await emulator.close();
  });

  it('writes one JSON line per request with severity, message, httpRequest and the trace', async () => {
    await request(calling.url)
      .get('/?q=1')
      .set('traceparent', `00-${TRACE}-00f067aa0ba902b7-01`)
      .set('User-Agent', 'test-agent');
    const [line, ...rest] = requestLines(callingLines);
    expect(rest).toEqual([]);
    expect(line).toMatchObject({
      severity: 'INFO',
      message: expect.stringMatching(/^GET \/ 200 in \d+ ms$/),
      'logging.googleapis.com/trace': `projects/my-project/traces/${TRACE}`,
      'logging.googleapis.com/spanId': '00f067aa0ba902b7',
      'logging.googleapis.com/trace_sampled': true,
      httpRequest: {
        requestMethod: 'GET',
        requestUrl: '/',
        status: 200,
        latency: expect.stringMatching(/^\d+\.\d{3}s$/),
        protocol: 'HTTP/1.1',
        userAgent: 'test-agent',
        remoteIp: expect.any(String),
      },
    });
    expect(typeof line!.time).toBe('string');
  });

  it('shows the same trace id in both services, and the caller on receiving', async () => {
    await request(calling.url).get('/').set('X-Cloud-Trace-Context', `${TRACE}/12345;o=1`);
    const [receivingLine] = requestLines(receivingLines);
    const [callingLine] = requestLines(callingLines);
    expect(callingLine!['logging.googleapis.com/trace']).toBe(
      `projects/my-project/traces/${TRACE}`,
    );
    expect(receivingLine!['logging.googleapis.com/trace']).toBe(
      `projects/my-project/traces/${TRACE}`,
    );
    expect(receivingLine!.caller).toBe(emulator.config.serviceAccount);
    // receiving's span is calling's outbound call, a child of the inbound span.
    expect(callingLine!['logging.googleapis.com/spanId']).toBe(
      (12345).toString(16).padStart(16, '0'),
    );
    expect(receivingLine!['logging.googleapis.com/spanId']).toMatch(/^[\da-f]{16}$/);
    expect(receivingLine!['logging.googleapis.com/spanId']).not.toBe(
      callingLine!['logging.googleapis.com/spanId'],
    );
  });

  it('logs a refusal at WARNING with its code and reason, and calling at ERROR for the 502', async () => {
    await request(receiving.url).get('/').set('Authorization', 'Bearer not-a-token');
    const [line] = requestLines(receivingLines);
    expect(line).toMatchObject({
      severity: 'WARNING',
      error: { code: 'TOKEN_INVALID', detail: 'invalid token: token is malformed' },
      httpRequest: { status: 401 },
    });
    expect(receivingLines.join('\n')).not.toContain('not-a-token');
  });

  it('logs /health at DEBUG, so health checks stay out of INFO logs', async () => {
    await request(calling.url).get('/health');
    expect(requestLines(callingLines).map((l) => l.severity)).toEqual(['DEBUG']);
  });
});
