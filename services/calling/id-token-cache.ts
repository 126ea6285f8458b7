import { decodeJwt } from 'jose';
import { IdTokenUnavailableError } from '../shared/errors.js';
import { IdTokenFetchError, type FetchIdToken } from './id-token-fetchers.js';

/** Where calling gets the ID tokens it sends. */
export interface IdTokenSource {
  /** Resolves with a token for the audience, or rejects with IdTokenUnavailableError. */
  getIdToken(audience: string): Promise<string>;
}

/** Refresh in the background once a token has less than this left. */
const REFRESH_AHEAD_MS = 5 * 60_000;
/** Never send a token with less than this left: wait for a fresh one. */
const MIN_VALIDITY_MS = 30_000;

interface IdTokenCacheOptions {
  /** What to check when no token can be had; ends the 503 message. */
  hint: string;
  /** Attempts per fetch, the first included (default 3). */
  attempts?: number;
  /** Per-attempt timeout (default 2 s). */
  attemptTimeoutMs?: number;
  /** Backoff before retry n is a random delay up to min(maxDelayMs, baseDelayMs * 2^n) (full jitter). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Bound on one fetch, retries included (default 5 s). */
  deadlineMs?: number;
  /** Epoch milliseconds; tests move it. */
  now?: () => number;
  onBackgroundRefreshError: (audience: string, error: Error) => void;
}

interface Cached {
  token: string;
  expiresAtMs: number;
}

/**
 * A token per audience, fetched once per lifetime whatever the concurrency: concurrent misses share
 * one in-flight fetch, and a token nearing expiry is refreshed in the background while requests
 * go on using it. Transient failures are retried with backoff and jitter within a deadline.
 */
export function createCachingIdTokenSource(
  fetchIdToken: FetchIdToken,
  options: IdTokenCacheOptions,
): IdTokenSource {
  const attempts = options.attempts ?? 3;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? 2000;
  const baseDelayMs = options.baseDelayMs ?? 100;
  const maxDelayMs = options.maxDelayMs ?? 1000;
  const deadlineMs = options.deadlineMs ?? 5000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, Cached>();
  const inFlight = new Map<string, Promise<Cached>>();
  const quietUntil = new Map<string, number>();

  const fetchWithRetries = async (audience: string): Promise<Cached> => {
    const started = now();
    const deadline = started + deadlineMs;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const token = await fetchIdToken(
          audience,
          Math.max(1, Math.min(attemptTimeoutMs, deadline - now())),
        );
        return { token, expiresAtMs: expiryOf(token, now()) };
      } catch (err) {
        const error =
          err instanceof IdTokenFetchError
            ? err
            : new IdTokenFetchError(String(err), false, { cause: err });
        const delay = Math.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
        if (!error.transient || attempt >= attempts || now() + delay >= deadline) {
          const reason =
            error.silent === undefined
              ? error.reason
              : `${error.silent} did not answer within ${Math.round(now() - started)} ms ` +
                `(${attempt} ${attempt === 1 ? 'attempt' : 'attempts'})`;
          throw new IdTokenUnavailableError(audience, reason, options.hint, { cause: error });
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  };

  /** Starts a fetch unless one is under way; either way returns the shared one. */
  const refresh = (audience: string): Promise<Cached> => {
    let pending = inFlight.get(audience);
    if (pending === undefined) {
      pending = fetchWithRetries(audience)
        .then((fresh) => {
          cache.set(audience, fresh);
          return fresh;
        })
        .finally(() => inFlight.delete(audience));
      inFlight.set(audience, pending);
    }
    return pending;
  };

  return {
    async getIdToken(audience) {
      const cached = cache.get(audience);
      const at = now();
      if (cached !== undefined && at < cached.expiresAtMs - MIN_VALIDITY_MS) {
        if (
          at >= cached.expiresAtMs - REFRESH_AHEAD_MS &&
          !inFlight.has(audience) &&
          at >= (quietUntil.get(audience) ?? 0)
        ) {
          refresh(audience).catch((err: Error) => {
            // The cached token is still good; try again a little later rather than on every request.
            quietUntil.set(audience, now() + 5000);
            options.onBackgroundRefreshError(audience, err);
          });
        }
        return cached.token;
      }
      return (await refresh(audience)).token;
    },
  };
}

/** When a token expires, from its own exp claim; a token without one is kept for a minute. */
function expiryOf(token: string, at: number): number {
  try {
    const { exp } = decodeJwt(token);
    if (typeof exp === 'number') return exp * 1000;
  } catch {
    // Fall through: an opaque token.
  }
  return at + 60_000;
}
