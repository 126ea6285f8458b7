import { ConfigError, EnvReader } from '../../services/shared/env.js';

describe('EnvReader', () => {
  it('reports every bad variable at once, by name', () => {
    const read = new EnvReader('svc', { PORT: 'eighty', MODE: 'loud' });
    read.port('PORT', 8080);
    read.oneOf('MODE', ['quiet', 'normal'], 'normal');
    read.required('URL', 'where to go');
    let error: unknown;
    try {
      read.done({});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const { problems, message } = error as ConfigError;
    expect(problems).toHaveLength(3);
    expect(message).toContain('PORT must be a whole number');
    expect(message).toContain('MODE must be one of quiet, normal, got "loud"');
    expect(message).toContain('URL is required: where to go');
  });

  it('treats blank values as unset and trims list items', () => {
    const read = new EnvReader('svc', { PORT: '  ', LIST: ' a, ,b ,' });
    expect(read.port('PORT', 8080)).toBe(8080);
    expect(read.list('LIST')).toEqual(['a', 'b']);
    expect(read.done({ ok: true })).toEqual({ ok: true });
  });

  it('refuses a URL that is not http(s)', () => {
    const read = new EnvReader('svc', {});
    read.httpUrl('URL', 'ftp://example.com');
    read.httpUrl('URL', 'not a url');
    expect(() => read.done({})).toThrow(/URL must be an http\(s\) URL[\s\S]*URL must be an absolute http\(s\) URL/);
  });
});
