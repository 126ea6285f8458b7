import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../services/shared/env.js';
import { loadCallingConfig } from '../../services/calling/config.js';

describe('loadCallingConfig', () => {
  it('reads LOG_LEVEL, refusing an unknown level with the ones it takes', () => {
    expect(loadCallingConfig({ URL: 'http://r' }).logLevel).toBe('info');
    expect(loadCallingConfig({ URL: 'http://r', LOG_LEVEL: 'debug' }).logLevel).toBe('debug');
    expect(() => loadCallingConfig({ URL: 'http://r', LOG_LEVEL: 'verbose' })).toThrow(
      'LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent, got "verbose"',
    );
  });

  it('refuses to start without URL, saying what it is, once', () => {
    expect(() => loadCallingConfig({})).toThrow(
      new ConfigError('calling', [
        "URL is required: the receiving service's URL, e.g. https://receiving-abc123-uc.a.run.app (locally http://127.0.0.1:8081)",
      ]),
    );
  });

  it('listens on 0.0.0.0:8080 unless HOST and PORT say otherwise, as Cloud Run expects', () => {
    expect(loadCallingConfig({ URL: 'http://r' })).toMatchObject({ host: '0.0.0.0', port: 8080 });
    expect(loadCallingConfig({ URL: 'http://r', HOST: '127.0.0.1', PORT: '9090' })).toMatchObject({
      host: '127.0.0.1',
      port: 9090,
    });
  });

  it('refuses a URL with a password without quoting it, and one on port 0', () => {
    const problems = (url: string) => {
      try {
        loadCallingConfig({ URL: url });
      } catch (err) {
        return (err as ConfigError).problems;
      }
      return [];
    };
    const withPassword = problems('https://admin:s3cret@receiving.example/');
    expect(withPassword).toEqual([
      'URL must not carry a user name or password: it is logged and named in error answers',
    ]);
    expect(problems('http://127.0.0.1:0/')).toEqual([
      'URL must not name port 0, got "http://127.0.0.1:0/"',
    ]);
    // Refused for another reason, the password is still not quoted.
    for (const url of [
      'ftp://user:s3cret@host/',
      'http://user:s3cret@host:99999/',
      'http://user:s3cret@bad host/',
      'http:user:s3cret@host:0',
    ]) {
      expect(problems(url)).toHaveLength(1);
      expect(problems(url).join()).not.toContain('s3cret');
    }
    const host = () => {
      try {
        loadCallingConfig({ URL: 'http://r', GCE_METADATA_HOST: 'user:s3cret@127.0.0.1:8082' });
      } catch (err) {
        return (err as ConfigError).problems;
      }
      return [];
    };
    expect(host()).toEqual([
      'GCE_METADATA_HOST must be host[:port] with no scheme or path (e.g. 127.0.0.1:8082), got "…@127.0.0.1:8082"',
    ]);
  });

  it('takes GOOGLE_CLOUD_PROJECT, domain-scoped ones too, and refuses what is no project id', () => {
    expect(
      loadCallingConfig({ URL: 'http://r', GOOGLE_CLOUD_PROJECT: 'my-project' }).projectId,
    ).toBe('my-project');
    expect(
      loadCallingConfig({ URL: 'http://r', GOOGLE_CLOUD_PROJECT: 'example.com:my-project' })
        .projectId,
    ).toBe('example.com:my-project');
    expect(() => loadCallingConfig({ URL: 'http://r', GOOGLE_CLOUD_PROJECT: 'a b/../c' })).toThrow(
      'GOOGLE_CLOUD_PROJECT must be a Google Cloud project id (6-30 of a-z, 0-9, -), got "a b/../c"',
    );
  });

  it("defaults the audience to URL's origin, as Google's samples do", () => {
    const config = loadCallingConfig({ URL: 'https://receiving-abc123-uc.a.run.app/hello?x=1' });
    expect(config.audience).toBe('https://receiving-abc123-uc.a.run.app');
    expect(config.url.href).toBe('https://receiving-abc123-uc.a.run.app/hello?x=1');
    expect(config).toMatchObject({
      port: 8080,
      auth: 'id-token',
      tokenHeader: 'authorization',
      upstreamTimeoutMs: 10000,
    });
  });

  it('takes a custom audience and AUTH=none', () => {
    const config = loadCallingConfig({
      URL: 'http://127.0.0.1:8081',
      AUDIENCE: 'my-custom-audience',
      AUTH: 'none',
    });
    expect(config).toMatchObject({ audience: 'my-custom-audience', auth: 'none' });
  });

  it('names every bad variable at once', () => {
    let error: ConfigError | undefined;
    try {
      loadCallingConfig({
        URL: 'receiving',
        AUTH: 'token',
        TOKEN_HEADER: 'cookie',
        UPSTREAM_TIMEOUT_MS: '0',
        PORT: 'x',
        LOG_LEVEL: 'loud',
        GOOGLE_CLOUD_PROJECT: 'A',
        GCE_METADATA_HOST: 'a/b',
      });
    } catch (err) {
      error = err as ConfigError;
    }
    // In the order they are read, the variables every service reads first.
    expect(error?.problems.map((p) => p.split(' ')[0])).toEqual([
      'URL',
      'LOG_LEVEL',
      'GOOGLE_CLOUD_PROJECT',
      'GCE_METADATA_HOST',
      'PORT',
      'AUTH',
      'TOKEN_HEADER',
      'UPSTREAM_TIMEOUT_MS',
    ]);
  });
});

