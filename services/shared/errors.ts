/**
 * Every error a service answers with. Each has a stable `code` (for logs and tests), the HTTP
 * status it maps to, and a message written for the person who has to fix it. The message is sent
 * to the client, so it never holds a token or anything read from one but the caller's email.
 */
import { iamMember } from './iam.js';

const TITLES = {
  TOKEN_MISSING: 'No bearer token',
  TOKEN_INVALID: 'Invalid token',
  CALLER_NOT_INVOKER: 'Caller is not an invoker',
  SIGNING_KEYS_UNAVAILABLE: 'Signing keys unavailable',
  ID_TOKEN_UNAVAILABLE: 'No identity token',
  UPSTREAM_UNAUTHORIZED: 'The receiving service did not accept the token',
  UPSTREAM_FORBIDDEN: 'The receiving service refused this caller',
  UPSTREAM_ERROR: 'The receiving service answered with an error',
  UPSTREAM_UNREACHABLE: 'The receiving service could not be reached',
  UPSTREAM_TIMEOUT: 'The receiving service did not answer in time',
  NOT_FOUND: 'Not found',
} as const;

type ErrorCode = keyof typeof TITLES;

interface ServiceErrorOptions {
  cause?: unknown;
  headers?: Record<string, string>;
  /** Extra members of the problem details (RFC 9457) body. */
  extensions?: Record<string, string | number | null>;
}

export class ServiceError extends Error {
  readonly headers: Record<string, string>;
  readonly extensions: Record<string, string | number | null>;

  constructor(
    readonly code: ErrorCode,
    readonly status: number,
    message: string,
    options?: ServiceErrorOptions,
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.headers = options?.headers ?? {};
    this.extensions = options?.extensions ?? {};
  }

  get title(): string {
    return TITLES[this.code];
  }

  /** A stable URI naming the kind of problem, for RFC 9457 `type`. */
  get type(): string {
    return `urn:cloudrun-service-auth:problem:${this.code.toLowerCase().replaceAll('_', '-')}`;
  }
}

function bearerChallenge(reason: string): Record<string, string> {
  // RFC 6750 quoted-string: the reasons are our own words, but keep the header well-formed anyway.
  const description = reason.replace(/["\\\r\n]/g, ' ');
  return { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${description}"` };
}

export class TokenMissingError extends ServiceError {
  constructor() {
    const reason = 'no bearer token: send Authorization: Bearer <ID token>';
    super('TOKEN_MISSING', 401, reason, { headers: bearerChallenge(reason) });
  }
}

export class TokenInvalidError extends ServiceError {
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super('TOKEN_INVALID', 401, `invalid token: ${reason}`, {
      ...options,
      headers: bearerChallenge(reason),
    });
  }
}

export class CallerNotInvokerError extends ServiceError {
  /** caller: the token's verified email, or null when it has none (then subject names the caller). */
  constructor(
    readonly caller: string | null,
    subject?: string,
  ) {
    super(
      'CALLER_NOT_INVOKER',
      403,
      caller === null
        ? `the caller (subject ${subject}) has no verified email in its token, so it cannot be matched against INVOKERS`
        : `${caller} is not allowed to invoke this service: grant it roles/run.invoker ` +
            `(locally: add ${iamMember(caller)} to INVOKERS)`,
    );
  }
}

export class SigningKeysUnavailableError extends ServiceError {
  /** how: what the key server did, e.g. "answered 500"; retryAfterS: when the next key request may go out. */
  constructor(jwksUrl: string, how: string, retryAfterS: number) {
    super(
      'SIGNING_KEYS_UNAVAILABLE',
      503,
      `cannot check this token right now: its signing key is not cached and the key server at ${jwksUrl} ` +
        `${how}; next try in ${retryAfterS} s`,
      { headers: { 'Retry-After': String(retryAfterS) } },
    );
  }
}

export class IdTokenUnavailableError extends ServiceError {
  /** reason: what went wrong, e.g. "the metadata server at 127.0.0.1:8082 refused the connection"; hint: what to check. */
  constructor(audience: string, reason: string, hint: string, options?: { cause?: unknown }) {
    super(
      'ID_TOKEN_UNAVAILABLE',
      503,
      `could not get an identity token for audience ${audience}: ${reason}. ${hint}`,
      { ...options, headers: { 'Retry-After': '5' } },
    );
  }
}

/** Receiving answered, but not 2xx: calling never passes such an answer off as a 200. */
export class UpstreamRefusedError extends ServiceError {
  constructor(
    code: 'UPSTREAM_UNAUTHORIZED' | 'UPSTREAM_FORBIDDEN' | 'UPSTREAM_ERROR',
    message: string,
    extensions: Record<string, string | number | null>,
  ) {
    super(code, 502, message, { extensions });
  }
}

export class UpstreamUnreachableError extends ServiceError {
  /** how: what happened on the wire, e.g. "could not be reached (the connection was refused)". */
  constructor(url: string, how: string, options?: { cause?: unknown }) {
    super(
      'UPSTREAM_UNREACHABLE',
      502,
      `the receiving service at ${url} ${how}: check URL and that the service is up`,
      options,
    );
  }
}

export class UpstreamTimeoutError extends ServiceError {
  constructor(url: string, timeoutMs: number, options?: { cause?: unknown }) {
    super(
      'UPSTREAM_TIMEOUT',
      504,
      `the receiving service at ${url} did not answer within ${timeoutMs} ms`,
      options,
    );
  }
}

export class NotFoundError extends ServiceError {
  constructor(path: string) {
    super('NOT_FOUND', 404, `no route for ${path}`);
  }
}
