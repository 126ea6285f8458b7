import { pino, type DestinationStream, type Logger } from 'pino';

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

export function createLogger(
  service: string,
  options: { level?: string; destination?: DestinationStream } = {},
): Logger {
  return pino(
    {
      level: options.level ?? process.env.LOG_LEVEL ?? 'info',
      messageKey: 'message',
      base: { service },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ severity: SEVERITY[label] ?? 'DEFAULT' }),
      },
    },
    // Synchronous writes: nothing is buffered, so nothing is lost on exit, and a closed stdout
    // cannot hang the exit (sonic-boom's exit-time flushSync retries EPIPE forever).
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
