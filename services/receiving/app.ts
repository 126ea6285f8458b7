import express, { type Express, type RequestHandler } from 'express';
import { errorHandler, notFound } from '../shared/error-handler.js';
import type { Logger } from '../shared/logger.js';
import { requestLog } from '../shared/request-log.js';
import { sendText } from '../shared/send-text.js';

export interface ReceivingDeps {
  /** Runs before every route but /health; null when the service trusts Cloud Run IAM alone. */
  authenticate: RequestHandler | null;
  logger: Logger;
  /** For the trace field of log lines (GOOGLE_CLOUD_PROJECT or the metadata server). */
  projectId?: () => string | undefined;
}

export function createReceivingApp(deps: ReceivingDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(requestLog(deps.logger, { projectId: deps.projectId ?? (() => undefined) }));
  app.get('/health', (_req, res) => sendText(res, 'ok\n'));
  if (deps.authenticate !== null) app.use(deps.authenticate);
  app.get('/', (_req, res) => sendText(res, 'Hello World!'));
  app.use(notFound);
  app.use(errorHandler());
  return app;
}
