import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { SigningKeysUnavailableError, TokenInvalidError } from '../shared/errors.js';
import { callerFrom } from './platform-token-verifier.js';

/** Who a verified token says the caller is. */
export interface Caller {
  subject: string;
  email?: string;
  emailVerified: boolean;
}

export interface TokenVerifier {
  /** Resolves with the caller, or rejects with TokenInvalidError / SigningKeysUnavailableError. */
  verify(token: string): Promise<Caller>;
  /** The caller of a token verified before and not expired since, if any; synchronous. */
  remembered?(token: string): Caller | undefined;
}

export interface JwksVerifierOptions {
  jwksUrl: URL;
  audiences: readonly string[];
  issuers: readonly string[];
  /** Seconds of clock skew forgiven on exp, nbf and iat (google-auth-library forgives 300). */
  clockToleranceS?: number;
  /** Seconds between JWKS refetches triggered by an unknown kid. */
  refetchCooldownS?: number;
  fetchTimeoutMs?: number;
  /** How many verified tokens to remember until they expire (default 1000; 0: none). */
  cacheSize?: number;
  /** For tests: the current time. */
  now?: () => Date;
}

// Google's ID tokens live one hour; like google-auth-library, refuse any that claims more than a day.
const MAX_LIFETIME_S = 24 * 60 * 60;

/**
 * Verifies Google-style ID tokens against a JWKS URL with jose: RS256 only, signature, aud, iss,
 * exp, iat (present, not in the future, lifetime at most a day) and nbf. The key set is fetched
 * once, cached, and refetched on an unknown kid at most once per cooldown.
 */
export function createJwksTokenVerifier(options: JwksVerifierOptions): TokenVerifier {
  const clockTolerance = options.clockToleranceS ?? 30;
  const remote = createRemoteJWKSet(options.jwksUrl, {
    cooldownDuration: (options.refetchCooldownS ?? 30) * 1000,
    timeoutDuration: options.fetchTimeoutMs ?? 5000,
  });
  // Network failures are the key server's fault, not the token's: 503, not 401.
  const getKey: JWTVerifyGetKey = async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      throw new SigningKeysUnavailableError(options.jwksUrl.href, { cause: err });
    }
  };

  // A token that verified once verifies again until it expires: the signature check is deterministic.
  // Remembering it (never a failure) spares the RSA work on every request of a token's hour.
  const cacheSize = options.cacheSize ?? 1000;
  const verified = new Map<string, { caller: Caller; expS: number }>();
  const nowS = () => Math.floor((options.now?.() ?? new Date()).getTime() / 1000);

  const remembered = (token: string): Caller | undefined => {
    const known = verified.get(token);
    if (known === undefined) return undefined;
    if (known.expS > nowS() - clockTolerance) return known.caller;
    verified.delete(token);
    return undefined;
  };

  return {
    remembered,
    async verify(token) {
      const known = remembered(token);
      if (known !== undefined) return known;
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, getKey, {
          algorithms: ['RS256'],
          audience: [...options.audiences],
          issuer: [...options.issuers],
          requiredClaims: ['exp', 'iat'],
          maxTokenAge: MAX_LIFETIME_S,
          clockTolerance,
          ...(options.now ? { currentDate: options.now() } : {}),
        }));
      } catch (err) {
        if (err instanceof SigningKeysUnavailableError) throw err;
        throw new TokenInvalidError(describeFailure(err), { cause: err });
      }
      if (payload.exp! - payload.iat! > MAX_LIFETIME_S) {
        throw new TokenInvalidError('token is valid for more than a day');
      }
      if (typeof payload.sub !== 'string') throw new TokenInvalidError('token has no subject');
      const caller = callerFrom(payload);
      if (cacheSize > 0) {
        if (verified.size >= cacheSize) verified.delete(verified.keys().next().value!);
        verified.set(token, { caller, expS: payload.exp! });
      }
      return caller;
    },
  };
}

/** A short reason for the client; jose's own messages can quote claim values, so none pass through. */
function describeFailure(err: unknown): string {
  if (err instanceof errors.JWTExpired) {
    return err.claim === 'iat' ? 'token was issued too long ago' : 'token has expired';
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'aud':
        return err.reason === 'missing' ? 'token has no audience' : 'token audience is not this service';
      case 'iss':
        return err.reason === 'missing' ? 'token has no issuer' : 'token issuer is not trusted';
      case 'iat':
        return err.reason === 'missing' ? 'token has no issue time (iat)' : 'token is issued in the future';
      case 'exp':
        return 'token has no expiry (exp)';
      case 'nbf':
        return 'token is not valid yet (nbf)';
      default:
        return `token claim ${err.claim} is invalid`;
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'token algorithm is not RS256';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'token signature does not verify';
  if (err instanceof errors.JWKSNoMatchingKey) return 'token is signed by an unknown key';
  if (err instanceof errors.JWKSMultipleMatchingKeys) return 'token key id is ambiguous';
  if (err instanceof errors.JOSENotSupported) return 'token uses an unsupported algorithm or key';
  return 'token is malformed';
}
