import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCredentials } from '../../services/calling/credentials.js';
import { loadCallingConfig } from '../../services/calling/config.js';
import { ConfigError } from '../../services/shared/env.js';
import { impersonatedAdc } from '../helpers/google-apis.js';

const SA = 'caller@my-project.iam.gserviceaccount.com';
const SECRET = 'refresh-token-that-must-never-be-shown';
const user = {
  type: 'authorized_user',
  client_id: 'id.apps.googleusercontent.com',
  client_secret: 'cs',
  refresh_token: SECRET,
};

describe('the credentials GOOGLE_APPLICATION_CREDENTIALS names, checked at start', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'credentials-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, content: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  };
  const refusal = (path: string) => {
    try {
      readCredentials(path);
    } catch (err) {
      const message = (err as Error).message;
      expect(message).not.toContain(SECRET);
      return message;
    }
    throw new Error(`${path} was accepted`);
  };
  const FIX = 'run `gcloud auth application-default login --impersonate-service-account=SA`';

  it('takes impersonated ADC as gcloud writes it, delegates included, naming the account it acts as', () => {
    const path = file(
      'impersonated.json',
      impersonatedAdc(SA, ['hop@my-project.iam.gserviceaccount.com']),
    );
    expect(readCredentials(path).credentials).toEqual({
      type: 'impersonated_service_account',
      file: path,
      account: SA,
      delegates: ['hop@my-project.iam.gserviceaccount.com'],
    });
    const bare = impersonatedAdc(SA) as Partial<ReturnType<typeof impersonatedAdc>>;
    delete bare.delegates;
    expect(readCredentials(file('no-delegates.json', bare)).credentials).toMatchObject({
      account: SA,
      delegates: [],
    });
    // What google-auth-library is given: what was read and checked, once.
    expect(readCredentials(path).json).toEqual(
      impersonatedAdc(SA, ['hop@my-project.iam.gserviceaccount.com']),
    );
  });

  it('takes impersonation from a service-account key, and an impersonation URL of exactly 256 characters', () => {
    const fromKey = {
      ...impersonatedAdc(SA),
      source_credentials: {
        type: 'service_account',
        client_email: 'src@p.iam.gserviceaccount.com',
        private_key: 'PEM',
      },
    };
    expect(readCredentials(file('from-key.json', fromKey)).credentials).toMatchObject({
      account: SA,
    });
    const prefix = 'https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/';
    const suffix = '@p.iam.gserviceaccount.com:generateAccessToken';
    const long = `${'a'.repeat(256 - prefix.length - suffix.length)}${suffix}`;
    expect(`${prefix}${long}`).toHaveLength(256);
    const exact = { ...impersonatedAdc(SA), service_account_impersonation_url: `${prefix}${long}` };
    expect(readCredentials(file('exact.json', exact)).credentials).toMatchObject({
      account: long.slice(0, -':generateAccessToken'.length),
    });
    expect(() =>
      readCredentials(
        file('over.json', { ...exact, service_account_impersonation_url: `${prefix}a${long}` }),
      ),
    ).toThrow('impersonation_url');
  });

  it('takes a file of exactly 64 KiB, and no more', () => {
    const key = { type: 'service_account', client_email: SA, private_key: 'PEM', pad: '' };
    key.pad = 'x'.repeat(64 * 1024 - JSON.stringify(key).length);
    expect(readCredentials(file('64k.json', key)).credentials).toMatchObject({ account: SA });
    key.pad += 'x';
    expect(() => readCredentials(file('64k1.json', key))).toThrow(
      'too large for a credentials file (65537 bytes)',
    );
  });

  it('takes a service-account key', () => {
    const path = file('key.json', {
      type: 'service_account',
      client_email: SA,
      private_key: 'PEM',
      private_key_id: 'k',
    });
    expect(readCredentials(path).credentials).toEqual({
      type: 'service_account',
      file: path,
      account: SA,
    });
  });

  it('refuses user credentials, saying why Cloud Run would refuse their tokens and how to impersonate instead', () => {
    const path = file('user.json', user);
    const message = refusal(path);
    expect(message).toBe(
      `${path} holds user credentials (type authorized_user): their ID tokens are for an OAuth client, not the receiving ` +
        `service's URL, and Cloud Run refuses them; ${FIX} for a service account SA that may invoke the receiving service ` +
        '(you need roles/iam.serviceAccountTokenCreator on SA)',
    );
  });

  it.each([
    ['external_account', 'workload identity federation'],
    ['external_account_authorized_user', 'workforce identity federation'],
  ])('refuses %s credentials: google-auth-library mints no ID tokens from them', (type, what) => {
    const message = refusal(
      file(`${type}.json`, { type, audience: '//iam.googleapis.com/x', refresh_token: SECRET }),
    );
    expect(message).toContain(
      `holds ${what} credentials (type ${type}), which google-auth-library mints no ID tokens from; ${FIX}`,
    );
  });

  it.each([
    [
      'an unknown type',
      { type: 'gdch_service_account', private_key: SECRET },
      'holds credentials of type gdch_service_account',
    ],
    ['no type', { client_email: SA, private_key: SECRET }, 'has no "type"'],
    [
      'a type that is not a name',
      { type: `1//${SECRET}`, private_key: SECRET },
      'holds credentials of a type it does not know',
    ],
    [
      'a type with control characters',
      { type: 'x\u001b[31m\nGOOGLE_APPLICATION_CREDENTIALS: ok' },
      'of a type it does not know',
    ],
    [
      'a key without its private key',
      { type: 'service_account', client_email: SA },
      'without client_email or private_key',
    ],
    [
      'a key with an empty email',
      { type: 'service_account', client_email: '', private_key: SECRET },
      'without client_email or private_key',
    ],
    [
      'impersonation without a target',
      { ...impersonatedAdc(SA), service_account_impersonation_url: 'https://x/' },
      'impersonation_url',
    ],
    [
      'impersonation through another host',
      {
        ...impersonatedAdc(SA),
        service_account_impersonation_url: `https://evil.example/v1/projects/-/serviceAccounts/${SA}:generateAccessToken`,
      },
      'without an IAM Credentials service_account_impersonation_url',
    ],
    [
      'an impersonation URL over 256 characters',
      impersonatedAdc(`${'a'.repeat(200)}@p.iam.gserviceaccount.com`),
      'impersonation_url',
    ],
    [
      'impersonation without a source',
      { ...impersonatedAdc(SA), source_credentials: SECRET },
      'source_credentials',
    ],
    [
      'impersonation from a source of another type',
      {
        ...impersonatedAdc(SA),
        source_credentials: { type: 'impersonated_service_account', refresh_token: SECRET },
      },
      'or user or service-account source_credentials',
    ],
    [
      'delegates that are not emails',
      { ...impersonatedAdc(SA), delegates: [{ SECRET }] },
      'delegates must be a list',
    ],
    ['a JSON array', [SECRET], 'is not a JSON object'],
    ['a JSON string', JSON.stringify(SECRET), 'is not a JSON object'],
    ['JSON null', 'null', 'is not a JSON object'],
    ['a type that is not a string', { type: 5, private_key: SECRET }, 'has no "type"'],
    [
      'an impersonation URL that is not a string',
      {
        ...impersonatedAdc(SA),
        service_account_impersonation_url: [impersonatedAdc(SA).service_account_impersonation_url],
      },
      'impersonation_url',
    ],
    [
      'an impersonation URL with text before it',
      {
        ...impersonatedAdc(SA),
        service_account_impersonation_url: `x${impersonatedAdc(SA).service_account_impersonation_url}`,
      },
      'impersonation_url',
    ],
    [
      'an impersonation URL with text after it',
      {
        ...impersonatedAdc(SA),
        service_account_impersonation_url: `${impersonatedAdc(SA).service_account_impersonation_url}x`,
      },
      'impersonation_url',
    ],
    ['a null source', { ...impersonatedAdc(SA), source_credentials: null }, 'source_credentials'],
    [
      'text that is not JSON',
      `{"type": "service_account", "private_key": "${SECRET}"`,
      'is not JSON',
    ],
  ])(
    'refuses %s, naming the file and the fix, and never what the file holds',
    (name, content, expected) => {
      const path = file(`${name.replace(/\W/g, '-')}.json`, content);
      const message = refusal(path);
      expect(message.startsWith(path)).toBe(true);
      expect(message).toContain(expected);
      expect(message).toContain(
        'gcloud auth application-default login --impersonate-service-account=SA',
      );
    },
  );

  it('refuses a missing file, a directory, a FIFO (without waiting on it) and a file too large', () => {
    expect(refusal(join(dir, 'absent.json'))).toContain('absent.json: no such file');
    mkdirSync(join(dir, 'folder'));
    expect(refusal(join(dir, 'folder'))).toContain('folder is not a regular file');
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    expect(refusal(join(dir, 'fifo'))).toContain('fifo is not a regular file');
    expect(refusal('/dev/zero')).toContain('/dev/zero is not a regular file');
    symlinkSync(join(dir, 'loop'), join(dir, 'loop'));
    expect(refusal(join(dir, 'loop'))).toContain('loop: cannot be read (ELOOP)');
    expect(
      refusal(file('large.json', `{"type":"service_account","pad":"${'x'.repeat(70_000)}"}`)),
    ).toMatch(/too large .*\(70\d{3} bytes\)/);
    for (const name of ['absent.json', 'folder', 'fifo', 'large.json'])
      expect(refusal(join(dir, name))).toContain(FIX);
  });

  it('calling refuses to start on them, naming GOOGLE_APPLICATION_CREDENTIALS among its other problems', () => {
    let error: ConfigError | undefined;
    try {
      loadCallingConfig({
        URL: 'http://r',
        AUTH: 'x',
        GOOGLE_APPLICATION_CREDENTIALS: file('user2.json', user),
      });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.problems.map((p) => p.split(':')[0])).toEqual([
      'AUTH must be one of id-token, none, got "x"',
      'GOOGLE_APPLICATION_CREDENTIALS',
    ]);
    expect(error!.problems[1]).toContain('(type authorized_user)');
  });
});
