import express, { type Express } from 'express';
import { errorHandler, notFound } from '../shared/error-handler.js';
import type { Logger } from '../shared/logger.js';
import { projectIdFrom } from '../shared/project-id.js';
import { requestLog } from '../shared/request-log.js';
import { sendText } from '../shared/send-text.js';
import { createTokenCheck } from './auth.js';
import type { ReceivingConfig } from './config.js';

/** receiving as its config says: main.ts serves it, and so do the tests. */
export function createReceiving(config: ReceivingConfig, logger: Logger): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(requestLog(logger, projectIdFrom(config, logger)));
  app.get('/health', (_req, res) => sendText(res, 'ok\n'));
  // Every route but /health; none with TOKEN_CHECK=none, which trusts Cloud Run IAM alone.
  const tokenCheck = createTokenCheck(config);
  if (tokenCheck !== null) app.use(tokenCheck);
  app.get('/', (_req, res) => sendText(res, 'Hello World!'));
  app.use(notFound);
  app.use(errorHandler());
  return app;
}
