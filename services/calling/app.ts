import express, { type Express } from 'express';
import { errorHandler, notFound } from '../shared/error-handler.js';
import type { Logger } from '../shared/logger.js';
import { requestLog } from '../shared/request-log.js';
import { sendText } from '../shared/send-text.js';
import { outboundTraceHeaders } from '../shared/trace-context.js';
import type { AuthMode, TokenHeader } from './config.js';
import { explainRefusal } from './diagnosis.js';
import type { IdTokenSource } from './id-token-source.js';
import type { UpstreamClient } from './upstream-client.js';

export interface CallingDeps {
  url: URL;
  audience: string;
  auth: AuthMode;
  /** Where the token goes (default: authorization). */
  tokenHeader?: TokenHeader;
  idTokens: IdTokenSource;
  upstream: UpstreamClient;
  logger: Logger;
  /** For the trace field of log lines (GOOGLE_CLOUD_PROJECT or the metadata server). */
  projectId?: () => string | undefined;
}

export function createCallingApp(deps: CallingDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(requestLog(deps.logger, { projectId: deps.projectId ?? (() => undefined) }));
  app.get('/health', (_req, res) => sendText(res, 'ok\n'));
  app.get('/', async (req, res) => {
    // Only the trace is passed on, so both services log the same trace id; the only credential
    // sent is calling's own token.
    const headers: Record<string, string> = outboundTraceHeaders(req.headers);
    const token = deps.auth === 'id-token' ? await deps.idTokens.getIdToken(deps.audience) : null;
    if (token !== null) {
      const tokenHeader = deps.tokenHeader ?? 'authorization';
      if (tokenHeader !== 'x-serverless-authorization') headers.authorization = `Bearer ${token}`;
      if (tokenHeader !== 'authorization') headers['x-serverless-authorization'] = `Bearer ${token}`;
    }
    const answer = await deps.upstream.get(deps.url, headers);
    if (answer.status < 200 || answer.status > 299) {
      throw explainRefusal({
        url: deps.url,
        upstreamStatus: answer.status,
        audience: deps.audience,
        auth: deps.auth,
        token,
        ...(answer.challenge ? { challenge: answer.challenge } : {}),
      });
    }
    sendText(res, `Second service says: ${answer.body}`);
  });
  app.use(notFound);
  app.use(errorHandler());
  return app;
}
