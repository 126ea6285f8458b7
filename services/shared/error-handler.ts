import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { NotFoundError, ServiceError } from './errors.js';
import type { Logger } from './logger.js';

export const notFound: RequestHandler = (req, _res, next) => {
  next(new NotFoundError(req.path));
};

/**
 * Maps ServiceErrors to their status and message, as plain text or, for clients that ask for JSON,
 * RFC 9457 problem details. Anything else is a bug: logged in full, answered with a generic 500.
 */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (err instanceof ServiceError) {
      const cause = err.cause instanceof Error ? err.cause.message : undefined;
      const level = err.status >= 500 ? 'error' : 'warn';
      logger[level]({ code: err.code, status: err.status, path: req.path, cause, ...err.extensions }, err.message);
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
    const status = typeof err?.status === 'number' && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) logger.error({ err, path: req.path }, 'unexpected error');
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
