import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { NotFoundError, ServiceError } from './errors.js';
import { redactPath } from './redact-path.js';
import type { LoggedProblem } from './request-log.js';

export const notFound: RequestHandler = (req, _res, next) => {
  next(new NotFoundError(redactPath(req.path)));
};

/**
 * Maps ServiceErrors to their status and message, as plain text or, for clients that ask for JSON,
 * RFC 9457 problem details; the request's log line (request-log.ts) records the problem. Anything
 * else is a bug: logged with its stack, answered with a generic 500 that leaks nothing.
 */
export function errorHandler(): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (err instanceof ServiceError) {
      const problem: LoggedProblem = {
        code: err.code,
        detail: err.message,
        ...(err.cause instanceof Error ? { cause: err.cause.message } : {}),
      };
      res.locals.problem = problem;
      res.status(err.status).set(err.headers);
      send(req, res, err.message, {
        type: err.type,
        title: err.title,
        status: err.status,
        detail: err.message,
        code: err.code,
        ...err.extensions,
      });
      return;
    }
    // Body-parser style errors carry their own 4xx status.
    const status =
      typeof err.status === 'number' && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) (res as Response & { err?: unknown }).err = err;
    const title = status === 500 ? 'Internal error' : 'Bad request';
    res.status(status);
    send(req, res, title.toLowerCase(), { type: 'about:blank', title, status });
  };
}

function send(req: Request, res: Response, text: string, problem: Record<string, unknown>): void {
  const wanted = req.accepts(['text/plain', 'application/problem+json', 'application/json']);
  if (wanted === 'application/problem+json' || wanted === 'application/json') {
    res.type('application/problem+json').send(JSON.stringify(problem));
  } else {
    res.type('text/plain').send(`${text}\n`);
  }
}
