import express from 'express';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createServer, type Socket } from 'node:net';
import { createUpstreamClient, isStaleConnection, whyUnreachable } from '../../services/calling/upstream-client.js';
import { UpstreamTimeoutError, UpstreamUnreachableError } from '../../services/shared/errors.js';
import { serve } from '../helpers/servers.js';
import { freePort } from '../../scripts/lib/processes.js';

describe('createUpstreamClient', () => {
  it('reuses one keep-alive connection for sequential calls', async () => {
    const app = express();
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const upstream = await serve(app);
    let connections = 0;
    upstream.server.on('connection', () => (connections += 1));
    const client = createUpstreamClient({ timeoutMs: 2000 });
    try {
      for (let i = 0; i < 20; i += 1) {
        expect(await client.get(new URL(upstream.url), {})).toEqual({ status: 200, body: 'ok' });
      }
      expect(connections).toBe(1);
    } finally {
      client.close();
      await upstream.close();
    }
  });

  it('gives up on a silent upstream after the timeout', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    const client = createUpstreamClient({ timeoutMs: 200 });
    try {
      const error = await client.get(new URL(`http://127.0.0.1:${port}/`), {}).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(UpstreamTimeoutError);
      expect((error as UpstreamTimeoutError).status).toBe(504);
      expect((error as Error).message).toContain('did not answer within 200 ms');
      expect(((error as Error).cause as { name?: string }).name).toBe('AbortError');
    } finally {
      client.close();
      sockets.forEach((s) => s.destroy());
      silent.close();
    }
  });

  it('reports a refused connection as unreachable', async () => {
    const port = await freePort();
    const client = createUpstreamClient({ timeoutMs: 2000 });
    const error = await client.get(new URL(`http://127.0.0.1:${port}/`), {}).catch((err: unknown) => err);
    client.close();
    expect(error).toBeInstanceOf(UpstreamUnreachableError);
    expect((error as UpstreamUnreachableError).status).toBe(502);
    expect((error as Error).message).toContain('(the connection was refused)');
    expect(((error as Error).cause as { code?: string }).code).toBe('ECONNREFUSED');
  });

  it('keeps one connection alive over https too (Cloud Run URLs are https), and close() ends it', async () => {
    const fixtures = new URL('../fixtures/tls/', import.meta.url);
    const cert = readFileSync(new URL('loopback.crt', fixtures));
    const server = https.createServer({ key: readFileSync(new URL('loopback.key', fixtures)), cert }, (_req, res) =>
      res.end('ok over tls'),
    );
    let connections = 0;
    let closed = 0;
    server.on('secureConnection', (socket) => {
      connections += 1;
      socket.on('close', () => (closed += 1));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = new URL(`https://127.0.0.1:${(server.address() as { port: number }).port}/`);
    const untrusting = createUpstreamClient({ timeoutMs: 2000 });
    const client = createUpstreamClient({ timeoutMs: 2000, ca: cert });
    try {
      // Certificates are checked: the self-signed fixture is refused unless trusted.
      const refused = await untrusting.get(url, {}).catch((err: unknown) => err);
      expect((refused as Error).message).toContain('(a network error (DEPTH_ZERO_SELF_SIGNED_CERT))');
      untrusting.close();
      connections = 0;
      closed = 0;
      for (let i = 0; i < 5; i += 1) expect(await client.get(url, {})).toEqual({ status: 200, body: 'ok over tls' });
      expect(connections).toBe(1);
      client.close();
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(closed).toBe(1);
    } finally {
      untrusting.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it('close() ends its kept-alive http connections', async () => {
    const app = express();
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const upstream = await serve(app);
    let closed = 0;
    upstream.server.on('connection', (socket: Socket) => socket.on('close', () => (closed += 1)));
    const client = createUpstreamClient({ timeoutMs: 2000 });
    try {
      await client.get(new URL(upstream.url), {});
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(closed).toBe(0);
      client.close();
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(closed).toBe(1);
    } finally {
      await upstream.close();
    }
  });

  it('leaves no timer behind once an answer has come', async () => {
    const app = express();
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const upstream = await serve(app);
    const client = createUpstreamClient({ timeoutMs: 60_000 });
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    try {
      await client.get(new URL(upstream.url), {});
      const before = timers();
      await client.get(new URL(upstream.url), {});
      expect(timers()).toBe(before);
    } finally {
      client.close();
      await upstream.close();
    }
  });

  it('does not follow a redirect, so the token never goes where receiving points', async () => {
    let stolen = 0;
    const elsewhere = express();
    elsewhere.use((_req, res) => {
      stolen += 1;
      res.send('thanks for the token');
    });
    const thief = await serve(elsewhere);
    const app = express();
    app.get('/', (_req, res) => {
      res.redirect(302, `${thief.url}/collect`);
    });
    const upstream = await serve(app);
    const client = createUpstreamClient({ timeoutMs: 2000 });
    try {
      const answer = await client.get(new URL(upstream.url), { Authorization: 'Bearer secret' });
      expect(answer.status).toBe(302);
      expect(stolen).toBe(0);
    } finally {
      client.close();
      await upstream.close();
      await thief.close();
    }
  });

  it('passes the status, body and WWW-Authenticate challenge back as they came', async () => {
    const app = express();
    app.get('/', (_req, res) => {
      res.status(401).set('WWW-Authenticate', 'Bearer error="invalid_token"').send('invalid token: token has expired');
    });
    const upstream = await serve(app);
    const client = createUpstreamClient({ timeoutMs: 2000 });
    try {
      expect(await client.get(new URL(upstream.url), {})).toEqual({
        status: 401,
        body: 'invalid token: token has expired',
        challenge: 'Bearer error="invalid_token"',
      });
    } finally {
      client.close();
      await upstream.close();
    }
  });

  it('refuses an answer over 1 MB as unreachable, saying it was too large, and does not ask again', async () => {
    let requests = 0;
    const app = express();
    app.get('/', (_req, res) => {
      requests += 1;
      res.send('x'.repeat(1024 * 1024 + 1));
    });
    const upstream = await serve(app);
    const client = createUpstreamClient({ timeoutMs: 2000 });
    try {
      const error = await client.get(new URL(upstream.url), {}).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(UpstreamUnreachableError);
      expect((error as Error).message).toBe(
        `the receiving service at ${upstream.url}/ could not be reached (its answer was too large): check URL and that the service is up`,
      );
      expect(requests).toBe(1);
    } finally {
      client.close();
      await upstream.close();
    }
  });

  it('sends a GET again once when a kept-alive connection turns out to be closed', async () => {
    let requests = 0;
    const sockets = new Set<Socket>();
    // Answers the first request on each connection, then resets the connection at the next one.
    const server = createServer((socket) => {
      sockets.add(socket);
      let served = 0;
      socket.on('error', () => undefined);
      socket.on('data', () => {
        requests += 1;
        served += 1;
        if (served > 1) {
          socket.resetAndDestroy();
          return;
        }
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = new URL(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
    const client = createUpstreamClient({ timeoutMs: 2000 });
    try {
      expect((await client.get(url, {})).status).toBe(200);
      expect((await client.get(url, {})).status).toBe(200);
      expect(requests).toBe(3);
    } finally {
      client.close();
      sockets.forEach((s) => s.destroy());
      server.close();
    }
  });

  it('names a reset connection as reset when the retry is reset too', async () => {
    const server = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.resetAndDestroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = new URL(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
    const client = createUpstreamClient({ timeoutMs: 2000 });
    try {
      const error = await client.get(url, {}).catch((err: unknown) => err);
      expect((error as Error).message).toContain('(the connection was reset)');
    } finally {
      client.close();
      server.close();
    }
  });
});

describe('what the upstream client retries, and how it names a failure', () => {
  const failure = (fields: { code?: string; type?: string }) => Object.assign(new Error('x'), fields);

  it('sends again only after a connection was reset or its pipe broke', () => {
    expect(['ECONNRESET', 'EPIPE'].map((code) => isStaleConnection(failure({ code })))).toEqual([true, true]);
    expect(['ECONNREFUSED', 'ETIMEDOUT', 'ENOTFOUND', undefined].map((code) => isStaleConnection(failure({ code })))).toEqual([
      false,
      false,
      false,
      false,
    ]);
    expect(isStaleConnection(failure({ type: 'max-size' }))).toBe(false);
  });

  it('names each failure in words, and an unknown one by its code', () => {
    expect(whyUnreachable(failure({ code: 'ECONNREFUSED' }))).toBe('the connection was refused');
    expect(whyUnreachable(failure({ code: 'ECONNRESET' }))).toBe('the connection was reset');
    expect(whyUnreachable(failure({ code: 'EPIPE' }))).toBe('the connection was reset');
    expect(whyUnreachable(failure({ code: 'ENOTFOUND' }))).toBe('its host name does not resolve');
    expect(whyUnreachable(failure({ code: 'EAI_AGAIN' }))).toBe('its host name does not resolve');
    expect(whyUnreachable(failure({ type: 'max-size' }))).toBe('its answer was too large');
    expect(whyUnreachable(failure({ code: 'EHOSTUNREACH' }))).toBe('a network error (EHOSTUNREACH)');
    expect(whyUnreachable(failure({}))).toBe('a network error');
  });
});
