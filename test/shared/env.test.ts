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
    expect(() => read.done({})).toThrow(
      /URL must be an http\(s\) URL[\s\S]*URL must be an absolute http\(s\) URL/,
    );
  });

  it('takes a whole number only within its bounds, both ends included', () => {
    const read = new EnvReader('svc', {
      LOW: '4',
      MIN: '5',
      MAX: '10',
      HIGH: '11',
      A: '1.5',
      B: '-5',
      C: '7x',
      D: 'x7',
      E: '1e1',
      F: '0x7',
    });
    expect([read.integer('MIN', 1, 5, 10), read.integer('MAX', 1, 5, 10)]).toEqual([5, 10]);
    for (const name of ['LOW', 'HIGH', 'A', 'B', 'C', 'D', 'E', 'F'])
      expect(read.integer(name, 7, 5, 10)).toBe(7);
    expect(() => read.done({})).toThrow(
      new ConfigError(
        'svc',
        ['LOW "4"', 'HIGH "11"', 'A "1.5"', 'B "-5"', 'C "7x"', 'D "x7"', 'E "1e1"', 'F "0x7"'].map(
          (nameAndValue) => {
            const [name, value] = nameAndValue.split(' ');
            return `${name} must be a whole number from 5 to 10, got ${value}`;
          },
        ),
      ),
    );
  });

  it('says which service refused, each problem on its own line', () => {
    const error = new ConfigError('svc', ['A is wrong', 'B is wrong']);
    expect([error.name, error.message, error.problems]).toEqual([
      'ConfigError',
      'svc: invalid configuration:\n  - A is wrong\n  - B is wrong',
      ['A is wrong', 'B is wrong'],
    ]);
  });

  it('answers a required value, or an empty one and a problem', () => {
    const read = new EnvReader('svc', { URL: ' http://r ' });
    expect(read.required('URL', 'where')).toBe('http://r');
    expect(read.required('OTHER', 'what')).toBe('');
    expect(() => read.done({})).toThrow(new ConfigError('svc', ['OTHER is required: what']));
  });

  it('knows it is on Cloud Run by K_SERVICE, which Cloud Run sets', () => {
    expect(new EnvReader('svc', { K_SERVICE: 'calling' }).common()).toEqual({
      host: '0.0.0.0',
      port: 8080,
      logLevel: 'info',
      projectId: undefined,
      metadataHost: undefined,
      onCloudRun: true,
    });
    expect(new EnvReader('svc', { K_SERVICE: ' ' }).common().onCloudRun).toBe(false);
    expect(new EnvReader('svc', {}).common().onCloudRun).toBe(false);
  });

  it('hides everything up to the last @ when it quotes a value, whatever the password holds', () => {
    const read = new EnvReader('svc', {});
    read.httpUrl('A', 'ftp://host/a@b');
    read.httpUrl('B', 'user:pw@host:x');
    read.httpUrl('C', 'ftp://user:pw@host/');
    for (const value of [
      'http:/u:secret@h:99999',
      'http://u:p#secret@h/',
      'http://u:p/secret@h/',
      'http://u:p?secret@h/',
      'http://u:p\nsecret@h:99999',
    ])
      read.httpUrl('D', value);
    expect(() => read.done({})).toThrow(
      new ConfigError('svc', [
        'A must be an http(s) URL, got "ftp://…@b"',
        'B must be an http(s) URL, got "…@host:x"',
        'C must be an http(s) URL, got "ftp://…@host/"',
        'D must be an absolute http(s) URL, got "http:/…@h:99999"',
        'D must be an absolute http(s) URL, got "http://…@h/"',
        'D must be an absolute http(s) URL, got "http://…@h/"',
        'D must be an absolute http(s) URL, got "http://…@h/"',
        'D must be an absolute http(s) URL, got "http://…@h:99999"',
      ]),
    );
  });

  it('refuses a URL with a user name alone or a password alone, quoting neither', () => {
    const read = new EnvReader('svc', {});
    expect(read.httpUrl('A', 'http://user@host/')).toBeUndefined();
    expect(read.httpUrl('B', 'http://:secret@host/')).toBeUndefined();
    expect(read.httpUrl('C', 'http://host/')?.href).toBe('http://host/');
    const why = 'must not carry a user name or password: it is logged and named in error answers';
    expect(() => read.done({})).toThrow(new ConfigError('svc', [`A ${why}`, `B ${why}`]));
  });

  it('takes as a metadata host only a host name or an IP address, as a URL holds it', () => {
    const hostOf = (value: string) => {
      const read = new EnvReader('svc', { GCE_METADATA_HOST: value });
      const { metadataHost } = read.common();
      return read.done(metadataHost);
    };
    expect(hostOf('metadata.google.internal')).toBe('metadata.google.internal');
    expect(hostOf('127.0.0.1:8082')).toBe('127.0.0.1:8082');
    for (const value of ['meta_data:8082', '_metadata', 'metadata_', 'host/x', 'http://host'])
      expect(() => hostOf(value)).toThrow(ConfigError);
  });
});
