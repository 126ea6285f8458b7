import { ConfigError } from '../../../services/shared/env.js';
import { loadEmulatorConfig } from '../../../local/metadata-emulator/config.js';

describe('loadEmulatorConfig', () => {
  it.each([
    ['SERVICE_ACCOUNT', 'me and x@p.iam.gserviceaccount.com'],
    ['SERVICE_ACCOUNT', 'x@p.iam.gserviceaccount.com and me'],
    ['PROJECT_ID', 'My-project'],
    ['PROJECT_ID', 'my-project!'],
    ['PROJECT_NUMBER', 'x123456'],
    ['PROJECT_NUMBER', '123456x'],
  ])('refuses %s=%j whole, not a valid part of it, naming the emulator', (name, value) => {
    expect(() => loadEmulatorConfig({ [name]: value })).toThrow(
      new RegExp(`^metadata-emulator: invalid configuration:\\n  - ${name} must`),
    );
  });

  it('reads LOG_LEVEL as the services do, refusing a level pino does not know', () => {
    expect(loadEmulatorConfig({ LOG_LEVEL: 'debug' }).logLevel).toBe('debug');
    expect(loadEmulatorConfig({ HOST: '0.0.0.0' }).host).toBe('0.0.0.0');
    expect(() => loadEmulatorConfig({ LOG_LEVEL: 'verbose' })).toThrow(
      'LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent, got "verbose"',
    );
  });

  it("defaults to loopback and Cloud Run's default compute identity", () => {
    expect(loadEmulatorConfig({})).toEqual({
      logLevel: 'info',
      host: '127.0.0.1',
      port: 8082,
      projectId: 'local-project',
      projectNumber: '123456789012',
      serviceAccount: '123456789012-compute@developer.gserviceaccount.com',
    });
  });

  it('derives the default identity from PROJECT_NUMBER and takes SERVICE_ACCOUNT as given', () => {
    expect(loadEmulatorConfig({ PROJECT_NUMBER: '42' }).serviceAccount).toBe(
      '42-compute@developer.gserviceaccount.com',
    );
    expect(
      loadEmulatorConfig({
        SERVICE_ACCOUNT: 'cloudrun-authenticated-sa@p-1234.iam.gserviceaccount.com',
      }).serviceAccount,
    ).toBe('cloudrun-authenticated-sa@p-1234.iam.gserviceaccount.com');
  });

  it('takes SIGNING_KEY_FILE as given, and has none by default', () => {
    expect(loadEmulatorConfig({ SIGNING_KEY_FILE: '/tmp/k.pem' }).signingKeyFile).toBe(
      '/tmp/k.pem',
    );
    expect('signingKeyFile' in loadEmulatorConfig({ SIGNING_KEY_FILE: ' ' })).toBe(false);
  });

  it('names every bad variable', () => {
    let error: ConfigError | undefined;
    try {
      loadEmulatorConfig({
        PROJECT_ID: 'X',
        PROJECT_NUMBER: 'abc',
        SERVICE_ACCOUNT: 'nobody',
        PORT: '-1',
      });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error?.problems.map((p) => p.split(' ')[0])).toEqual([
      'PROJECT_ID',
      'PROJECT_NUMBER',
      'SERVICE_ACCOUNT',
      'PORT',
    ]);
  });
});
