import express, { type Express, type RequestHandler } from 'express';
import { errorHandler, notFound } from '../shared/error-handler.js';
import type { Logger } from '../shared/logger.js';

export interface ReceivingDeps {
  /** Runs before every route but /health; null when the service trusts Cloud Run IAM alone. */
  authenticate: RequestHandler | null;
  logger: Logger;
}

export function createReceivingApp(deps: ReceivingDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.get('/health', (_req, res) => {
    res.type('text/plain').send('ok\n');
  });
  if (deps.authenticate !== null) app.use(deps.authenticate);
  app.get('/', (_req, res) => {
    res.type('text/plain').send('Hello World!');
  });
  app.use(notFound);
  app.use(errorHandler(deps.logger));
  return app;
}
