import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { createRequire } from 'node:module';
import { GoogleAuth, type OAuth2ClientOptions } from 'google-auth-library';
import { decodeJwt, importSPKI, jwtVerify } from 'jose';
import {
  createGoogleAuthIdTokenFetcher,
  createMetadataIdTokenFetcher,
  IdTokenFetchError,
} from '../../services/calling/id-token-fetchers.js';
import type { HttpFailure } from '../../services/shared/http.js';
import { freePort } from '../../scripts/lib/processes.js';
import { faultyFront, resettingServer } from '../helpers/faults.js';
import { serve, startEmulator, type Running, type RunningEmulator } from '../helpers/servers.js';
import { createMetadataEmulator } from '../../local/metadata-emulator/app.js';
import { silentLogger } from '../helpers/logs.js';
import { timersOf } from '../helpers/timers.js';

// google-auth-library is CommonJS: its transporter must be the CommonJS gaxios it loads itself.
type Transporter = NonNullable<OAuth2ClientOptions['transporter']>;
const { Gaxios } = createRequire(import.meta.url)('gaxios') as { Gaxios: new () => Transporter };

const failureOf = async (promise: Promise<unknown>): Promise<IdTokenFetchError> => {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(IdTokenFetchError);
  return error as IdTokenFetchError;
};

describe('IdTokenFetchError', () => {
  it('is named, and carries a cause only when given one', () => {
    const plain = new IdTokenFetchError('x', true);
    expect(plain.name).toBe('IdTokenFetchError');
    expect('cause' in plain).toBe(false);
    expect(plain.silent).toBeUndefined();
    const cause = new Error('inner');
    expect(new IdTokenFetchError('x', false, { cause }).cause).toBe(cause);
  });
});

/** A metadata-like server answering whatever `answer` does, counting requests. */
async function fakeMetadata(
  answer: express.RequestHandler,
): Promise<Running & { readonly requests: number }> {
  const app = express();
  let requests = 0;
  app.use((_req, _res, next) => {
    requests += 1;
    next();
  }, answer);
  const running = await serve(app);
  return {
    ...running,
    get requests() {
      return requests;
    },
  };
}

