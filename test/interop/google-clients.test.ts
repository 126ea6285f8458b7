import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import { findGcloud } from '../helpers/gcloud.js';
import { loopbackNamespace, type LoopbackNamespace, type Result } from '../helpers/netns.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const clients = join(root, 'test/interop/clients');
// npm start's default ports, free inside the namespace.
const RECEIVING = 'http://127.0.0.1:8081';
const AUDIENCE = RECEIVING;
const CERTS = 'http://127.0.0.1:8082/oauth2/v1/certs';
const JWKS = 'http://127.0.0.1:8082/oauth2/v3/certs';
const INVOKER = 'cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com';
const STRANGER = 'stranger@local-project.iam.gserviceaccount.com';
/** calling's metadata server (calling's account: receiving's invoker), and one for an account receiving's policy does not name. */
const HOSTS = { invoker: '127.0.0.1:8082', stranger: '127.0.0.1:8092' } as const;
type As = keyof typeof HOSTS;

// The clients this machine has; test/interop/install-clients.sh installs Debian's. Each missing one
// is skipped, its reason in its name (the summary prints it).
const sdk = await findGcloud('the interop with gcloud and its Python google-auth');
const DEBIAN_PYTHON =
  existsSync('/usr/lib/python3/dist-packages/google/auth/compute_engine') &&
  existsSync('/usr/lib/python3/dist-packages/requests');
const JARS = [
  'google-api-client',
  'google-oauth-client',
  'google-http-client',
  'google-http-client-gson',
  'google-http-client-jackson2',
  'google-auth-library-oauth2-http',
  'google-auth-library-credentials',
  'gson',
  'jackson-core',
  'guava',
  'opencensus-api',
  'opencensus-contrib-http-util',
  'grpc-context',
  'commons-codec',
  'httpclient',
  'httpcore',
].map((jar) => `/usr/share/java/${jar}.jar`);
const JAVA =
  JARS.every((jar) => existsSync(jar)) &&
  (process.env.PATH ?? '').split(delimiter).some((dir) => existsSync(join(dir, 'javac')));

/** A client's tests, or its tests skipped with the reason in the title. */
const client = (name: string, missing: string | false, tests: () => void) => {
  if (missing) console.warn(`interop ${name}: skipped: ${missing}`);
  (missing ? describe.skip : describe)(
    missing ? `client ${name} (skipped: ${missing})` : `client ${name}`,
    tests,
  );
};

