import { createLogger } from '../shared/logger.js';
import { loadConfigOrExit } from '../shared/main-support.js';
import { exitOnSignals, listen, portOf } from '../shared/server.js';
import { createReceivingApp } from './app.js';
import { authenticate } from './authenticate.js';
import { loadReceivingConfig } from './config.js';
import { createJwksTokenVerifier } from './token-verifier.js';

const logger = createLogger('receiving');
const config = loadConfigOrExit(() => loadReceivingConfig(process.env));

const auth =
  config.tokenCheck === 'verify'
    ? authenticate(
        createJwksTokenVerifier({
          jwksUrl: config.jwksUrl,
          audiences: config.audiences,
          issuers: config.issuers,
        }),
        config.invokers,
      )
    : null;

const server = await listen(createReceivingApp({ authenticate: auth, logger }), config.host, config.port);
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
  logger.warn('TOKEN_CHECK=none: every request is answered; deploy only with --no-allow-unauthenticated');
}
exitOnSignals(server, logger);
