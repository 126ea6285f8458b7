/**
 * Reads env vars into typed config while collecting every problem, so a service that refuses to
 * start names all bad variables at once rather than one per attempt.
 */
export type Env = Readonly<Record<string, string | undefined>>;

/** The metadata server's address on Cloud Run (and every Google Cloud VM). */
export const CLOUD_RUN_METADATA_HOST = '169.254.169.254';

/** A project id, or a domain-scoped one (example.com:my-project). */
const PROJECT_ID = /^(?:[a-z\d][a-z\d.-]{0,61}[a-z\d]:)?[a-z][a-z\d-]{4,28}[a-z\d]$/;

/**
 * A URL or host as a problem may quote it: everything between the scheme and the last @ is hidden,
 * as a password may hold / ? or # and a URL parser may read user info after one slash.
 */
function withoutUser(value: string): string {
  return value.replace(/^([a-z][\w+.-]*:\/+)?.*@/is, '$1…@');
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface CommonConfig {
  /** HOST and PORT: where the service listens (Cloud Run sets PORT). */
  host: string;
  port: number;
  logLevel: LogLevel;
  /** GOOGLE_CLOUD_PROJECT: the project for Cloud Logging's trace field. */
  projectId: string | undefined;
  /** GCE_METADATA_IP or GCE_METADATA_HOST: a metadata server off Cloud Run (the emulator). */
  metadataHost: string | undefined;
  /** K_SERVICE is set: Cloud Run's metadata server is at CLOUD_RUN_METADATA_HOST. */
  onCloudRun: boolean;
}

export class ConfigError extends Error {
  constructor(
    readonly service: string,
    readonly problems: readonly string[],
  ) {
    super(`${service}: invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export class EnvReader {
  private readonly problems: string[] = [];

  constructor(
    private readonly service: string,
    private readonly env: Env,
  ) {}

  /** The trimmed value, or undefined when unset or blank. */
  raw(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value === '' ? undefined : value;
  }

  problem(message: string): void {
    this.problems.push(message);
  }

  required(name: string, what: string): string {
    const value = this.raw(name);
    if (value === undefined) this.problem(`${name} is required: ${what}`);
    return value ?? '';
  }

  port(name: string, fallback: number): number {
    return this.integer(name, fallback, 0, 65535);
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) {
      this.problem(`${name} must be a whole number from ${min} to ${max}, got "${value}"`);
      return fallback;
    }
    return n;
  }

  oneOf<T extends string>(name: string, values: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (!(values as readonly string[]).includes(value)) {
      this.problem(`${name} must be one of ${values.join(', ')}, got "${value}"`);
      return fallback;
    }
    return value as T;
  }

  /** A comma-separated list; blank items are dropped. */
  list(name: string, fallback: readonly string[] = []): string[] {
    const value = this.raw(name);
    if (value === undefined) return [...fallback];
    return value
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
  }

  httpUrl(name: string, value: string): URL | undefined {
    let url: URL | undefined;
    try {
      url = new URL(value);
    } catch {
      // Said below.
    }
    const got = `, got "${withoutUser(value)}"`;
    const why =
      url === undefined
        ? `must be an absolute http(s) URL${got}`
        : url.protocol !== 'http:' && url.protocol !== 'https:'
          ? `must be an http(s) URL${got}`
          : url.username !== '' || url.password !== ''
            ? 'must not carry a user name or password: it is logged and named in error answers'
            : url.port === '0'
              ? `must not name port 0${got}`
              : undefined;
    if (why === undefined) return url;
    this.problem(`${name} ${why}`);
    return undefined;
  }

  /**
   * Where the metadata server is, as Google's clients read it: GCE_METADATA_IP, else
   * GCE_METADATA_HOST, each host[:port] as a URL holds it (no scheme, user, path, query or port 0;
   * both checked when both are set); undefined when neither is set.
   */
  private metadataHost(): string | undefined {
    const [ip, host] = ['GCE_METADATA_IP', 'GCE_METADATA_HOST'].map((name) => {
      const value = this.raw(name);
      if (value === undefined) return undefined;
      let url: URL | undefined;
      try {
        url = new URL(`http://${value}`);
      } catch {
        // Not a host a URL can hold (256.1.1.1, [1.2.3.4], a space...).
      }
      const same = url !== undefined && [url.host, `${url.host}:80`].includes(value.toLowerCase());
      const hostname = url !== undefined && /^(?:[a-z\d.-]+|\[[\da-f:.]+\])$/.test(url.hostname);
      // The value is the URL's host exactly (no scheme, user, path or query), a host name or IP, not port 0.
      if (url === undefined || !same || !hostname || url.port === '0') {
        this.problem(
          `${name} must be host[:port] with no scheme or path (e.g. 127.0.0.1:8082), got "${withoutUser(value)}"`,
        );
      }
      return value;
    });
    return ip ?? host;
  }

  /** What every service reads besides its own variables. */
  common(): CommonConfig {
    const logLevel = this.oneOf('LOG_LEVEL', LOG_LEVELS, 'info');
    const projectId = this.raw('GOOGLE_CLOUD_PROJECT');
    if (projectId !== undefined && !PROJECT_ID.test(projectId)) {
      const what = 'a Google Cloud project id (6-30 of a-z, 0-9, -)';
      this.problem(`GOOGLE_CLOUD_PROJECT must be ${what}, got "${projectId}"`);
    }
    return {
      logLevel,
      projectId,
      metadataHost: this.metadataHost(),
      onCloudRun: this.raw('K_SERVICE') !== undefined,
      host: this.raw('HOST') ?? '0.0.0.0',
      port: this.port('PORT', 8080),
    };
  }

  /** Returns the config, or throws a ConfigError listing every problem found. */
  done<T>(config: T): T {
    if (this.problems.length > 0) throw new ConfigError(this.service, this.problems);
    return config;
  }
}
