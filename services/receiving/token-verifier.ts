import { decodeJwt, errors, type JWTPayload } from 'jose';
import { SigningKeysUnavailableError, TokenInvalidError } from '../shared/errors.js';
import { verifyIdToken, type IdTokenClaims } from '../shared/google-id-token.js';
import { createSigningKeySet } from './signing-keys.js';

/** Who a verified token says the caller is. */
export interface Caller {
  subject: string;
  email?: string;
  emailVerified: boolean;
}

export interface TokenVerifier {
  /** Resolves with the caller, or rejects with TokenInvalidError / SigningKeysUnavailableError. */
  verify(token: string): Promise<Caller>;
}

/** Seconds of clock skew forgiven on exp, nbf and iat (google-auth-library forgives 300). */
const CLOCK_TOLERANCE_S = 30;
/** How many verified tokens are remembered until they expire. */
const REMEMBERED_TOKENS = 1000;

interface JwksVerifierOptions {
  jwksUrl: URL;
  audiences: readonly string[];
  issuers: readonly string[];
}

/**
 * Verifies Google-style ID tokens against a JWKS URL by the rules of shared/google-id-token.ts.
 * Keys come from a cache that outlives the key server (signing-keys.ts).
 */
export function createJwksTokenVerifier(options: JwksVerifierOptions): TokenVerifier {
  const keySet = createSigningKeySet(options.jwksUrl);
  // A token that verified once verifies again, until it expires, against the same keys: the
  // signature check is deterministic. Remembering it (never a failure) spares the RSA check, about
  // twice the rest of a request's cost, on every request of a token's hour. It is remembered with
  // the key set it was checked against, and trusted again only while that set is in use: a fetch
  // that withdraws or replaces its key (under the same kid too) makes it checked afresh.
  const verified = new Map<
    string,
    { caller: Caller; fromS: number; expS: number; keys: object | undefined }
  >();
  const nowS = () => Math.floor(Date.now() / 1000);

  return {
    async verify(token) {
      const known = verified.get(token);
      if (known !== undefined) {
        // Its times checked again as a fresh check would (a clock stepped back makes iat or nbf future).
        const at = nowS();
        if (
          known.fromS <= at + CLOCK_TOLERANCE_S &&
          known.expS > at - CLOCK_TOLERANCE_S &&
          known.keys === keySet.current()
        ) {
          return known.caller;
        }
        verified.delete(token);
      }
      // Taken before the check: a fetch that lands during it makes the token checked again, never trusted longer.
      const keys = keySet.current();
      let payload: IdTokenClaims;
      try {
        payload = await verifyIdToken(token, keySet.getKey, {
          audiences: options.audiences,
          issuers: options.issuers,
          clockToleranceS: CLOCK_TOLERANCE_S,
        });
      } catch (err) {
        if (err instanceof SigningKeysUnavailableError || err instanceof TokenInvalidError)
          throw err;
        throw new TokenInvalidError(describeFailure(err), { cause: err });
      }
      const caller = callerFrom(payload);
      if (verified.size >= REMEMBERED_TOKENS) verified.delete(verified.keys().next().value!);
      verified.set(token, {
        caller,
        fromS: Math.max(payload.iat, payload.nbf ?? payload.iat),
        expS: payload.exp,
        keys,
      });
      return caller;
    },
  };
}

/** What Cloud Run puts in place of the signature of a token it has checked. */
const SIGNATURE_REMOVED = 'SIGNATURE_REMOVED_BY_GOOGLE';

/**
 * TOKEN_CHECK=platform, for a service deployed with --no-allow-unauthenticated: Cloud Run checks
 * the ID token (signature, audience, expiry, roles/run.invoker) and removes its signature before
 * the container sees it. Such a token is trusted for its claims; a token that still carries a
 * signature is fully verified; anything else is refused. Only safe behind Cloud Run IAM.
 */
export function createPlatformTokenVerifier(options: {
  issuers: readonly string[];
  /** Verifies tokens that still carry a signature; null when AUDIENCES is not set. */
  signedTokens: TokenVerifier | null;
}): TokenVerifier {
  return {
    async verify(token) {
      // Not of the form header.payload.SIGNATURE_REMOVED_BY_GOOGLE: a signed token (or garbage, which
      // the full check refuses). A stripped token with more parts fails decodeJwt below.
      if (token.split('.')[2] !== SIGNATURE_REMOVED) {
        if (options.signedTokens === null) {
          throw new TokenInvalidError('a signed token can only be verified with AUDIENCES set');
        }
        return options.signedTokens.verify(token);
      }
      let claims: JWTPayload;
      try {
        claims = decodeJwt(token);
      } catch {
        throw new TokenInvalidError('token is malformed');
      }
      const nowS = Math.floor(Date.now() / 1000);
      if (typeof claims.iss !== 'string' || !options.issuers.includes(claims.iss)) {
        throw new TokenInvalidError('token issuer is not trusted');
      }
      if (typeof claims.exp !== 'number' || claims.exp <= nowS - CLOCK_TOLERANCE_S)
        throw new TokenInvalidError('token has expired');
      if (typeof claims.sub !== 'string') throw new TokenInvalidError('token has no subject');
      return callerFrom(claims);
    },
  };
}

function callerFrom(claims: JWTPayload): Caller {
  const email = typeof claims.email === 'string' ? claims.email : undefined;
  // Google has sent email_verified both as a boolean and as the string "true".
  const emailVerified = claims.email_verified === true || claims.email_verified === 'true';
  return { subject: claims.sub!, emailVerified, ...(email ? { email } : {}) };
}

/** jose's claim failures in our words, by reason and claim (the only ones the rules in google-id-token.ts produce). */
const CLAIM_FAILURE: Readonly<Record<string, string>> = {
  'missing aud': 'token has no audience',
  'missing iss': 'token has no issuer',
  'missing iat': 'token has no issue time (iat)',
  'missing exp': 'token has no expiry (exp)',
  'check_failed aud': 'token audience is not this service',
  'check_failed iss': 'token issuer is not trusted',
  'check_failed iat': 'token is issued in the future',
  'check_failed nbf': 'token is not valid yet (nbf)',
};

/** A short reason for the client; jose's own messages can quote claim values, so none pass through. */
function describeFailure(err: unknown): string {
  if (err instanceof errors.JWTExpired) {
    return err.claim === 'iat' ? 'token was issued too long ago' : 'token has expired';
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'invalid') return `token claim ${err.claim} is not a number`;
    return CLAIM_FAILURE[`${err.reason} ${err.claim}`] ?? 'token is malformed';
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'token algorithm is not RS256';
  if (err instanceof errors.JWSSignatureVerificationFailed)
    return 'token signature does not verify';
  if (err instanceof errors.JWKSNoMatchingKey) return 'token is signed by an unknown key';
  if (err instanceof errors.JWKSMultipleMatchingKeys) return 'token key id is ambiguous';
  if (err instanceof errors.JOSENotSupported) return 'token uses an unsupported algorithm or key';
  return 'token is malformed';
}
