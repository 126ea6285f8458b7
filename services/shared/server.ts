import type { Server } from 'node:http';
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
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP');
  return address.port;
}

/**
 * On SIGTERM (Cloud Run's stop signal) or SIGINT: stop accepting, let in-flight requests finish,
 * close idle keep-alive connections, exit 0. Cloud Run kills 10 s after SIGTERM, so a timer forces
 * the exit well before that.
 */
const GRACE_MS = 8000;

export function exitOnSignals(server: Server, logger: Logger): void {
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
    // Keep-alive connections: close each as soon as its in-flight request is answered.
    server.closeIdleConnections();
    setInterval(() => server.closeIdleConnections(), 50).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
