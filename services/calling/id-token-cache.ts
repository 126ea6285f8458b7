import { decodeJwt } from 'jose';
import { IdTokenUnavailableError } from '../shared/errors.js';
import type { FetchIdToken, IdTokenFetchError } from './id-token-fetchers.js';

/** Where calling gets the ID tokens it sends. */
export interface IdTokenSource {
  /** Resolves with a token for the audience, or rejects with IdTokenUnavailableError. */
  getIdToken(audience: string): Promise<string>;
}

/** Refresh in the background once a token has less than this left. */
const REFRESH_AHEAD_MS = 5 * 60_000;
/** Never send a token with less than this left: wait for a fresh one. */
const MIN_VALIDITY_MS = 30_000;

/** Attempts per fetch, the first included, each bounded by ATTEMPT_TIMEOUT_MS and all by DEADLINE_MS. */
const ATTEMPTS = 3;
const ATTEMPT_TIMEOUT_MS = 2000;
const DEADLINE_MS = 5000;
/** Backoff before retry n is a random delay up to BASE_DELAY_MS * 2^(n-1) (full jitter). */
const BASE_DELAY_MS = 100;

interface IdTokenCacheOptions {
  /** What to check when no token can be had; ends the 503 message. */
  hint: string;
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
  const cache = new Map<string, Cached>();
  const inFlight = new Map<string, Promise<Cached>>();
  const quietUntil = new Map<string, number>();

  const fetchWithRetries = async (audience: string): Promise<Cached> => {
    const started = Date.now();
    const deadline = started + DEADLINE_MS;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const token = await fetchIdToken(
          audience,
          Math.max(1, Math.min(ATTEMPT_TIMEOUT_MS, deadline - Date.now())),
        );
        return { token, expiresAtMs: expiryOf(token) };
      } catch (err) {
        const error = err as IdTokenFetchError; // what every FetchIdToken rejects with
        const delay = Math.random() * BASE_DELAY_MS * 2 ** (attempt - 1);
        if (!error.transient || attempt >= ATTEMPTS || Date.now() + delay >= deadline) {
          const reason =
            error.silent === undefined
              ? error.reason
              : `${error.silent} did not answer within ${Math.round(Date.now() - started)} ms ` +
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
      const at = Date.now();
      if (cached !== undefined && at < cached.expiresAtMs - MIN_VALIDITY_MS) {
        if (
          at >= cached.expiresAtMs - REFRESH_AHEAD_MS &&
          !inFlight.has(audience) &&
          at >= (quietUntil.get(audience) ?? 0)
        ) {
          refresh(audience).catch((err: Error) => {
            // The cached token is still good; try again a little later rather than on every request.
            quietUntil.set(audience, Date.now() + 5000);
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
function expiryOf(token: string): number {
  try {
    const { exp } = decodeJwt(token);
    if (typeof exp === 'number') return exp * 1000;
  } catch {
    // Fall through: an opaque token.
  }
  return Date.now() + 60_000;
}