describe('createMetadataIdTokenFetcher', () => {
  let emulator: RunningEmulator;
  let front: ReturnType<typeof faultyFront>;
  let running: Running;
  beforeAll(async () => {
    emulator = await startEmulator();
    front = faultyFront(
      createMetadataEmulator({ config: emulator.config, key: emulator.key, logger: silentLogger() })
        .app,
      1000,
    );
    running = await serve(front.app);
  });
  afterEach(() => {
    front.fault = 'none';
  });
  afterAll(async () => {
    await running.close();
    await emulator.close();
  });

  it('gets a token, URL-encoding the audience so it arrives whole', async () => {
    const audience = 'https://receiving.example/path?a=1&b=2';
    const token = await createMetadataIdTokenFetcher(running.host)(audience, 2000);
    expect(decodeJwt(token)).toMatchObject({
      aud: audience,
      email: emulator.config.serviceAccount,
    });
  });

  it('reports a refused connection as transient', async () => {
    const host = `127.0.0.1:${await freePort()}`;
    const error = await failureOf(createMetadataIdTokenFetcher(host)('a', 2000));
    expect(error).toMatchObject({
      transient: true,
      reason: `the metadata server at ${host} could not be reached (the connection was refused)`,
    });
    expect((error.cause as HttpFailure).kind).toBe('refused');
    expect(error.silent).toBeUndefined(); // it answered, by refusing
  });

  it('reports a reset connection as transient', async () => {
    const reset = await resettingServer();
    const host = `127.0.0.1:${reset.port}`;
    try {
      const error = await failureOf(createMetadataIdTokenFetcher(host)('a', 2000));
      expect(error).toMatchObject({
        transient: true,
        reason: `the metadata server at ${host} could not be reached (the connection was reset)`,
      });
    } finally {
      await reset.close();
    }
  });

  it('keeps its connection to the metadata server alive between tokens', async () => {
    const fetcher = createMetadataIdTokenFetcher(running.host);
    const before = front.requests;
    let connections = 0;
    const count = () => {
      connections += 1;
    };
    running.server.on('connection', count);
    try {
      for (let i = 0; i < 3; i += 1) await fetcher(`https://aud-${i}.example`, 2000);
    } finally {
      running.server.off('connection', count);
    }
    expect(front.requests - before).toBe(3);
    expect(connections).toBe(1);
  });

  it('leaves no timer behind once a token has come', async () => {
    const fetcher = createMetadataIdTokenFetcher(running.host);
    await fetcher('https://warm.example', 60_000);
    expect(await timersOf(60_000, () => fetcher('https://after.example', 60_000))).toEqual({
      set: 1,
      uncleared: 0,
    });
  });

  it('trims the answer, and refuses one that is not a token as not transient', async () => {
    let answer = 'aaa.bbb.ccc\n';
    const server = await fakeMetadata((_req, res) => {
      res.set('Metadata-Flavor', 'Google').type('text/plain').send(answer);
    });
    try {
      const fetcher = createMetadataIdTokenFetcher(server.host);
      await expect(fetcher('a', 2000)).resolves.toBe('aaa.bbb.ccc');
      for (answer of ['<html>hello</html>', 'x y.b.c', 'a.b.c d', 'a.b']) {
        const error = await failureOf(fetcher('a', 2000));
        expect(error).toMatchObject({
          transient: false,
          reason: `the metadata server at ${server.host} answered something that is not a token`,
        });
      }
    } finally {
      await server.close();
    }
  });

  it('does not follow a redirect: the answer is the 3xx itself', async () => {
    const target = await fakeMetadata((_req, res) => {
      res.set('Metadata-Flavor', 'Google').send('aaa.bbb.ccc');
    });
    const redirecting = await fakeMetadata((_req, res) => {
      res.set('Metadata-Flavor', 'Google').redirect(302, `${target.url}/token`);
    });
    try {
      const error = await failureOf(createMetadataIdTokenFetcher(redirecting.host)('a', 2000));
      expect(error).toMatchObject({
        transient: false,
        reason: `the metadata server at ${redirecting.host} answered 302`,
      });
      expect(target.requests).toBe(0);
    } finally {
      await redirecting.close();
      await target.close();
    }
  });

  it('reports a 429 as transient', async () => {
    const server = await fakeMetadata((_req, res) => {
      res.status(429).set('Metadata-Flavor', 'Google').send('slow down');
    });
    try {
      const error = await failureOf(createMetadataIdTokenFetcher(server.host)('a', 2000));
      expect(error).toMatchObject({
        transient: true,
        reason: `the metadata server at ${server.host} answered 429`,
      });
    } finally {
      await server.close();
    }
  });

  it('reports a slow server as a transient timeout', async () => {
    front.fault = 'slow';
    const error = await failureOf(createMetadataIdTokenFetcher(running.host)('a', 100));
    expect(error).toMatchObject({
      transient: true,
      reason: `the metadata server at ${running.host} did not answer within 100 ms`,
      silent: `the metadata server at ${running.host}`,
    });
  });

  it('reports a 500 as transient', async () => {
    front.fault = 'error-500';
    const error = await failureOf(createMetadataIdTokenFetcher(running.host)('a', 2000));
    expect(error).toMatchObject({
      transient: true,
      reason: `the metadata server at ${running.host} answered 500`,
    });
  });

  it('refuses an answer without Metadata-Flavor: it is not a metadata server', async () => {
    front.fault = 'no-flavor';
    const error = await failureOf(createMetadataIdTokenFetcher(running.host)('a', 2000));
    expect(error.transient).toBe(false);
    expect(error.reason).toContain('answered without Metadata-Flavor: Google');
  });

  it('says a server that answers more than 64 KB did so, and does not call that transient', async () => {
    const app = express();
    app.use((_req, res) => {
      res
        .status(200)
        .set('Metadata-Flavor', 'Google')
        .type('application/text')
        .send('a'.repeat(100 * 1024));
    });
    const flood = await serve(app);
    const error = await failureOf(createMetadataIdTokenFetcher(flood.host)('a', 2000));
    await flood.close();
    expect(error).toMatchObject({
      transient: false,
      reason: `the metadata server at ${flood.host} answered more than 64 KB`,
    });
    expect((error.cause as HttpFailure).kind).toBe('too-large');
  });

  it('reports a 4xx as not transient', async () => {
    const app = express();
    app.use((_req, res) => {
      res.status(404).set('Metadata-Flavor', 'Google').send('not found');
    });
    const notFound = await serve(app);
    const error = await failureOf(createMetadataIdTokenFetcher(notFound.host)('a', 2000));
    await notFound.close();
    expect(error).toMatchObject({
      transient: false,
      reason: `the metadata server at ${notFound.host} answered 404`,
    });
  });
});

