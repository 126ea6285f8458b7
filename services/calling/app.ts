import express, { type Express } from 'express';
import { errorHandler, notFound } from '../shared/error-handler.js';
import { UpstreamRefusedError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { AuthMode } from './config.js';
import type { IdTokenSource } from './id-token-source.js';
import type { UpstreamClient } from './upstream-client.js';

export interface CallingDeps {
  url: URL;
  audience: string;
  auth: AuthMode;
  idTokens: IdTokenSource;
  upstream: UpstreamClient;
  logger: Logger;
}

export function createCallingApp(deps: CallingDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.get('/health', (_req, res) => {
    res.type('text/plain').send('ok\n');
  });
  app.get('/', async (_req, res) => {
    // Nothing from the inbound request is forwarded: the only credential sent is our own token.
    const headers: Record<string, string> = {};
    if (deps.auth === 'id-token') {
      headers.authorization = `Bearer ${await deps.idTokens.getIdToken(deps.audience)}`;
    }
    const answer = await deps.upstream.get(deps.url, headers);
    if (answer.status < 200 || answer.status > 299) {
      throw new UpstreamRefusedError(deps.url.href, answer.status);
    }
    res.type('text/plain').send(`Second service says: ${answer.body}`);
  });
  app.use(notFound);
  app.use(errorHandler(deps.logger));
  return app;
}
