import http from 'node:http';
import https from 'node:https';
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { SigningKeysUnavailableError } from '../shared/errors.js';
import { httpGet, type HttpAnswer, type HttpFailure } from '../shared/http.js';

/**
 * Google's signing keys, cached so that the key server's outages and anyone's forged key ids cost
 * receiving nothing: the rules are in docs/security.md ("How receiving caches Google's signing keys").
 */
interface SigningKeySet {
  /** For jose's jwtVerify: a cached key, or JWKSNoMatchingKey, or SigningKeysUnavailableError. */
  getKey: JWTVerifyGetKey;
  /**
   * The key set in use now (undefined before the first fetch), starting a background refresh if it
   * is past its max-age; each fetch brings a new one. A token verified under a key set may be
   * trusted again while that same set is in use. Synchronous.
   */
  current(): object | undefined;
}

/** The least time between two key requests, whatever happens. */
const COOLDOWN_MS = 30_000;
/** While the key server keeps failing, the wait doubles from COOLDOWN_MS up to this. */
const MAX_BACKOFF_MS = 5 * 60_000;
/** One key request's bound. */
const TIMEOUT_MS = 5000;
/** Keys are kept for the key server's Cache-Control max-age, within these bounds. */
const MIN_MAX_AGE_S = 30;
const MAX_MAX_AGE_S = 24 * 60 * 60;
/** When the key server sends no max-age. */
const DEFAULT_MAX_AGE_S = 300;
const MAX_BODY_BYTES = 64 * 1024;

interface Cached {
  getKey: JWTVerifyGetKey;
  kids: ReadonlySet<string>;
  staleAtMs: number;
}

/**
 * A key set that outlives its source. Keys are fetched on first use, kept for the key server's
 * max-age and refreshed in the background once stale; a failed refresh keeps the cached keys in use
 * (stale-if-error). A token with an unknown key id triggers a fetch only when the cooldown allows:
 * at most one key request per cooldown, doubling while the key server fails, and concurrent
 * requests share the one in flight.
 */
export function createSigningKeySet(url: URL): SigningKeySet {
  // Node's own CA list; certificates to trust besides it go in NODE_EXTRA_CA_CERTS.
  const agent = new (url.protocol === 'https:' ? https : http).Agent();

  let cached: Cached | undefined;
  let inFlight: Promise<void> | undefined;
  let nextFetchAtMs = 0;
  let failures = 0;
  let lastFailure: string | undefined; // set by every failed fetch, before anything reads it

  /** The one fetch in flight, started now if the cooldown allows; it never rejects. */
  const refresh = (): Promise<void> | undefined => {
    if (inFlight !== undefined) return inFlight;
    if (Date.now() < nextFetchAtMs) return undefined;
    inFlight = fetchKeys(url, agent).then(
      (fetched) => {
        failures = 0;
        cached = { ...fetched, staleAtMs: Date.now() + fetched.maxAgeS * 1000 };
        nextFetchAtMs = Date.now() + COOLDOWN_MS;
        inFlight = undefined;
      },
      (err: unknown) => {
        failures += 1;
        lastFailure = (err as Error).message;
        nextFetchAtMs = Date.now() + Math.min(MAX_BACKOFF_MS, COOLDOWN_MS * 2 ** (failures - 1));
        inFlight = undefined;
      },
    );
    return inFlight;
  };

  const unavailable = () =>
    new SigningKeysUnavailableError(
      url.href,
      lastFailure!,
      Math.max(1, Math.ceil((nextFetchAtMs - Date.now()) / 1000)),
    );

  const refreshIfStale = () => {
    if (cached !== undefined && Date.now() >= cached.staleAtMs) void refresh();
  };

  return {
    async getKey(header, token) {
      if (cached === undefined) {
        await refresh();
        if (cached === undefined) throw unavailable();
      }
      refreshIfStale();
      const kid = header.kid;
      if (kid !== undefined && !cached.kids.has(kid)) {
        await refresh();
        // Its key may be in the set that could not be fetched: not the token's fault.
        if (!cached.kids.has(kid) && failures > 0) throw unavailable();
      }
      return cached.getKey(header, token);
    },
    current() {
      refreshIfStale();
      return cached;
    },
  };
}

async function fetchKeys(
  url: URL,
  agent: http.Agent,
): Promise<{ getKey: JWTVerifyGetKey; kids: ReadonlySet<string>; maxAgeS: number }> {
  let answer: HttpAnswer;
  try {
    answer = await httpGet(url, { agent, timeoutMs: TIMEOUT_MS, maxBytes: MAX_BODY_BYTES });
  } catch (err) {
    throw new Error((err as HttpFailure).message); // what the key server did, for SigningKeysUnavailableError
  }
  if (answer.status !== 200) throw new Error(`answered ${answer.status}`);
  let body: unknown;
  try {
    body = JSON.parse(answer.body);
  } catch {
    throw new Error('answered something that is not JSON');
  }
  const keys = (body as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || !keys.some((k) => (k as { kty?: unknown })?.kty === 'RSA')) {
    throw new Error('answered a key set without RSA keys');
  }
  let getKey: JWTVerifyGetKey;
  try {
    getKey = createLocalJWKSet(body as JSONWebKeySet);
  } catch {
    throw new Error('answered a malformed key set');
  }
  const kids = new Set(
    keys
      .map((k) => (k as { kid?: unknown }).kid)
      .filter((kid): kid is string => typeof kid === 'string'),
  );
  return { getKey, kids, maxAgeS: maxAgeOf(answer.headers['cache-control']) };
}

/** Cache-Control's max-age in seconds, bounded to [MIN_MAX_AGE_S, MAX_MAX_AGE_S]. */
function maxAgeOf(cacheControl: string | undefined): number {
  const match = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)/i.exec(cacheControl ?? '');
  const seconds = match === null ? DEFAULT_MAX_AGE_S : Number(match[1]);
  return Math.min(MAX_MAX_AGE_S, Math.max(MIN_MAX_AGE_S, seconds));
}
