import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../services/shared/env.js';
import { loadCallingConfig } from '../../services/calling/config.js';

describe('loadCallingConfig', () => {
  it('refuses to start without URL, saying what it is', () => {
    expect(() => loadCallingConfig({})).toThrow(ConfigError);
    expect(() => loadCallingConfig({})).toThrow(/URL is required: the receiving service's URL/);
  });

  it("defaults the audience to URL's origin, as Google's samples do", () => {
    const config = loadCallingConfig({ URL: 'https://receiving-abc123-uc.a.run.app/hello?x=1' });
    expect(config.audience).toBe('https://receiving-abc123-uc.a.run.app');
    expect(config.url.href).toBe('https://receiving-abc123-uc.a.run.app/hello?x=1');
    expect(config).toMatchObject({ port: 8080, auth: 'id-token', tokenHeader: 'authorization', upstreamTimeoutMs: 10000 });
  });

  it('takes a custom audience and AUTH=none', () => {
    const config = loadCallingConfig({ URL: 'http://127.0.0.1:8081', AUDIENCE: 'my-custom-audience', AUTH: 'none' });
    expect(config).toMatchObject({ audience: 'my-custom-audience', auth: 'none' });
  });

  it('names every bad variable at once', () => {
    let error: ConfigError | undefined;
    try {
      loadCallingConfig({ URL: 'receiving', AUTH: 'token', TOKEN_HEADER: 'cookie', UPSTREAM_TIMEOUT_MS: '0' });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error?.problems.map((p) => p.split(' ')[0])).toEqual(['URL', 'AUTH', 'TOKEN_HEADER', 'UPSTREAM_TIMEOUT_MS']);
  });
});

describe('where calling gets its tokens', () => {
  it("uses the metadata server named by GCE_METADATA_IP or GCE_METADATA_HOST, else Cloud Run's", () => {
    expect(loadCallingConfig({ URL: 'http://r' }).tokenOrigin).toEqual({ kind: 'metadata', host: '169.254.169.254' });
    expect(loadCallingConfig({ URL: 'http://r', GCE_METADATA_HOST: '127.0.0.1:8082' }).tokenOrigin).toEqual({
      kind: 'metadata',
      host: '127.0.0.1:8082',
    });
  });

  it('uses google-auth-library with the credentials GOOGLE_APPLICATION_CREDENTIALS names, once checked', () => {
    const dir = mkdtempSync(join(tmpdir(), 'calling-config-'));
    const file = join(dir, 'key.json');
    writeFileSync(file, JSON.stringify({ type: 'service_account', client_email: 'a@p.iam.gserviceaccount.com', private_key: 'PEM' }));
    expect(loadCallingConfig({ URL: 'http://r', GOOGLE_APPLICATION_CREDENTIALS: file }).tokenOrigin).toEqual({
      kind: 'google-auth',
      credentials: { type: 'service_account', file, account: 'a@p.iam.gserviceaccount.com' },
      json: { type: 'service_account', client_email: 'a@p.iam.gserviceaccount.com', private_key: 'PEM' },
    });
    rmSync(dir, { recursive: true });
  });
});