describe('where calling gets its tokens', () => {
  it("uses the metadata server named by GCE_METADATA_IP or GCE_METADATA_HOST, else Cloud Run's", () => {
    expect(loadCallingConfig({ URL: 'http://r' }).tokenOrigin).toEqual({
      kind: 'metadata',
      host: '169.254.169.254',
    });
    expect(
      loadCallingConfig({ URL: 'http://r', GCE_METADATA_HOST: '127.0.0.1:8082' }).tokenOrigin,
    ).toEqual({
      kind: 'metadata',
      host: '127.0.0.1:8082',
    });
  });

  it('prefers GCE_METADATA_IP to GCE_METADATA_HOST, trimmed, a blank value counting as unset', () => {
    const host = (env: Record<string, string>) =>
      loadCallingConfig({ URL: 'http://r', ...env }).tokenOrigin;
    expect(host({ GCE_METADATA_IP: ' 127.0.0.1:1 \n', GCE_METADATA_HOST: 'h:2' })).toEqual({
      kind: 'metadata',
      host: '127.0.0.1:1',
    });
    expect(host({ GCE_METADATA_IP: '  ', GCE_METADATA_HOST: ' h:2 ' })).toEqual({
      kind: 'metadata',
      host: 'h:2',
    });
    expect(host({ GCE_METADATA_HOST: 'metadata.google.internal' })).toEqual({
      kind: 'metadata',
      host: 'metadata.google.internal',
    });
    expect(host({ GCE_METADATA_HOST: '[::1]:8082' })).toEqual({
      kind: 'metadata',
      host: '[::1]:8082',
    });
  });

  it.each([
    ['GCE_METADATA_HOST', 'http://127.0.0.1:8082'],
    ['GCE_METADATA_HOST', '127.0.0.1:8082/computeMetadata'],
    ['GCE_METADATA_HOST', '127.0.0.1:99999'],
    ['GCE_METADATA_HOST', '127.0.0.1:'],
    ['GCE_METADATA_HOST', 'user@127.0.0.1'],
    ['GCE_METADATA_IP', 'not an address!'],
    ['GCE_METADATA_IP', '127.0.0.1?x=1'],
    // Shaped like hosts, but no URL can hold them.
    ['GCE_METADATA_HOST', '256.1.1.1'],
    ['GCE_METADATA_HOST', '[1.2.3.4]'],
    ['GCE_METADATA_HOST', 'a.123'],
    ['GCE_METADATA_HOST', '1.2.3.4.5'],
    ['GCE_METADATA_HOST', '127.0.0.1:0'],
  ])('refuses %s=%j at start: host[:port], no scheme or path', (name, value) => {
    const error = (() => {
      try {
        loadCallingConfig({ URL: 'http://r', [name]: value });
      } catch (err) {
        return err as ConfigError;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ConfigError);
    const shown = value.replace(/^[^@]*@/, '…@'); // a user before an @ is never quoted
    expect(error!.problems).toEqual([
      `${name} must be host[:port] with no scheme or path (e.g. 127.0.0.1:8082), got "${shown}"`,
    ]);
  });

  it('checks GCE_METADATA_HOST too when GCE_METADATA_IP wins, and takes a port 80 written out', () => {
    expect(() =>
      loadCallingConfig({
        URL: 'http://r',
        GCE_METADATA_IP: '127.0.0.1:8082',
        GCE_METADATA_HOST: 'http://x/y',
      }),
    ).toThrow('GCE_METADATA_HOST must be host[:port]');
    expect(
      loadCallingConfig({ URL: 'http://r', GCE_METADATA_HOST: '127.0.0.1:80' }).tokenOrigin,
    ).toEqual({
      kind: 'metadata',
      host: '127.0.0.1:80',
    });
  });

  it('uses google-auth-library with the credentials GOOGLE_APPLICATION_CREDENTIALS names, once checked', () => {
    const dir = mkdtempSync(join(tmpdir(), 'calling-config-'));
    const file = join(dir, 'key.json');
    writeFileSync(
      file,
      JSON.stringify({
        type: 'service_account',
        client_email: 'a@p.iam.gserviceaccount.com',
        private_key: 'PEM',
      }),
    );
    expect(
      loadCallingConfig({ URL: 'http://r', GOOGLE_APPLICATION_CREDENTIALS: file }).tokenOrigin,
    ).toEqual({
      kind: 'google-auth',
      credentials: { type: 'service_account', file, account: 'a@p.iam.gserviceaccount.com' },
      json: {
        type: 'service_account',
        client_email: 'a@p.iam.gserviceaccount.com',
        private_key: 'PEM',
      },
    });
    rmSync(dir, { recursive: true });
  });
});