describe("Google's own clients against npm start, unmodified, in a loopback-only namespace", () => {
  let ns: LoopbackNamespace | undefined;
  const children: ChildProcess[] = [];
  let stateDir: string;
  let output = '';
  beforeAll(async () => {
    ns = await loopbackNamespace('127.0.0.1 localhost\n', "the interop with Google's clients");
    if (ns === undefined) return;
    stateDir = mkdtempSync(join(tmpdir(), 'interop-'));
    const chain = ns.spawn(process.execPath, [join(root, 'dist/scripts/start-local.js')], {
      ...process.env,
      LOCAL_STATE_DIR: stateDir,
    });
    children.push(chain);
    chain.stdout!.on('data', (chunk) => (output += chunk));
    chain.stderr!.on('data', (chunk) => (output += chunk));
    for (let i = 0; i < 400 && !output.includes('Ctrl-C stops them all'); i += 1)
      await new Promise((r) => setTimeout(r, 50));
    if (!output.includes('Ctrl-C stops them all'))
      throw new Error(`npm start did not come up:\n${output}`);
    // Signing with the chain's key, so receiving's front verifies its tokens; its IAM policy decides.
    const stranger = ns.spawn(
      process.execPath,
      [join(root, 'dist/local/metadata-emulator/main.js')],
      {
        ...process.env,
        PORT: HOSTS.stranger.split(':')[1],
        SERVICE_ACCOUNT: STRANGER,
        SIGNING_KEY_FILE: join(stateDir, 'metadata-signing-key.pem'),
      },
    );
    children.push(stranger);
    let said = '';
    stranger.stdout!.on('data', (chunk) => (said += chunk));
    for (let i = 0; i < 200 && !said.includes('listening'); i += 1)
      await new Promise((r) => setTimeout(r, 50));
  }, 90_000);
  afterAll(async () => {
    for (const child of children.reverse()) {
      if (child.exitCode !== null) continue;
      child.kill('SIGINT');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    ns?.close();
    if (stateDir !== undefined) rmSync(stateDir, { recursive: true, force: true });
  });

  /** A client's process in the namespace, with no credentials but these variables. */
  const inside = async (
    command: string,
    args: string[],
    env: Record<string, string>,
  ): Promise<Result> => {
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(
        ([name]) => !/^(GOOGLE_|GCE_|CLOUDSDK_|METADATA_)/.test(name),
      ),
    );
    const result = await ns!.run(command, args, { env: { ...clean, ...env }, timeoutMs: 120_000 });
    if (result.code !== 0) throw new Error(`${command} exited ${result.code}:\n${result.stderr}`);
    return result;
  };
  /** What receiving's front answers to a request with this bearer token. */
  const callReceiving = async (token: string) => {
    const { stdout } = await inside(
      'curl',
      ['-s', '-w', ' %{http_code}', '-H', `Authorization: Bearer ${token}`, RECEIVING],
      {},
    );
    return stdout;
  };
  const expectToken = (token: string, as: As) => {
    expect(decodeJwt(token)).toMatchObject({
      aud: AUDIENCE,
      email: as === 'invoker' ? INVOKER : STRANGER,
      iss: 'https://accounts.google.com',
    });
  };
  const json = (result: Result) =>
    JSON.parse(result.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;

  client('gcloud', sdk === undefined && 'gcloud is not installed', () => {
    const printToken = async (as: As) => {
      const config = mkdtempSync(join(tmpdir(), 'interop-gcloud-'));
      try {
        // A fresh config each time: gcloud caches whether it is on GCE.
        const { stdout } = await inside(
          'gcloud',
          ['auth', 'print-identity-token', `--audiences=${AUDIENCE}`],
          {
            CLOUDSDK_CONFIG: config,
            GCE_METADATA_ROOT: HOSTS[as],
          },
        );
        return stdout.trim();
      } finally {
        rmSync(config, { recursive: true, force: true });
      }
    };
    it.each([
      ['invoker', 200],
      ['stranger', 403],
    ] as const)(
      'auth print-identity-token (GCE_METADATA_ROOT) as the %s: receiving answers %s',
      async (as, status) => {
        if (ns === undefined) return;
        const token = await printToken(as);
        expectToken(token, as);
        expect(await callReceiving(token)).toMatch(status === 200 ? /^Hello World! 200$/ : / 403$/);
      },
      120_000,
    );
  });

  client('Node google-auth-library + gcp-metadata', false, () => {
    it.each([
      ['invoker', 200],
      ['stranger', 403],
    ] as const)(
      'GCE_METADATA_HOST: values, a wait, an ID token verified against the X.509 certs; as the %s receiving answers %s',
      async (as, status) => {
        if (ns === undefined) return;
        const result = json(
          await inside(
            process.execPath,
            [join(clients, 'node-client.mjs'), AUDIENCE, CERTS, RECEIVING],
            { GCE_METADATA_HOST: HOSTS[as] },
          ),
        );
        expect(result).toMatchObject({
          available: true,
          projectId: 'local-project',
          email: as === 'invoker' ? INVOKER : STRANGER,
          waited: expect.stringMatching(/^\d+$/),
          verifiedEmail: as === 'invoker' ? INVOKER : STRANGER,
          status,
        });
        if (status === 200) expect(result.body).toBe('Hello World!');
      },
      60_000,
    );
  });

  const python =
    (python: string, env: (host: string) => Record<string, string>, how: string) => () => {
      it.each([
        ['invoker', 200],
        ['stranger', 403],
      ] as const)(
        `Credentials().refresh(), ${how}, verify_token against the X.509 certs; as the %s receiving answers %s`,
        async (as, status) => {
          if (ns === undefined) return;
          const result = json(
            await inside(
              python,
              [join(clients, 'python_client.py'), AUDIENCE, CERTS, RECEIVING],
              env(HOSTS[as]),
            ),
          );
          const account = as === 'invoker' ? INVOKER : STRANGER;
          expect(result).toMatchObject({
            access_token: true,
            account,
            how,
            verified_email: account,
            status,
          });
          if (status === 200) expect(result.body).toBe('Hello World!');
        },
        60_000,
      );
    };
  client(
    "Python google-auth 1.5.1 (Debian's python3-google-auth)",
    !DEBIAN_PYTHON &&
      'python3-google-auth and python3-requests are not installed (test/interop/install-clients.sh)',
    // 1.x reads GCE_METADATA_ROOT for values and GCE_METADATA_IP for its ping; it has no fetch_id_token.
    python(
      '/usr/bin/python3',
      (host) => ({ GCE_METADATA_ROOT: host, GCE_METADATA_IP: host }),
      '_metadata.get',
    ),
  );
  client(
    "Python google-auth 2.x (gcloud's bundled)",
    sdk === undefined && 'gcloud is not installed',
    python(
      sdk?.python ?? '',
      (host) => ({
        PYTHONPATH: join(sdk?.root ?? '', 'lib/third_party'),
        GCE_METADATA_HOST: host,
        GCE_METADATA_IP: host,
      }),
      'fetch_id_token',
    ),
  );

  client(
    "Java google-auth-library 0.18 + GoogleIdTokenVerifier 1.27 (Debian's)",
    !JAVA &&
      'a JDK and libgoogle-api-client-java, libgoogle-auth-java are not installed (test/interop/install-clients.sh)',
    () => {
      it.each([
        ['invoker', 200],
        ['stranger', 403],
      ] as const)(
        'ComputeEngineCredentials (GCE_METADATA_HOST), verified against the X.509 certs; as the %s receiving answers %s',
        async (as, status) => {
          if (ns === undefined) return;
          const result = json(
            await inside(
              'java',
              [
                '-cp',
                JARS.join(':'),
                join(clients, 'JavaClient.java'),
                AUDIENCE,
                CERTS,
                JWKS,
                RECEIVING,
              ],
              {
                GCE_METADATA_HOST: HOSTS[as],
              },
            ),
          );
          expect(result).toEqual({
            verified: true,
            email: as === 'invoker' ? INVOKER : STRANGER,
            status,
          });
        },
        60_000,
      );
    },
  );
});
