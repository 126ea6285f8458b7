import express from 'express';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { HttpFailure, httpGet } from '../../services/shared/http.js';
import { freePort } from '../../scripts/lib/processes.js';
import { rawServer } from '../helpers/faults.js';
import { serve } from '../helpers/servers.js';
import { timersOf } from '../helpers/timers.js';

const keepAlive = () => new http.Agent({ keepAlive: true });
const get = (url: URL, agent = keepAlive(), timeoutMs = 2000, maxBytes = 1024) =>
  httpGet(url, { agent, headers: { 'X-Test': '1' }, timeoutMs, maxBytes });
/** The failure a call ends with, as kind and message, and how long it took. */
async function failureOf(
  call: Promise<unknown>,
): Promise<{ kind: HttpFailure['kind']; message: string; cause: unknown; ms: number }> {
  const started = Date.now();
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HttpFailure);
  return {
    kind: (err as HttpFailure).kind,
    message: (err as HttpFailure).message,
    cause: (err as HttpFailure).cause,
    ms: Date.now() - started,
  };
}
const HEAD_OK = 'HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n';

describe('httpGet: the one HTTP client of the services', () => {
  it('answers status, headers and body as they came, sends the headers given, reuses one kept-alive connection, leaves no timer', async () => {
    const seen: (string | undefined)[] = [];
    const app = express();
    app.get('/', (req, res) => {
      seen.push(req.get('X-Test'));
      res.status(401).set('WWW-Authenticate', 'Bearer error="invalid_token"').send('nope: é');
    });
    const upstream = await serve(app);
    let connections = 0;
    upstream.server.on('connection', () => (connections += 1));
    const agent = keepAlive();
    try {
      const timers = await timersOf(60_000, async () => {
        for (let i = 0; i < 5; i += 1) {
          const answer = await httpGet(new URL(upstream.url), {
            agent,
            headers: { 'X-Test': '1' },
            timeoutMs: 60_000,
            maxBytes: 1024,
          });
          expect([answer.status, answer.body, answer.headers['www-authenticate']]).toEqual([
            401,
            'nope: é',
            'Bearer error="invalid_token"',
          ]);
        }
      });
      expect(timers).toEqual({ set: 5, uncleared: 0 });
      expect(connections).toBe(1);
      expect(seen).toEqual(['1', '1', '1', '1', '1']);
    } finally {
      agent.destroy();
      await upstream.close();
    }
  });

  it('does not follow a redirect, so headers never go where the server points', async () => {
    let stolen = 0;
    const elsewhere = express();
    elsewhere.use((_req, res) => {
      stolen += 1;
      res.send('thanks for the token');
    });
    const thief = await serve(elsewhere);
    const app = express();
    app.get('/', (_req, res) => res.redirect(302, `${thief.url}/collect`));
    const upstream = await serve(app);
    try {
      expect((await get(new URL(upstream.url))).status).toBe(302);
      expect(stolen).toBe(0);
    } finally {
      await upstream.close();
      await thief.close();
    }
  });

  it('a refused connection: refused, at once, an HttpFailure carrying the error Node gave', async () => {
    const call = get(new URL(`http://127.0.0.1:${await freePort()}/`));
    const failure = await failureOf(call);
    expect(failure).toMatchObject({
      kind: 'refused',
      message: 'could not be reached (the connection was refused)',
    });
    const err = (await call.catch((e: unknown) => e)) as HttpFailure;
    expect([err.name, (err.cause as { code?: string }).code]).toEqual([
      'HttpFailure',
      'ECONNREFUSED',
    ]);
  });

  it('a call that timed out on a kept-alive connection is not sent again', async () => {
    const server = await rawServer((socket, nth) => {
      if (nth === 1) socket.write(`${HEAD_OK}Content-Length: 2\r\n\r\nok`);
    });
    const agent = keepAlive();
    try {
      expect((await get(server.url, agent)).body).toBe('ok');
      expect((await failureOf(get(server.url, agent, 200))).kind).toBe('timeout');
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(server.requests()).toBe(2);
    } finally {
      agent.destroy();
      await server.close();
    }
  });

  it('a silent server: timeout, after timeoutMs', async () => {
    const silent = await rawServer(() => undefined);
    try {
      const failure = await failureOf(get(silent.url, keepAlive(), 200));
      expect(failure).toMatchObject({ kind: 'timeout', message: 'did not answer within 200 ms' });
      expect(failure.ms).toBeGreaterThanOrEqual(190);
    } finally {
      await silent.close();
    }
  });

  it.each([
    ['ENOTFOUND', 'dns', 'its host name does not resolve'],
    ['EAI_AGAIN', 'dns', 'its host name does not resolve'],
    ['EPIPE', 'reset', 'the connection was reset'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'tls', 'TLS failed: ERR_TLS_CERT_ALTNAME_INVALID'],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'tls', 'TLS failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    ['EPROTO', 'tls', 'TLS failed: EPROTO'],
    ['EHOSTUNREACH', 'network', 'a network error (EHOSTUNREACH)'],
    [undefined, 'network', 'a network error (no code)'],
  ])('a connection failing with %s: %s, in words', async (code, kind, words) => {
    // The failure comes from the agent's own name lookup, so nothing is looked up or sent anywhere.
    const lookup = (_host: string, _options: unknown, callback: (err: Error) => void) =>
      callback(Object.assign(new Error('stand-in failure'), code === undefined ? {} : { code }));
    const agent = new http.Agent({ lookup } as http.AgentOptions);
    const failure = await failureOf(get(new URL('http://metadata.test/'), agent));
    expect(failure).toMatchObject({ kind, message: `could not be reached (${words})` });
  });

  it.each([
    ['a Content-Length body', `${HEAD_OK}Content-Length: 100\r\n\r\nHello`],
    ['a chunked body', `${HEAD_OK}Transfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n`],
  ])(
    '%s cut short by a server that dies: reset, at once, not after the timeout',
    async (_what, bytes) => {
      const dying = await rawServer((socket) => socket.end(bytes));
      try {
        const failure = await failureOf(get(dying.url, keepAlive(), 20_000));
        expect(failure.kind).toBe('reset');
        expect(failure.message).toContain('the connection was reset');
        expect((failure.cause as { code?: string }).code).toBe('ECONNRESET');
        expect(failure.ms).toBeLessThan(10_000);
        expect(dying.requests()).toBe(1);
      } finally {
        await dying.close();
      }
    },
  );

  it('a header Node refuses to send: a failure at once, naming the header but not its value, and no timer left to fire', async () => {
    const server = await rawServer((socket) => socket.end(`${HEAD_OK}Content-Length: 0\r\n\r\n`));
    try {
      let failure: Awaited<ReturnType<typeof failureOf>> | undefined;
      const timers = await timersOf(60_000, async () => {
        const headers = { Authorization: 'Bearer secret\nX: y' };
        failure = await failureOf(
          httpGet(server.url, { agent: keepAlive(), headers, timeoutMs: 60_000, maxBytes: 1024 }),
        );
      });
      expect(failure?.kind).toBe('network');
      expect(failure?.message).toMatch(
        /^was not asked: Node refused the request \(.*authorization/i,
      );
      expect(failure?.message).not.toContain('secret');
      expect((failure?.cause as { code?: string }).code).toBe('ERR_INVALID_CHAR');
      expect(timers.uncleared).toBe(0);
      expect(server.requests()).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('an answer over maxBytes: too-large, and not asked again', async () => {
    const big = await rawServer((socket) =>
      socket.end(`${HEAD_OK}Content-Length: 2000\r\n\r\n${'x'.repeat(2000)}`),
    );
    try {
      expect(await failureOf(get(big.url, keepAlive(), 2000, 1024))).toMatchObject({
        kind: 'too-large',
        message: 'answered more than 1 KB',
      });
      expect(big.requests()).toBe(1);
      // At the limit exactly it is taken.
      expect((await get(big.url, keepAlive(), 2000, 2000)).body).toHaveLength(2000);
    } finally {
      await big.close();
    }
  });

  it('sends again once, on a new connection, when a kept-alive one turns out to be closed', async () => {
    // Answers the first request on each connection, then resets the connection at the next one.
    const server = await rawServer((socket, nth) => {
      if (nth > 1) socket.resetAndDestroy();
      else socket.write(`${HEAD_OK}Content-Length: 2\r\n\r\nok`);
    });
    const agent = keepAlive();
    try {
      expect((await get(server.url, agent)).body).toBe('ok');
      expect((await get(server.url, agent)).body).toBe('ok');
      expect(server.requests()).toBe(3);
    } finally {
      agent.destroy();
      await server.close();
    }
  });

  it('does not send again once a byte of the answer came, even on a kept-alive connection', async () => {
    // Answers the first request whole; of the second only part of the status line, then closes.
    const server = await rawServer((socket, nth) => {
      if (nth > 1) {
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/pl');
        setTimeout(() => socket.destroy(), 20);
      } else socket.write(`${HEAD_OK}Content-Length: 2\r\n\r\nok`);
    });
    const agent = keepAlive();
    try {
      expect((await get(server.url, agent)).body).toBe('ok');
      expect((await failureOf(get(server.url, agent))).kind).toBe('reset');
      expect(server.requests()).toBe(2);
    } finally {
      agent.destroy();
      await server.close();
    }
  });

  it('does not send again when a new connection is reset: reset', async () => {
    const server = await rawServer((socket) => socket.resetAndDestroy());
    try {
      expect(await failureOf(get(server.url))).toMatchObject({
        kind: 'reset',
        message: 'could not be reached (the connection was reset)',
      });
      expect(server.requests()).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('checks certificates over https: an untrusted one is a tls failure; trusted through the agent, one kept-alive connection', async () => {
    const fixtures = new URL('../fixtures/tls/', import.meta.url);
    const cert = readFileSync(new URL('loopback.crt', fixtures));
    const server = https.createServer(
      { key: readFileSync(new URL('loopback.key', fixtures)), cert },
      (_req, res) => res.end('ok over tls'),
    );
    let connections = 0;
    server.on('secureConnection', (socket: Socket) => {
      connections += 1;
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = new URL(`https://127.0.0.1:${(server.address() as { port: number }).port}/`);
    const trusting = new https.Agent({ keepAlive: true, ca: cert });
    try {
      expect(await failureOf(get(url, new https.Agent()))).toMatchObject({
        kind: 'tls',
        message: 'could not be reached (TLS failed: DEPTH_ZERO_SELF_SIGNED_CERT)',
      });
      connections = 0;
      for (let i = 0; i < 3; i += 1) expect((await get(url, trusting)).body).toBe('ok over tls');
      expect(connections).toBe(1);
    } finally {
      trusting.destroy();
      server.closeAllConnections();
      server.close();
    }
  });
});