describe('createGoogleAuthIdTokenFetcher (off Google Cloud, with a service-account key)', () => {
  it("mints an ID token through google-auth-library's JWT flow (token endpoint stood in for on loopback)", async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const email = 'calling@my-project.iam.gserviceaccount.com';
    let assertion: Record<string, unknown> | undefined;
    const tokenEndpoint = express();
    tokenEndpoint.post('/token', express.urlencoded({ extended: false }), async (req, res) => {
      // As oauth2.googleapis.com does: check the signed assertion, answer with an ID token.
      const spki = await importSPKI(
        publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        'RS256',
      );
      const { payload } = await jwtVerify(String(req.body.assertion), spki);
      assertion = payload;
      const idToken = `e30.${Buffer.from(JSON.stringify({ aud: payload.target_audience, email, exp: 4102444800 })).toString('base64url')}.sig`;
      res.json({ id_token: idToken });
    });
    const endpoint = await serve(tokenEndpoint);
    const dir = mkdtempSync(join(tmpdir(), 'sa-key-'));
    const keyFile = join(dir, 'key.json');
    writeFileSync(
      keyFile,
      JSON.stringify({
        type: 'service_account',
        project_id: 'my-project',
        private_key_id: 'k1',
        private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        client_email: email,
        client_id: '1',
        token_uri: 'https://oauth2.googleapis.com/token',
      }),
    );
    try {
      // google-auth-library posts to https://oauth2.googleapis.com/token whatever token_uri says; this
      // test sends that request to the loopback endpoint instead (nothing leaves the machine).
      const transporter = new Gaxios();
      transporter.interceptors.request.add({
        resolved: async <T extends { url?: string | URL }>(options: T) => {
          if (String(options.url).startsWith('https://oauth2.googleapis.com/token'))
            options.url = new URL(`${endpoint.url}/token`);
          return options;
        },
      });
      const fetcher = createGoogleAuthIdTokenFetcher(
        async () => new GoogleAuth({ keyFilename: keyFile, clientOptions: { transporter } }),
      );
      const token = await fetcher('https://receiving.example', 5000);
      expect(decodeJwt(token)).toMatchObject({ aud: 'https://receiving.example', email });
      expect(assertion).toMatchObject({ iss: email, target_audience: 'https://receiving.example' });
    } finally {
      await endpoint.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a key file that does not exist as a failure, not a crash', async () => {
    const fetcher = createGoogleAuthIdTokenFetcher(
      async () => new GoogleAuth({ keyFilename: '/nonexistent/key.json' }),
    );
    const error = await failureOf(fetcher('a', 5000));
    expect(error.reason).toMatch(/^google-auth-library failed: /);
    expect((error.cause as { code?: string }).code).toBe('ENOENT');
  });
});

