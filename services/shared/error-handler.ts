import type { ErrorRequestHandler, RequestHandler } from 'express';
import { NotFoundError, ServiceError } from './errors.js';
import type { Logger } from './logger.js';

export const notFound: RequestHandler = (req, _res, next) => {
  next(new NotFoundError(req.path));
};

/**
 * Maps ServiceErrors to their status and message; anything else is a bug, logged in full and
 * answered with a generic 500 that leaks nothing.
 */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (err instanceof ServiceError) {
      const cause = err.cause instanceof Error ? err.cause.message : undefined;
      const level = err.status >= 500 ? 'error' : 'warn';
      logger[level]({ code: err.code, status: err.status, path: req.path, cause }, err.message);
      res.status(err.status).set(err.headers).type('text/plain').send(`${err.message}\n`);
      return;
    }
    // Body-parser style errors carry their own 4xx status.
    const status = typeof err?.status === 'number' && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) logger.error({ err, path: req.path }, 'unexpected error');
    res.status(status).type('text/plain').send(status === 500 ? 'internal error\n' : 'bad request\n');
  };
}
