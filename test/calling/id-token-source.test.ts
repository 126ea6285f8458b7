import { decodeJwt } from 'jose';
import { createIdTokenSource } from '../../services/calling/id-token-source.js';
import { freePort } from '../../scripts/lib/processes.js';
import { capturingLogger, silentLogger } from '../helpers/logs.js';
import { startEmulator, type RunningEmulator } from '../helpers/servers.js';

const AUDIENCE = 'https://receiving.example';

const failureOf = async (promise: Promise<unknown>): Promise<Error> => {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(Error);
  return error as Error;
};

/** The source calling's main.ts builds, for each origin, against the real emulator or a real key-file path. */
describe('createIdTokenSource', () => {
  let emulator: RunningEmulator;
  beforeAll(async () => {
    emulator = await startEmulator();
  });
  afterAll(() => emulator.close());

  it('metadata origin: gets the token for the audience from the metadata server', async () => {
    const source = createIdTokenSource({ kind: 'metadata', host: emulator.host }, silentLogger());
    const token = await source.getIdToken(AUDIENCE);
    expect(decodeJwt(token)).toMatchObject({
      aud: AUDIENCE,
      email: emulator.config.serviceAccount,
    });
  });

  it('metadata origin: a missing metadata server gets a 503 that says where to point GCE_METADATA_HOST', async () => {
    const host = `127.0.0.1:${await freePort()}`;
    const source = createIdTokenSource({ kind: 'metadata', host }, silentLogger());
    const error = await failureOf(source.getIdToken(AUDIENCE));
    expect(error).toMatchObject({ status: 503 });
    expect(error.message).toBe(
      `could not get an identity token for audience ${AUDIENCE}: the metadata server at ${host} could not be reached (the connection was refused). ` +
        'On Cloud Run the metadata server is always there; off Google Cloud set GCE_METADATA_HOST to the emulator ' +
        '(npm start runs one at 127.0.0.1:8082), or GOOGLE_APPLICATION_CREDENTIALS to impersonated credentials or a key file',
    );
  });

  it('google-auth origin: loads google-auth-library on first use and names the credentials file when it fails', async () => {
    const source = createIdTokenSource(
      {
        kind: 'google-auth',
        credentials: {
          type: 'service_account',
          file: '/nonexistent/key.json',
          account: 'a@p.iam.gserviceaccount.com',
        },
        json: {
          type: 'service_account',
          client_email: 'a@p.iam.gserviceaccount.com',
          private_key: 'not a key',
        },
      },
      silentLogger(),
    );
    const error = await failureOf(source.getIdToken(AUDIENCE));
    expect(error).toMatchObject({ status: 503 });
    // The key itself was tried, so google-auth-library was given these credentials and signed with them.
    expect(error.message).toMatch(
      /: google-auth-library failed: (?:Error: )?error:\w+:DECODER routines::unsupported\. /,
    );
    expect(error.message).not.toContain('not a key');
    expect(error.message).toMatch(
      /\. Check the service-account key in GOOGLE_APPLICATION_CREDENTIALS \(\/nonexistent\/key\.json\)$/,
    );
  });

  it('google-auth origin, impersonated: a failure names the file and the role the account that made it needs', async () => {
    const source = createIdTokenSource(
      {
        kind: 'google-auth',
        credentials: {
          type: 'impersonated_service_account',
          file: '/x/adc.json',
          account: 'sa@p.iam.gserviceaccount.com',
          delegates: [],
        },
        json: {
          type: 'impersonated_service_account',
          service_account_impersonation_url:
            'https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken',
          // A key source that fails to sign before any request could go out.
          source_credentials: {
            type: 'service_account',
            client_email: 'me@p.iam.gserviceaccount.com',
            private_key: 'not a key',
          },
        },
      },
      silentLogger(),
    );
    const error = await failureOf(source.getIdToken(AUDIENCE));
    expect(error.message).toMatch(
      /\. Check the impersonated credentials in GOOGLE_APPLICATION_CREDENTIALS \(\/x\/adc\.json\): the account that made them needs roles\/iam\.serviceAccountTokenCreator on sa@p\.iam\.gserviceaccount\.com$/,
    );
  });

  it('logs a failed background refresh as a warning naming the audience, and keeps the cached token', async () => {
    const { logger, lines } = capturingLogger();
    // An emulator whose clock is behind: its tokens have four minutes left, inside the refresh-ahead
    // window (five) and far from the minimum validity (30 s).
    const other = await startEmulator(
      {},
      { now: () => Math.floor(Date.now() / 1000) - (3600 - 240) },
    );
    const source = createIdTokenSource({ kind: 'metadata', host: other.host }, logger);
    const token = await source.getIdToken(AUDIENCE);
    await other.close();
    await expect(source.getIdToken(AUDIENCE)).resolves.toBe(token);
    // Three attempts at the closed port, with backoff: well under two seconds.
    const warningIn = () =>
      lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.severity === 'WARNING');
    for (const deadline = Date.now() + 5000; warningIn() === undefined && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const warning = warningIn();
    expect(warning).toMatchObject({
      audience: AUDIENCE,
      cause: expect.stringContaining(
        `could not get an identity token for audience ${AUDIENCE}: the metadata server at ${other.host} `,
      ),
      message: 'background ID token refresh failed; the cached token is still valid',
    });
    expect(lines.join('\n')).not.toContain(token.split('.')[2]);
  });
});
