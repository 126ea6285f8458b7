import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../services/shared/logger.js';

export function silentLogger(): Logger {
  return createLogger('test', 'silent');
}

/** A logger whose lines are kept, to check what a service writes. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(
        ...String(chunk)
          .split('\n')
          .filter((l) => l !== ''),
      );
      done();
    },
  });
  return { logger: createLogger('test', 'debug', destination), lines };
}
