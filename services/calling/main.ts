import { createLogger } from '../shared/logger.js';
import { exitOnSignals, listenOrExit, loadConfigOrExit, portOf } from '../shared/server.js';
import { createCalling } from './app.js';
import { loadCallingConfig } from './config.js';

const config = loadConfigOrExit(() => loadCallingConfig(process.env));
const logger = createLogger('calling', config.logLevel);
const server = await listenOrExit(createCalling(config, logger), config.host, config.port);
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
    tokens:
      config.tokenOrigin.kind === 'google-auth'
        ? config.tokenOrigin.credentials
        : config.tokenOrigin,
  },
  `calling listening on ${config.host}:${portOf(server)}`,
);
if (config.auth === 'none')
  logger.warn('AUTH=none: requests to the receiving service carry no token');
exitOnSignals(server, logger);
