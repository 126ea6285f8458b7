import { createServer, type Server, type Socket } from 'node:net';
import express, { type Express } from 'express';

export type Fault = 'none' | 'slow' | 'error-500' | 'no-flavor' | 'silent';

/**
 * An app in front of another that misbehaves on demand: answers late, 500, without
 * Metadata-Flavor, or not at all. `fault` can be changed between requests.
 */
export function faultyFront(
  inner: Express,
  slowMs = 3000,
): { app: Express; fault: Fault; requests: number } {
  const state = { app: express(), fault: 'none' as Fault, requests: 0 };
  state.app.use((_req, res, next) => {
    state.requests += 1;
    switch (state.fault) {
      case 'slow':
        setTimeout(next, slowMs).unref();
        return;
      case 'error-500':
        res.status(500).set('Metadata-Flavor', 'Google').type('text/plain').send('internal error');
        return;
      case 'no-flavor':
        res.status(200).type('text/html').send('<html>captive portal</html>');
        return;
      case 'silent':
        return; // never answers
      default:
        next();
    }
  });
  state.app.use(inner);
  return state;
}

/** A TCP server on 127.0.0.1 that resets every connection as soon as a request arrives. */
export async function resettingServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('data', () => socket.resetAndDestroy());
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise((resolve) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}

/**
 * A TCP server on 127.0.0.1 that answers each request with raw bytes: `answer` gets the socket
 * and the request count on that connection, to write what it likes and close or reset it.
 */
export async function rawServer(
  answer: (socket: Socket, nth: number) => void,
): Promise<{ url: URL; requests: () => number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let requests = 0;
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    let nth = 0;
    socket.on('error', () => undefined);
    socket.on('data', () => {
      requests += 1;
      nth += 1;
      answer(socket, nth);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: new URL(`http://127.0.0.1:${(server.address() as { port: number }).port}/`),
    requests: () => requests,
    close: () =>
      new Promise((resolve) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}
