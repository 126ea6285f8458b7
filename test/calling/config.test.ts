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
    expect(config).toMatchObject({ port: 8080, auth: 'id-token', upstreamTimeoutMs: 10000 });
  });

  it('takes a custom audience and AUTH=none', () => {
    const config = loadCallingConfig({ URL: 'http://127.0.0.1:8081', AUDIENCE: 'my-custom-audience', AUTH: 'none' });
    expect(config).toMatchObject({ audience: 'my-custom-audience', auth: 'none' });
  });

  it('names every bad variable at once', () => {
    let error: ConfigError | undefined;
    try {
      loadCallingConfig({ URL: 'receiving', AUTH: 'token', UPSTREAM_TIMEOUT_MS: '0' });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error?.problems.map((p) => p.split(' ')[0])).toEqual(['URL', 'AUTH', 'UPSTREAM_TIMEOUT_MS']);
  });
});
