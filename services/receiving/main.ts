import { createLogger } from '../shared/logger.js';
import { exitOnSignals, listenOrExit, loadConfigOrExit, portOf } from '../shared/server.js';
import { createReceiving } from './app.js';
import { loadReceivingConfig } from './config.js';

const config = loadConfigOrExit(() => loadReceivingConfig(process.env));
const logger = createLogger('receiving', config.logLevel);
const server = await listenOrExit(createReceiving(config, logger), config.host, config.port);
logger.info(
  {
    host: config.host,
    port: portOf(server),
    tokenCheck: config.tokenCheck,
    audiences: config.audiences,
    jwksUrl: config.jwksUrl.href,
    invokers: config.invokers === null ? 'any caller with a valid token' : [...config.invokers],
  },
  `receiving listening on ${config.host}:${portOf(server)}`,
);
if (config.tokenCheck === 'none') {
  logger.warn(
    'TOKEN_CHECK=none: every request is answered; deploy only with --no-allow-unauthenticated',
  );
}
if (config.tokenCheck === 'platform') {
  logger.warn(
    'TOKEN_CHECK=platform trusts tokens whose signature Cloud Run removed: only safe on Cloud Run behind ' +
      '--no-allow-unauthenticated, where IAM checks every token first; anywhere else anyone can forge one',
  );
}
exitOnSignals(server, logger);
