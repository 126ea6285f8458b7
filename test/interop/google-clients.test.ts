import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GoogleAuth, OAuth2Client } from 'google-auth-library';
import { decodeJwt } from 'jose';
import { findGcloud } from '../helpers/gcloud.js';
import { useMetadataServer } from '../helpers/google-env.js';
import { startEmulator, type RunningEmulator } from '../helpers/servers.js';

const run = promisify(execFile);
const AUDIENCE = 'https://receiving-abc123-uc.a.run.app';

describe("Google's own clients get ID tokens from the emulator, unmodified", () => {
  let emulator: RunningEmulator;
  let gcloudConfig: string;
  let sdk: string | undefined;
  beforeAll(async () => {
    emulator = await startEmulator();
    gcloudConfig = mkdtempSync(join(tmpdir(), 'interop-gcloud-'));
    sdk = (await findGcloud('the interop with Python google-auth and gcloud'))?.root;
  });
  afterAll(async () => {
    await emulator.close();
    rmSync(gcloudConfig, { recursive: true, force: true });
  });

  /** An environment with no credentials but the emulator, and a fresh gcloud config. */
  const childEnv = (extra: Record<string, string>) => {
    const env: Record<string, string | undefined> = { ...process.env, CLOUDSDK_CONFIG: gcloudConfig, ...extra };
    delete env.GOOGLE_APPLICATION_CREDENTIALS;
    return env;
  };

  const expectEmulatorToken = (token: string, audience: string) => {
    expect(decodeJwt(token)).toMatchObject({
      aud: audience,
      email: emulator.config.serviceAccount,
      iss: 'https://accounts.google.com',
    });
  };

  describe('Node google-auth-library', () => {
    let restoreEnv: () => void;
    beforeAll(() => {
      restoreEnv = useMetadataServer(emulator.host);
    });
    afterAll(() => restoreEnv());

    it('gets a token through GoogleAuth.getIdTokenClient (GCE_METADATA_HOST)', async () => {
      const client = await new GoogleAuth().getIdTokenClient(AUDIENCE);
      const authorization = (await client.getRequestHeaders()).get('authorization') ?? '';
      expect(authorization).toMatch(/^Bearer /);
      expectEmulatorToken(authorization.slice(7), AUDIENCE);
    });

    it("verifies the emulator's tokens with its own verifier and the emulator's PEM certs", async () => {
      const client = await new GoogleAuth().getIdTokenClient(AUDIENCE);
      const token = (await client.getRequestHeaders()).get('authorization')!.slice(7);
      const pems = (await (await fetch(`${emulator.url}/oauth2/v1/certs`)).json()) as Record<string, string>;
      const ticket = await new OAuth2Client().verifySignedJwtWithCertsAsync(token, pems, AUDIENCE, ['https://accounts.google.com']);
      expect(ticket.getPayload()?.email).toBe(emulator.config.serviceAccount);
    });
  });

  describe('Python google-auth (gcloud bundled python)', () => {
    it('fetches a token with id_token.fetch_id_token and verifies it against /oauth2/v1/certs', async () => {
      if (sdk === undefined) return console.warn('gcloud is not installed: Python google-auth interop not checked');
      const python = join(sdk, 'platform/bundledpythonunix/bin/python3');
      expect(existsSync(python)).toBe(true);
      const script = [
        'import json, sys',
        'import google.auth.transport.requests as transport',
        'from google.oauth2 import id_token',
        'request = transport.Request()',
        'token = id_token.fetch_id_token(request, sys.argv[1])',
        'claims = id_token.verify_token(token, request, audience=sys.argv[1], certs_url=sys.argv[2])',
        'print(json.dumps({"token": token, "email": claims["email"]}))',
      ].join('\n');
      // An audience with a query string: Python encodes it, so it arrives whole.
      const audience = `${AUDIENCE}/path?a=1&b=2`;
      const { stdout } = await run(python, ['-c', script, audience, `${emulator.url}/oauth2/v1/certs`], {
        env: childEnv({
          PYTHONPATH: join(sdk, 'lib/third_party'),
          GCE_METADATA_HOST: emulator.host,
          GCE_METADATA_IP: emulator.host,
        }),
        timeout: 60_000,
      });
      const result = JSON.parse(stdout) as { token: string; email: string };
      expect(result.email).toBe(emulator.config.serviceAccount);
      expectEmulatorToken(result.token, audience);
    });
  });

  describe('gcloud CLI', () => {
    it('prints a token with `gcloud auth print-identity-token` (GCE_METADATA_ROOT)', async () => {
      if (sdk === undefined) return console.warn('gcloud is not installed: gcloud interop not checked');
      const { stdout } = await run('gcloud', ['auth', 'print-identity-token', `--audiences=${AUDIENCE}`], {
        env: childEnv({ GCE_METADATA_ROOT: emulator.host }),
        timeout: 120_000,
      });
      expectEmulatorToken(stdout.trim(), AUDIENCE);
    });
  });
});