describe('createGoogleAuthIdTokenFetcher (its failures, with stand-in credentials)', () => {
  /** A GoogleAuth stand-in whose getClient does what the test says: a unit test of this module alone. */
  const authWith = (getClient: () => Promise<unknown>) => async () =>
    ({ getClient }) as unknown as GoogleAuth;

  it('gives up on credentials that never answer, naming google-auth-library as silent', async () => {
    const fetcher = createGoogleAuthIdTokenFetcher(authWith(() => new Promise(() => undefined)));
    const error = await failureOf(fetcher('a', 100));
    expect(error).toMatchObject({
      transient: true,
      silent: 'google-auth-library',
      reason: 'google-auth-library did not get a token within 100 ms',
    });
  });

  it('says so when the credentials cannot mint ID tokens, and does not call that transient', async () => {
    for (const client of [{}, { fetchIdToken: 'not a function' }]) {
      const error = await failureOf(
        createGoogleAuthIdTokenFetcher(authWith(async () => client))('a', 1000),
      );
      expect(error).toMatchObject({
        transient: false,
        reason:
          'these credentials cannot mint ID tokens (use a service-account key or impersonation, or run on Google Cloud)',
      });
    }
  });

  it('words a rejection that is no Error, and retries it', async () => {
    const reasons: string[] = [];
    for (const thrown of [undefined, null, Object.create(null) as object, 'went wrong']) {
      const rejecting = authWith(() => Promise.reject(thrown));
      const error = await failureOf(createGoogleAuthIdTokenFetcher(rejecting)('a', 1000));
      expect(error.transient).toBe(true);
      reasons.push(error.reason);
    }
    expect(reasons).toEqual([
      'google-auth-library failed: undefined',
      'google-auth-library failed: null',
      'google-auth-library failed: a rejection that cannot be turned into words',
      'google-auth-library failed: went wrong',
    ]);
  });

  it('calls a failure transient when there was no answer, a 5xx or a 429, and not on another 4xx', async () => {
    const failing = (status?: number) =>
      createGoogleAuthIdTokenFetcher(
        authWith(async () => ({
          fetchIdToken: async () => {
            throw Object.assign(
              new Error(`token endpoint said ${status}`),
              status === undefined ? {} : { response: { status } },
            );
          },
        })),
      );
    const verdicts: Record<string, boolean> = {};
    for (const status of [undefined, 500, 503, 429, 400, 403, 499]) {
      const error = await failureOf(failing(status)('a', 1000));
      expect(error.reason).toBe(`google-auth-library failed: token endpoint said ${status}`);
      verdicts[String(status)] = error.transient;
    }
    expect(verdicts).toEqual({
      undefined: true,
      500: true,
      503: true,
      429: true,
      400: false,
      403: false,
      499: false,
    });
  });

  it('asks makeAuth once, and leaves no timer behind once a token has come', async () => {
    let made = 0;
    const fetcher = createGoogleAuthIdTokenFetcher(async () => {
      made += 1;
      return {
        getClient: async () => ({
          fetchIdToken: async (audience: string) => `h.token-for-${audience}.s`,
        }),
      } as unknown as GoogleAuth;
    });
    await expect(fetcher('a', 60_000)).resolves.toBe('h.token-for-a.s');
    let second: Promise<string> | undefined;
    expect(await timersOf(60_000, () => (second = fetcher('b', 60_000)))).toEqual({
      set: 1,
      uncleared: 0,
    });
    await expect(second).resolves.toBe('h.token-for-b.s');
    expect(made).toBe(1);
  });

  it('refuses what is not a token, as not transient, without quoting it (it would go out in a header)', async () => {
    for (const answer of ['h.secret\nX-Injected: 1.s', '', 'no-dots', 42, undefined]) {
      const error = await failureOf(
        createGoogleAuthIdTokenFetcher(
          authWith(async () => ({ fetchIdToken: async () => answer })),
        )('a', 1000),
      );
      expect(error).toMatchObject({
        transient: false,
        reason: 'google-auth-library returned something that is not a token',
      });
    }
  });
});
