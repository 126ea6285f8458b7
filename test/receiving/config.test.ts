import { ConfigError } from '../../services/shared/env.js';
import { loadReceivingConfig } from '../../services/receiving/config.js';
import { GOOGLE_ISSUERS } from '../../services/shared/google-id-token.js';

const problemsOf = (env: Record<string, string>): readonly string[] => {
  try {
    loadReceivingConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

describe('loadReceivingConfig', () => {
  it("defaults to verifying tokens against Google's keys and issuers", () => {
    const config = loadReceivingConfig({ AUDIENCES: 'https://receiving.example' });
    expect(config).toMatchObject({
      port: 8080,
      tokenCheck: 'verify',
      audiences: ['https://receiving.example'],
      issuers: GOOGLE_ISSUERS,
      invokers: null,
    });
    expect(config.jwksUrl.href).toBe('https://www.googleapis.com/oauth2/v3/certs');
  });

  it('refuses to verify without AUDIENCES, naming it', () => {
    expect(problemsOf({})).toEqual([
      expect.stringMatching(/^AUDIENCES is required with TOKEN_CHECK=verify/),
    ]);
  });

  it('needs no AUDIENCES with TOKEN_CHECK=none', () => {
    expect(loadReceivingConfig({ TOKEN_CHECK: 'none' }).tokenCheck).toBe('none');
  });

  it('reads INVOKERS as IAM members, case-insensitively', () => {
    const config = loadReceivingConfig({
      AUDIENCES: 'a',
      INVOKERS: 'serviceAccount:Caller@P.iam.gserviceaccount.com, user:ann@example.com',
    });
    expect([...config.invokers!]).toEqual(['caller@p.iam.gserviceaccount.com', 'ann@example.com']);
  });

  it('names every bad variable at once', () => {
    const problems = problemsOf({
      TOKEN_CHECK: 'maybe',
      JWKS_URL: 'file:///etc/passwd',
      INVOKERS: 'caller@example.com',
      PORT: '99999',
    });
    expect(problems.join('\n')).toMatch(/TOKEN_CHECK must be one of verify, platform, none/);
    expect(problems.join('\n')).toMatch(/AUDIENCES is required/);
    expect(problems.join('\n')).toMatch(/JWKS_URL must be an http\(s\) URL/);
    expect(problems.join('\n')).toMatch(/INVOKERS entry "caller@example.com" is not an IAM member/);
    expect(problems.join('\n')).toMatch(/PORT must be a whole number/);
  });

  it('refuses an INVOKERS entry with anything before or after the member', () => {
    for (const entry of [
      'xuser:ann@example.com',
      'user:ann@example.com:extra',
      'group:team@example.com',
    ]) {
      expect(problemsOf({ AUDIENCES: 'a', INVOKERS: entry })).toEqual([
        expect.stringContaining(`INVOKERS entry "${entry}" is not an IAM member`),
      ]);
    }
  });

  it('refuses INVOKERS without reading tokens', () => {
    expect(problemsOf({ TOKEN_CHECK: 'none', INVOKERS: 'user:a@example.com' })).toEqual([
      expect.stringMatching(/^INVOKERS needs TOKEN_CHECK=verify or platform/),
    ]);
  });

  it('takes TOKEN_CHECK=platform without AUDIENCES, and INVOKERS with it', () => {
    const config = loadReceivingConfig({ TOKEN_CHECK: 'platform', INVOKERS: 'user:a@example.com' });
    expect(config).toMatchObject({ tokenCheck: 'platform', audiences: [] });
  });

  it("defaults to Google's two issuer spellings, listening on every interface", () => {
    const config = loadReceivingConfig({ AUDIENCES: 'a' });
    expect(config.issuers).toEqual(['https://accounts.google.com', 'accounts.google.com']);
    expect(config.host).toBe('0.0.0.0');
  });

  it('takes HOST, JWKS_URL and ISSUERS as given', () => {
    const config = loadReceivingConfig({
      AUDIENCES: 'a',
      HOST: '127.0.0.1',
      JWKS_URL: 'http://127.0.0.1:8082/oauth2/v3/certs',
      ISSUERS: 'https://issuer.example, other',
    });
    expect(config).toMatchObject({
      host: '127.0.0.1',
      issuers: ['https://issuer.example', 'other'],
    });
    expect(config.jwksUrl.href).toBe('http://127.0.0.1:8082/oauth2/v3/certs');
  });

  it('refuses an ISSUERS that names no issuer', () => {
    expect(problemsOf({ AUDIENCES: 'a', ISSUERS: ' , ' })).toEqual([
      'ISSUERS must name at least one issuer',
    ]);
  });

  it('names the service and says what AUDIENCES should hold', () => {
    let message = '';
    try {
      loadReceivingConfig({});
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toBe(
      'receiving: invalid configuration:\n' +
        '  - AUDIENCES is required with TOKEN_CHECK=verify: the audiences tokens must be minted for, ' +
        "comma-separated; usually this service's own URL, e.g. https://receiving-abc123-uc.a.run.app",
    );
  });
});
