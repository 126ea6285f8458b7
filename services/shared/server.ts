import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Express } from 'express';
import { ConfigError } from './env.js';
import type { Logger } from './logger.js';

export function listen(app: Express, host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host);
    server.once('listening', () => resolve(server));
    server.once('error', reject);
  });
}

/** Loads config or ends the process before it listens, naming every bad variable on stderr. */
export function loadConfigOrExit<T>(load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\nrefusing to start.\n`);
      process.exit(1);
    }
    throw err;
  }
}

/** listen, or end the process with a message that says what to change (a port in use, say). */
export async function listenOrExit(app: Express, host: string, port: number): Promise<Server> {
  try {
    return await listen(app, host, port);
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why =
      code === 'EADDRINUSE'
        ? `port ${port} on ${host} is already in use: stop what holds it or set PORT`
        : code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND'
          ? `HOST ${host} is not an address of this machine`
          : code === 'EACCES'
            ? `port ${port} needs privileges: set PORT above 1023`
            : `cannot listen on ${host}:${port} (${code ?? String(err)})`;
    process.stderr.write(`${why}\nrefusing to start.\n`);
    process.exit(1);
  }
}

/** The port a listening server got (useful with port 0). */
export function portOf(server: Server): number {
  const address = server.address();
  if (address === null || typeof address === 'string')
    throw new Error('server is not listening on TCP');
  return address.port;
}

/** Cloud Run kills 10 s after SIGTERM: a timer ends the process well before that. */
const GRACE_MS = 8000;

/**
 * On SIGTERM (Cloud Run's stop signal) or SIGINT, the first one and any after it alike: stop
 * accepting, let requests being answered finish, close every other connection (kept alive
 * between requests, or open without a whole request yet) and exit 0; after GRACE_MS, exit 1.
 */
export function exitOnSignals(server: Server, logger: Logger): void {
  const connections = new Set<Socket>();
  // Requests being answered on each connection: pipelined ones wait behind the first.
  const answering = new Map<Socket, number>();
  server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    answering.set(socket, (answering.get(socket) ?? 0) + 1);
    res.once('close', () => {
      const left = answering.get(socket)! - 1;
      if (left === 0) answering.delete(socket);
      else answering.set(socket, left);
    });
  });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    setTimeout(() => {
      logger.error({ graceMs: GRACE_MS }, 'requests still open after the grace period; exiting');
      process.exit(1);
    }, GRACE_MS).unref();
    server.close(() => {
      logger.info('stopped');
      process.exit(0);
    });
    // Each connection as soon as it has no request being answered.
    const closeQuiet = () => {
      for (const socket of connections) if (!answering.has(socket)) socket.destroy();
    };
    closeQuiet();
    setInterval(closeQuiet, 50).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
