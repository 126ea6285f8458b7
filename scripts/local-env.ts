/**
 * `eval "$(npm run -s local-env)"`: points gcloud, in this shell, at the running local chain. It
 * prints `export` lines for a POSIX shell: a gcloud config of the chain's own (so the user's real
 * gcloud setup is never read or changed), the chain's metadata server as gcloud's credentials, the
 * local Admin API as the Cloud Run endpoint, and the chain's project and region. Then the
 * tutorial's commands run as written:
 *
 *   gcloud run services add-iam-policy-binding receiving --member=serviceAccount:EMAIL --role=roles/run.invoker
 */
import { lookup } from 'node:dns/promises';
import { gcloudEnv, readChainFile, type ChainFile } from './lib/chain-file.js';

let chain: ChainFile;
try {
  chain = readChainFile();
} catch (err) {
  process.stderr.write(`local-env: ${(err as Error).message}\n`);
  process.exit(1);
}
const SHADOWING = [
  'CLOUDSDK_ACTIVE_CONFIG_NAME',
  'CLOUDSDK_CORE_ACCOUNT',
  'CLOUDSDK_AUTH_ACCESS_TOKEN',
  'CLOUDSDK_AUTH_ACCESS_TOKEN_FILE',
  'CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE',
  'CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT',
];
const quote = (value: string) => `'${value.replaceAll("'", `'\\''`)}'`;
// What would make gcloud use another identity or config than the chain's, and send its token here.
process.stdout.write(`unset ${SHADOWING.join(' ')}\n`);
for (const [name, value] of Object.entries(gcloudEnv(chain)))
  process.stdout.write(`export ${name}=${quote(value)}\n`);

// describe and replace go to the regional host, REGION-HOST: it must resolve to this machine.
const admin = new URL(chain.admin);
const regional = `${chain.region}-${admin.hostname}`;
const resolved = await lookup(regional).then(
  (found) => found.address,
  () => undefined,
);
if (resolved !== '127.0.0.1') {
  process.stderr.write(
    `local-env: gcloud run services describe and replace call ${regional}, which ${resolved === undefined ? 'does not resolve' : `resolves to ${resolved}`} here; ` +
      `for them, add it to /etc/hosts: echo '127.0.0.1 ${regional}' | sudo tee -a /etc/hosts\n`,
  );
}
