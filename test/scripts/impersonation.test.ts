import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadSigningKey } from '../../local/metadata-emulator/signing-key.js';
import { startLocalChain, type LocalChain } from '../../scripts/lib/local-chain.js';
import {
  freePort,
  nodeArgsOf,
  startService,
  type ServiceProcess,
} from '../../scripts/lib/processes.js';
import { impersonatedAdc, startGoogleApis, type GoogleApis } from '../helpers/google-apis.js';

const run = promisify(execFile);
const INVOKER = 'cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com';
const OTHER = 'not-an-invoker@local-project.iam.gserviceaccount.com';
const HOP = 'hop@local-project.iam.gserviceaccount.com';
const DEV = 'dev@example.com';
const REFRESH_TOKEN = 'dev-refresh-token';

/**
 * calling off Google Cloud with the credentials developers have: impersonated ADC, as gcloud
 * writes it, through google-auth-library's own code (the bundled calling, a real process), against
 * loopback stand-ins of Google's token endpoint and IAM Credentials; its request reaches
 * receiving's local Cloud Run front, which checks the impersonated account's token and IAM policy.
 */
describe('calling with impersonated credentials, through the local chain', () => {
  let chain: LocalChain;
  let google: GoogleApis;
  let stateDir: string;
  const callings: ServiceProcess[] = [];
  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'impersonation-'));
    const ports = {
      calling: await freePort(),
      receiving: await freePort(),
      metadata: await freePort(),
      admin: await freePort(),
    };
    chain = await startLocalChain({ ports, stateDir, baseEnv: { PATH: process.env.PATH } });
    // IAM Credentials signs with Google's keys; here with the chain's, which the fronts trust.
    const key = await loadSigningKey(
      readFileSync(join(stateDir, 'metadata-signing-key.pem'), 'utf8'),
    );
    google = await startGoogleApis({
      key,
      users: { [REFRESH_TOKEN]: DEV },
      tokenCreators: {
        [INVOKER]: [`user:${DEV}`, `serviceAccount:${HOP}`],
        [OTHER]: [`user:${DEV}`],
        [HOP]: [`user:${DEV}`],
      },
    });
  });
  afterAll(async () => {
    await Promise.all(callings.map((c) => c.stop()));
    await google.close();
    await chain.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const adc = (name: string, content: unknown) => {
    const file = join(stateDir, `${name}.json`);
    writeFileSync(file, JSON.stringify(content), { mode: 0o600 });
    return file;
  };
  /** The bundled calling, as the image runs it, calling receiving's front with these credentials. */
  const callingWith = async (credentials: string) => {
    const calling = await startService('calling', {
      env: {
        PATH: process.env.PATH,
        URL: chain.receiving.url,
        GOOGLE_APPLICATION_CREDENTIALS: credentials,
        ...google.env,
      },
      port: await freePort(),
    });
    callings.push(calling);
    const response = await fetch(`${calling.url}/`);
    return [response.status, await response.text()];
  };
  const idTokenRequests = () => google.requests.filter((r) => r.path.endsWith(':generateIdToken'));

  it("an invoker's impersonated ADC: calling's request reaches receiving with an ID token for that account", async () => {
    const before = idTokenRequests().length;
    expect(await callingWith(adc('invoker', impersonatedAdc(INVOKER)))).toEqual([
      200,
      'Second service says: Hello World!',
    ]);
    const [refresh, mint] = google.requests.slice(-2);
    expect(refresh).toMatchObject({
      host: 'oauth2.googleapis.com',
      path: '/token',
      body: { grant_type: 'refresh_token', refresh_token: REFRESH_TOKEN },
    });
    expect(mint).toMatchObject({
      host: 'iamcredentials.googleapis.com',
      path: `/v1/projects/-/serviceAccounts/${INVOKER}:generateIdToken`,
      authorization: expect.stringMatching(/^Bearer ya29\.standin-/),
      body: { audience: chain.receiving.url, includeEmail: true, delegates: [] },
    });
    expect(idTokenRequests()).toHaveLength(before + 1);
  });

  it('reads the file once, at start: changed afterwards, it changes nothing; nothing of it is in the output', async () => {
    const file = adc('changed', impersonatedAdc(INVOKER));
    let said = '';
    const calling = await startService('calling', {
      env: {
        PATH: process.env.PATH,
        URL: chain.receiving.url,
        GOOGLE_APPLICATION_CREDENTIALS: file,
        ...google.env,
      },
      port: await freePort(),
      onLine: (_name, line) => (said += `${line}\n`),
    });
    callings.push(calling);
    // As a later plain `gcloud auth application-default login` would overwrite it.
    writeFileSync(
      file,
      JSON.stringify({
        type: 'authorized_user',
        client_id: 'c',
        client_secret: 'SECRET-CLIENT',
        refresh_token: 'SECRET-REFRESH',
      }),
    );
    const response = await fetch(`${calling.url}/`);
    expect([response.status, await response.text()]).toEqual([
      200,
      'Second service says: Hello World!',
    ]);
    expect(said).toContain(`"account":"${INVOKER}"`);
    expect(said).not.toMatch(/SECRET|dev-refresh-token|gcloud-client-secret/);
  });

  it('the token is cached: a second request mints nothing', async () => {
    const calling = callings[0]!;
    const before = idTokenRequests().length;
    const response = await fetch(`${calling.url}/`);
    expect(response.status).toBe(200);
    expect(idTokenRequests()).toHaveLength(before);
  });

  it('through a delegate (--impersonate-service-account=HOP,SA): each hop holds the role on the next', async () => {
    expect(await callingWith(adc('delegated', impersonatedAdc(INVOKER, [HOP])))).toEqual([
      200,
      'Second service says: Hello World!',
    ]);
    expect(idTokenRequests().at(-1)!.body.delegates).toEqual([HOP]);
  });

  it("another account's impersonated ADC gets its token, and receiving's front refuses it with 403", async () => {
    const [status, body] = await callingWith(adc('other', impersonatedAdc(OTHER)));
    expect(status).toBe(502);
    expect(body).toContain(
      `answered 403: calling called as ${OTHER} with a token for audience ${chain.receiving.url}`,
    );
    expect(body).toContain(`--member=serviceAccount:${OTHER} --role=roles/run.invoker`);
  });

  it('an impersonation IAM Credentials refuses: 503 naming its answer and the role that is missing', async () => {
    const [status, body] = await callingWith(adc('refused', impersonatedAdc(HOP, [OTHER])));
    expect(status).toBe(503);
    expect(body).toContain(
      "google-auth-library failed: Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist).",
    );
    expect(body).toContain(
      `the account that made them needs roles/iam.serviceAccountTokenCreator on ${HOP}`,
    );
  });

  it('user credentials: calling refuses to start, naming the file, the type and the fix', async () => {
    const file = adc('user', {
      type: 'authorized_user',
      client_id: 'c',
      client_secret: 's',
      refresh_token: REFRESH_TOKEN,
    });
    const exit = await run(process.execPath, nodeArgsOf('calling'), {
      env: {
        PATH: process.env.PATH,
        URL: chain.receiving.url,
        GOOGLE_APPLICATION_CREDENTIALS: file,
        PORT: String(await freePort()),
      },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(exit.code).toBe(1);
    expect(exit.stderr).toContain(
      `GOOGLE_APPLICATION_CREDENTIALS: ${file} holds user credentials (type authorized_user)`,
    );
    expect(exit.stderr).toContain(
      'gcloud auth application-default login --impersonate-service-account=SA',
    );
    expect(exit.stderr).toContain('refusing to start');
    expect(exit.stderr).not.toContain(REFRESH_TOKEN);
  });

  it('IAM Credentials issued tokens for the impersonated accounts only, never for the developer', () => {
    expect(google.issued).toEqual([
      { email: INVOKER, audience: chain.receiving.url },
      { email: INVOKER, audience: chain.receiving.url },
      { email: INVOKER, audience: chain.receiving.url },
      { email: OTHER, audience: chain.receiving.url },
    ]);
  });
});
