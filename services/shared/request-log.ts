import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import type { Logger } from './logger.js';
import { redactPath } from './redact-path.js';
import { readTraceContext } from './trace-context.js';

/** Set by the error handler so the request's one log line says what went wrong. */
export interface LoggedProblem {
  code: string;
  detail: string;
  cause?: string;
}

interface Locals {
  caller?: { email?: string; subject: string };
  problem?: LoggedProblem;
  /** A long poll (the emulator's wait_for_change): a client that stops waiting is no problem. */
  held?: boolean;
}

/**
 * One log line per request, in Cloud Logging's shape: `httpRequest`, the trace and span ids from
 * traceparent / X-Cloud-Trace-Context, and on receiving the caller's email. Paths are logged
 * without their query string and with JWT-shaped runs replaced, and no header is, so no token can
 * reach a log line.
 *
 * Written here rather than with pino-http: pino-http builds child loggers and serializes the
 * request on every request, whether or not the line is written; profiled under load that was 13%
 * of receiving's CPU with request logs switched off. This costs nothing when the level is off.
 */
export function requestLog(
  logger: Logger,
  /** The project for `logging.googleapis.com/trace`; without it no trace field is written. */
  projectId: () => string | undefined,
  /** The level of successful requests (the emulator logs them at debug). */
  successLevel: 'info' | 'debug' = 'info',
): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.once('close', () => {
      const status = res.statusCode;
      const { caller, problem, held } = res.locals as Locals;
      const aborted = !res.writableFinished;
      const left = aborted && held === true;
      const failure = (res as ServerResponse & { err?: unknown }).err;
      const level =
        status >= 500
          ? 'error'
          : status >= 400 || (aborted && !left)
            ? 'warn'
            : req.path === '/health'
              ? 'debug'
              : successLevel;
      if (!logger.isLevelEnabled(level)) return;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const path = pathOf(req);
      logger[level](
        {
          ...traceFieldsOf(req, projectId()),
          httpRequest: {
            requestMethod: req.method,
            requestUrl: path,
            status,
            latency: `${(ms / 1000).toFixed(3)}s`,
            protocol: `HTTP/${req.httpVersion}`,
            // pino leaves out a field that is undefined, here and below.
            userAgent: req.headers['user-agent']
              ? redactPath(req.headers['user-agent'])
              : undefined,
            remoteIp: req.socket.remoteAddress || undefined,
            responseSize: res.getHeader('content-length')?.toString(),
          },
          caller: caller && (caller.email ?? `subject ${caller.subject}`),
          error: problem,
          err: failure, // set by the error handler on a 500
        },
        left
          ? `${req.method} ${path}: the client stopped waiting after ${Math.round(ms)} ms`
          : `${req.method} ${path} ${status}${aborted ? ' (client went away)' : ''} in ${Math.round(ms)} ms`,
      );
    });
    next();
  };
}

function traceFieldsOf(req: IncomingMessage, project: string | undefined): Record<string, unknown> {
  const trace = project === undefined ? undefined : readTraceContext(req.headers);
  if (trace === undefined) return {};
  return {
    'logging.googleapis.com/trace': `projects/${project}/traces/${trace.traceId}`,
    'logging.googleapis.com/spanId': trace.spanId,
    'logging.googleapis.com/trace_sampled': trace.sampled,
  };
}

function pathOf(req: IncomingMessage): string {
  const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
  const query = url.indexOf('?');
  return redactPath(query === -1 ? url : url.slice(0, query));
}
