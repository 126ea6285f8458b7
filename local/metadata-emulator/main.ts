import { readFileSync } from 'node:fs';
import { createLogger } from '../../services/shared/logger.js';
import {
  exitOnSignals,
  listenOrExit,
  loadConfigOrExit,
  portOf,
} from '../../services/shared/server.js';
import { createMetadataEmulator } from './app.js';
import { loadEmulatorConfig } from './config.js';
import { createSigningKey, loadSigningKey, type SigningKey } from './signing-key.js';

const config = loadConfigOrExit(() => loadEmulatorConfig(process.env));
const logger = createLogger('metadata-emulator', config.logLevel);
const key =
  config.signingKeyFile === undefined
    ? await createSigningKey()
    : await loadKeyOrExit(config.signingKeyFile);
const { app, endWaits } = createMetadataEmulator({ config, key, logger });
const server = await listenOrExit(app, config.host, config.port);
const where = `${config.host}:${portOf(server)}`;
logger.info(
  {
    host: config.host,
    port: portOf(server),
    serviceAccount: config.serviceAccount,
    projectId: config.projectId,
  },
  `metadata emulator listening on ${where} (a development tool: never expose it); ` +
    `GCE_METADATA_HOST=${where}, JWKS at http://${where}/oauth2/v3/certs`,
);
// Requests held by wait_for_change are answered at once, so the server closes without its grace.
process.once('SIGTERM', endWaits).once('SIGINT', endWaits);
exitOnSignals(server, logger);

async function loadKeyOrExit(file: string): Promise<SigningKey> {
  try {
    return await loadSigningKey(readFileSync(file, 'utf8'));
  } catch (err) {
    const why =
      (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    process.stderr.write(
      `metadata-emulator: invalid configuration:\n  - SIGNING_KEY_FILE ${file}: ${why}\nrefusing to start.\n`,
    );
    process.exit(1);
  }
}
