import { createRequire } from 'node:module';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from './env.js';

export type { Logger };

// Cloud Logging reads `severity` and `message` from each JSON line.
const SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

/** A logger at the level config read from LOG_LEVEL (env.ts), writing to stdout unless told. */
export function createLogger(
  service: string,
  level: LogLevel,
  destination: DestinationStream = defaultDestination(),
): Logger {
  return pino(
    {
      level,
      messageKey: 'message',
      base: { service },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ severity: SEVERITY[label] ?? 'DEFAULT' }) },
    },
    destination,
  );
}

/** Options for pino-pretty that read this logger's Cloud Logging shape. */
export const PRETTY_OPTIONS = {
  messageKey: 'message',
  levelKey: 'severity',
  customLevels: 'DEBUG:20,INFO:30,WARNING:40,ERROR:50,CRITICAL:60',
  useOnlyCustomProps: true,
  translateTime: 'SYS:HH:MM:ss.l',
  // The message says method, path, status and latency; the rest is for Cloud Logging.
  ignore: [
    'service',
    'httpRequest',
    'logging\\.googleapis\\.com/trace',
    'logging\\.googleapis\\.com/spanId',
    'logging\\.googleapis\\.com/trace_sampled',
  ].join(','),
  singleLine: true,
};

/**
 * stdout, written synchronously: nothing is buffered, so nothing is lost on exit, and a closed
 * stdout cannot hang the exit (sonic-boom's exit-time flushSync retries EPIPE forever). On a
 * terminal, human-readable through pino-pretty when it is installed (a dev dependency: never in
 * the images, where stdout is not a terminal anyway).
 */
function defaultDestination(): DestinationStream {
  if (process.stdout.isTTY) {
    try {
      // pino-pretty's prettyFactory, not its stream: as a stream it takes pino's level names
      // (warn, fatal) over ours and prints WARNING and CRITICAL lines as USERLVL.
      const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as {
        prettyFactory: (options: object) => (line: string) => string;
      };
      const prettify = prettyFactory(PRETTY_OPTIONS);
      // Writes to a terminal are synchronous in Node on Linux and macOS, as the JSON destination below is.
      return { write: (line: string) => void process.stdout.write(prettify(line)) };
    } catch {
      // Not installed: JSON it is.
    }
  }
  return pino.destination({ dest: 1, sync: true });
}
