import { createLogger } from '../shared/logger.js';
import { projectIdFrom } from '../shared/project-id.js';
import { loadConfigOrExit } from '../shared/main-support.js';
import { exitOnSignals, listenOrExit, portOf } from '../shared/server.js';
import { createCallingApp } from './app.js';
import { loadCallingConfig } from './config.js';
import { createIdTokenSource } from './id-token-source.js';
import { createUpstreamClient } from './upstream-client.js';

const logger = createLogger('calling');
const config = loadConfigOrExit(() => loadCallingConfig(process.env));

const app = createCallingApp({
  url: config.url,
  audience: config.audience,
  auth: config.auth,
  tokenHeader: config.tokenHeader,
  idTokens: createIdTokenSource(config.tokenOrigin, logger),
  upstream: createUpstreamClient({ timeoutMs: config.upstreamTimeoutMs }),
  logger,
  projectId: projectIdFrom(process.env, logger),
});
const server = await listenOrExit(app, config.host, config.port);
logger.info(
  {
    host: config.host,
    port: portOf(server),
    url: config.url.href,
    audience: config.audience,
    auth: config.auth,
    tokenHeader: config.tokenHeader,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    // Never the credentials' JSON: it holds a secret.
    tokens: config.tokenOrigin.kind === 'google-auth' ? config.tokenOrigin.credentials : config.tokenOrigin,
  },
  `calling listening on ${config.host}:${portOf(server)}`,
);
if (config.auth === 'none') logger.warn('AUTH=none: requests to the receiving service carry no token');
exitOnSignals(server, logger);
