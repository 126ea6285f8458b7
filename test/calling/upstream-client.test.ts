import express from 'express';
import { createServer, type Socket } from 'node:net';
import { createUpstreamClient } from '../../services/calling/upstream-client.js';
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
  });
});
