/**
 * Reads env vars into typed config while collecting every problem, so a service that refuses to
 * start names all bad variables at once rather than one per attempt.
 */
export type Env = Readonly<Record<string, string | undefined>>;

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
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      this.problem(`${name} must be an absolute http(s) URL, got "${value}"`);
      return undefined;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      this.problem(`${name} must be an http(s) URL, got "${value}"`);
      return undefined;
    }
    return url;
  }

  /** Returns the config, or throws a ConfigError listing every problem found. */
  done<T>(config: T): T {
    if (this.problems.length > 0) throw new ConfigError(this.service, this.problems);
    return config;
  }
}
