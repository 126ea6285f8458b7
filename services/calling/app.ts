import express, { type Express } from 'express';
import { errorHandler, notFound } from '../shared/error-handler.js';
import type { Logger } from '../shared/logger.js';
import { projectIdFrom } from '../shared/project-id.js';
import { requestLog } from '../shared/request-log.js';
import { sendText } from '../shared/send-text.js';
import { outboundTraceHeaders } from '../shared/trace-context.js';
import type { CallingConfig } from './config.js';
import { explainRefusal } from './diagnosis.js';
import { createIdTokenSource } from './id-token-source.js';
import { createUpstreamClient } from './upstream-client.js';

/** calling as its config says: main.ts serves it, and so do the tests. */
export function createCalling(config: CallingConfig, logger: Logger): Express {
  const idTokens = createIdTokenSource(config.tokenOrigin, logger);
  const upstream = createUpstreamClient(config.url, config.upstreamTimeoutMs);
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(requestLog(logger, projectIdFrom(config, logger)));
  app.get('/health', (_req, res) => sendText(res, 'ok\n'));
  app.get('/', async (req, res) => {
    // Only the trace is passed on, so both services log the same trace id; the only credential
    // sent is calling's own token.
    const headers: Record<string, string> = outboundTraceHeaders(req.headers);
    const token = config.auth === 'id-token' ? await idTokens.getIdToken(config.audience) : null;
    if (token !== null) {
      if (config.tokenHeader !== 'x-serverless-authorization')
        headers.authorization = `Bearer ${token}`;
      if (config.tokenHeader !== 'authorization')
        headers['x-serverless-authorization'] = `Bearer ${token}`;
    }
    const answer = await upstream(headers);
    if (answer.status < 200 || answer.status > 299) {
      throw explainRefusal({
        url: config.url,
        upstreamStatus: answer.status,
        audience: config.audience,
        auth: config.auth,
        token,
        ...(answer.challenge === undefined ? {} : { challenge: answer.challenge }),
      });
    }
    sendText(res, `Second service says: ${answer.body}`);
  });
  app.use(notFound);
  app.use(errorHandler());
  return app;
}
