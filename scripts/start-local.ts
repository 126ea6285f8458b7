/**
 * `npm start`: the whole chain on this machine, each service its own process as on Cloud Run.
 * Ctrl-C (or SIGTERM) stops all three.
 */
import { prettyFactory } from 'pino-pretty';
import { EnvReader } from '../services/shared/env.js';
import { PRETTY_OPTIONS } from '../services/shared/logger.js';
import { loadConfigOrExit } from '../services/shared/main-support.js';
import { startLocalChain, type LocalChain } from './lib/local-chain.js';

const ports = loadConfigOrExit(() => {
  const read = new EnvReader('npm start', process.env);
  return read.done({
    calling: read.port('CALLING_PORT', 8080),
    receiving: read.port('RECEIVING_PORT', 8081),
    metadata: read.port('METADATA_PORT', 8082),
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
  chain = await startLocalChain({ ports, baseEnv: process.env, onLine });
} catch (err) {
  process.stderr.write(`could not start the chain: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

process.stdout.write(`
  calling            ${chain.calling.url}   public: gets an ID token, calls receiving
  receiving          ${chain.receiving.url}   private: verifies tokens, invoker ${chain.identity.serviceAccount}
  metadata emulator  ${chain.metadata.url}   mints ID tokens, publishes keys at /oauth2/v3/certs

  Try:  curl ${chain.calling.url}     -> Second service says: Hello World!
        curl -i ${chain.receiving.url}  -> 401, no token
  Ctrl-C stops all three.

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
for (const service of [chain.calling, chain.receiving, chain.metadata]) {
  void service.exited.then((code) => {
    if (stopping) return;
    process.stderr.write(`${service.name} exited unexpectedly (code ${code}); stopping the others\n`);
    void stopAll(1);
  });
}
