import { decodeProtectedHeader, errors } from 'jose';
import { SigningKeysUnavailableError, TokenInvalidError } from '../shared/errors.js';
import { verifyIdToken, type IdTokenClaims } from '../shared/google-id-token.js';
import { callerFrom } from './platform-token-verifier.js';
import { createSigningKeySet, type SigningKeySetOptions } from './signing-keys.js';

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
  /** The key cache's rules (signing-keys.ts): cooldown, backoff, timeout, clock. */
  keys?: Omit<SigningKeySetOptions, 'url'>;
  /** How many verified tokens to remember until they expire (default 1000; 0: none). */
  cacheSize?: number;
  /** For tests: the current time. */
  now?: () => Date;
}

/**
 * Verifies Google-style ID tokens against a JWKS URL by the rules of shared/google-id-token.ts.
 * Keys come from a cache that outlives the key server (signing-keys.ts).
 */
export function createJwksTokenVerifier(options: JwksVerifierOptions): TokenVerifier {
  const clockTolerance = options.clockToleranceS ?? 30;
  const keySet = createSigningKeySet({ url: options.jwksUrl, ...options.keys });

  // A token that verified once verifies again until it expires or its key leaves the key set: the
  // signature check is deterministic. Remembering it (never a failure) spares the RSA work on every
  // request of a token's hour.
  const cacheSize = options.cacheSize ?? 1000;
  const verified = new Map<string, { caller: Caller; expS: number; kid: string | undefined }>();
  const nowS = () => Math.floor((options.now?.() ?? new Date()).getTime() / 1000);
  keySet.onChange((kids: ReadonlySet<string | undefined>) => {
    // A token without a kid matches no published kid, so it is forgotten at every key change.
    for (const [token, known] of verified) {
      if (!kids.has(known.kid)) verified.delete(token);
    }
  });

  const remembered = (token: string): Caller | undefined => {
    const known = verified.get(token);
    if (known === undefined) return undefined;
    // Remembered tokens alone keep the key set fresh, so a withdrawn key stops admitting them.
    keySet.refreshIfStale();
    if (known.expS > nowS() - clockTolerance) return known.caller;
    verified.delete(token);
    return undefined;
  };

  return {
    remembered,
    async verify(token) {
      const known = remembered(token);
      if (known !== undefined) return known;
      let payload: IdTokenClaims;
      try {
        payload = await verifyIdToken(token, keySet.getKey, {
          audiences: options.audiences,
          issuers: options.issuers,
          clockToleranceS: clockTolerance,
          now: options.now?.(),
        });
      } catch (err) {
        if (err instanceof SigningKeysUnavailableError || err instanceof TokenInvalidError) throw err;
        throw new TokenInvalidError(describeFailure(err), { cause: err });
      }
      const caller = callerFrom(payload);
      if (cacheSize > 0) {
        if (verified.size >= cacheSize) verified.delete(verified.keys().next().value!);
        verified.set(token, { caller, expS: payload.exp, kid: decodeProtectedHeader(token).kid });
      }
      return caller;
    },
  };
}

const MISSING_CLAIM: Readonly<Record<string, string>> = {
  aud: 'token has no audience',
  iss: 'token has no issuer',
  iat: 'token has no issue time (iat)',
  exp: 'token has no expiry (exp)',
};

/** A short reason for the client; jose's own messages can quote claim values, so none pass through. */
export function describeFailure(err: unknown): string {
  if (err instanceof errors.JWTExpired) {
    return err.claim === 'iat' ? 'token was issued too long ago' : 'token has expired';
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return MISSING_CLAIM[err.claim] ?? `token has no ${err.claim} claim`;
    if (err.reason === 'invalid') return `token claim ${err.claim} is not a number`;
    switch (err.claim) {
      case 'aud':
        return 'token audience is not this service';
      case 'iss':
        return 'token issuer is not trusted';
      case 'iat':
        return 'token is issued in the future';
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
