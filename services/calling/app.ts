import http from 'node:http';
import https from 'node:https';
import express, { type Express } from 'express';
import { errorHandler, notFound } from '../shared/error-handler.js';
import { UpstreamTimeoutError, UpstreamUnreachableError } from '../shared/errors.js';
import { httpGet, type HttpAnswer, type HttpFailure } from '../shared/http.js';
import type { Logger } from '../shared/logger.js';
import { projectIdFrom } from '../shared/project-id.js';
import { requestLog } from '../shared/request-log.js';
import { sendText } from '../shared/send-text.js';
import { outboundTraceHeaders } from '../shared/trace-context.js';
import type { CallingConfig } from './config.js';
import { explainRefusal } from './diagnosis.js';
import { createIdTokenSource } from './id-token-source.js';

const MAX_UPSTREAM_BYTES = 1024 * 1024;

/** calling as its config says: main.ts serves it, and so do the tests. */
export function createCalling(config: CallingConfig, logger: Logger): Express {
  const { url, upstreamTimeoutMs: timeoutMs } = config;
  const idTokens = createIdTokenSource(config.tokenOrigin, logger);
  // One keep-alive agent for every call to receiving; Node hands out the most recently used socket
  // first. Certificates to trust besides Node's go in NODE_EXTRA_CA_CERTS.
  const agent = new (url.protocol === 'https:' ? https : http).Agent({ keepAlive: true });
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
    let answer: HttpAnswer;
    try {
      answer = await httpGet(url, { agent, headers, timeoutMs, maxBytes: MAX_UPSTREAM_BYTES });
    } catch (err) {
      const failure = err as HttpFailure;
      if (failure.kind === 'timeout')
        throw new UpstreamTimeoutError(url.href, timeoutMs, { cause: failure });
      throw new UpstreamUnreachableError(url.href, failure.message, { cause: failure });
    }
    if (answer.status < 200 || answer.status > 299) {
      throw explainRefusal({
        url,
        upstreamStatus: answer.status,
        audience: config.audience,
        auth: config.auth,
        token,
        challenge: answer.headers['www-authenticate'],
      });
    }
    sendText(res, `Second service says: ${answer.body}`);
  });
  app.use(notFound);
  app.use(errorHandler());
  return app;
}
