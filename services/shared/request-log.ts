import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import { pinoHttp } from 'pino-http';
import type { Logger } from './logger.js';
import { readTraceContext } from './trace-context.js';

export interface RequestLogOptions {
  /** The project for `logging.googleapis.com/trace`; without it no trace field is written. */
  projectId: () => string | undefined;
  /** The level of successful requests (the emulator logs them at debug). */
  level?: 'info' | 'debug';
}

/** Set by the error handler so the request's one log line says what went wrong. */
export interface LoggedProblem {
  code: string;
  detail: string;
  cause?: string;
}

interface Locals {
  caller?: { email?: string; subject: string };
  problem?: LoggedProblem;
}

const traceFields = Symbol('traceFields');
type Traced = IncomingMessage & { [traceFields]?: Record<string, unknown> };

/**
 * One log line per request, in Cloud Logging's shape: `httpRequest`, the trace and span ids from
 * traceparent / X-Cloud-Trace-Context, and on receiving the caller's email. req.log carries the
 * trace too, for anything logged while handling the request. Paths are logged without their query
 * string, and no header is, so no token can reach a log line.
 */
export function requestLog(logger: Logger, options: RequestLogOptions): RequestHandler {
  const fieldsOf = (req: Traced): Record<string, unknown> => {
    if (req[traceFields] === undefined) {
      const trace = readTraceContext(req.headers);
      const project = options.projectId();
      req[traceFields] =
        trace === undefined || project === undefined
          ? {}
          : {
              'logging.googleapis.com/trace': `projects/${project}/traces/${trace.traceId}`,
              ...(trace.spanId ? { 'logging.googleapis.com/spanId': trace.spanId } : {}),
              'logging.googleapis.com/trace_sampled': trace.sampled,
            };
    }
    return req[traceFields];
  };
  const localsOf = (res: ServerResponse): Locals => ((res as unknown as { locals?: Locals }).locals ?? {});
  const httpRequest = (req: IncomingMessage, res: ServerResponse, ms: number) => ({
    requestMethod: req.method,
    requestUrl: pathOf(req),
    status: res.statusCode,
    latency: `${(ms / 1000).toFixed(3)}s`,
    protocol: `HTTP/${req.httpVersion}`,
    ...(req.headers['user-agent'] ? { userAgent: req.headers['user-agent'] } : {}),
    ...(req.socket.remoteAddress ? { remoteIp: req.socket.remoteAddress } : {}),
    ...(res.getHeader('content-length') !== undefined ? { responseSize: String(res.getHeader('content-length')) } : {}),
  });
  const details = (req: IncomingMessage, res: ServerResponse, ms: number) => {
    const { caller, problem } = localsOf(res);
    return {
      httpRequest: httpRequest(req, res, ms),
      ...(caller ? { caller: caller.email ?? `subject ${caller.subject}` } : {}),
      ...(problem ? { error: problem } : {}),
    };
  };
  return pinoHttp({
    logger,
    // Only what is written below: no headers, no query strings.
    serializers: { req: () => undefined, res: () => undefined },
    customProps: (req) => fieldsOf(req),
    customLogLevel: (req, res, err) => {
      if (err || res.statusCode >= 500) return 'error';
      if (res.statusCode >= 400) return 'warn';
      return req.url === '/health' ? 'debug' : (options.level ?? 'info');
    },
    customSuccessMessage: (req, res, ms) => `${req.method} ${pathOf(req)} ${res.statusCode} in ${ms} ms`,
    customErrorMessage: (req, res) => `${req.method} ${pathOf(req)} ${res.statusCode}`,
    customSuccessObject: (req, res, value: { responseTime: number }) => details(req, res, value.responseTime),
    customErrorObject: (req, res, error, value: { responseTime: number }) => ({
      ...details(req, res, value.responseTime),
      ...(localsOf(res).problem ? {} : { err: error }),
    }),
  }) as unknown as RequestHandler;
}

function pathOf(req: IncomingMessage): string {
  const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}
