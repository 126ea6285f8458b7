/**
 * `npm start`: the production topology on this machine, from deploy/. Each service runs as its own
 * process started from its Cloud Run manifest, behind a local Cloud Run front door that does what
 * Cloud Run IAM does (receiving private, its policy from deploy/receiving-policy.yaml; calling
 * public); the metadata emulator gives calling its tokens. Ctrl-C (or SIGTERM) stops everything.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { prettyFactory } from 'pino-pretty';
import { EnvReader } from '../services/shared/env.js';
import { PRETTY_OPTIONS } from '../services/shared/logger.js';
import { loadConfigOrExit } from '../services/shared/server.js';
import { startLocalChain, type LocalChain } from './lib/local-chain.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const config = loadConfigOrExit(() => {
  const read = new EnvReader('npm start', process.env);
  return read.done({
    ports: {
      calling: read.port('CALLING_PORT', 8080),
      receiving: read.port('RECEIVING_PORT', 8081),
      metadata: read.port('METADATA_PORT', 8082),
      admin: read.port('ADMIN_PORT', 8083),
    },
    stateDir: read.raw('LOCAL_STATE_DIR') ?? join(root, '.local-state'),
  });
});

const width = 'metadata-emulator'.length;
// The services write Cloud Logging JSON; on a terminal, show it readably.
const pretty = process.stdout.isTTY ? prettyFactory(PRETTY_OPTIONS) : undefined;
const onLine = (name: string, line: string) => {
  const shown = pretty !== undefined && line.startsWith('{') ? pretty(line).trimEnd() : line;
  process.stdout.write(`${name.padEnd(width)} | ${shown}\n`);
};

let chain: LocalChain;
try {
  chain = await startLocalChain({
    ports: config.ports,
    stateDir: config.stateDir,
    baseEnv: process.env,
    onLine,
  });
} catch (err) {
  process.stderr.write(
    `could not start the chain: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(1);
}

const { calling, receiving, metadata, receivingMetadata } = chain;
process.stdout.write(`
  calling            ${calling.url}   public (invoker IAM check disabled), runs as ${calling.serviceAccount}
  receiving          ${receiving.url}   private behind Cloud Run IAM, TOKEN_CHECK=${receiving.manifest.env.TOKEN_CHECK}, runs as ${receiving.serviceAccount}
  metadata emulator  ${metadata.url}   calling's metadata server: mints its ID tokens, publishes keys at /oauth2/v3/certs
                     (receiving has its own, reporting its account, at ${receivingMetadata.url})
  Each service runs as in deploy/*.yaml, behind a local Cloud Run front door on the port above.
  admin API          ${chain.adminUrl}  the Cloud Run Admin API gcloud's run commands call (IAM policies, describe, replace)
  receiving's invokers: ${chain.store.file('receiving')} (from deploy/receiving-policy.yaml)

  Try:  curl ${calling.url}     -> Second service says: Hello World!
        curl -i ${receiving.url}  -> 403, Cloud Run's answer to a request without a token
        eval "$(npm run -s local-env)"; gcloud run services get-iam-policy receiving
        npm run local -- run services get-iam-policy receiving   (the same, without gcloud)
  Ctrl-C stops them all.

`);

let stopping = false;
const stopAll = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await chain.stop();
  process.stdout.write('all services stopped\n');
  process.exit(code);
};
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));
for (const service of [
  chain.calling.process,
  chain.receiving.process,
  chain.metadata,
  chain.receivingMetadata,
]) {
  void service.exited.then((code) => {
    if (stopping) return;
    process.stderr.write(
      `${service.name} exited unexpectedly (code ${code}); stopping the others\n`,
    );
    void stopAll(1);
  });
}
