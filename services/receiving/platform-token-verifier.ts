import { decodeJwt, type JWTPayload } from 'jose';
import { TokenInvalidError } from '../shared/errors.js';
import type { Caller, TokenVerifier } from './token-verifier.js';

/** What Cloud Run puts in place of the signature of a token it has checked. */
export const SIGNATURE_REMOVED = 'SIGNATURE_REMOVED_BY_GOOGLE';

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
  clockToleranceS?: number;
  now?: () => Date;
}): TokenVerifier {
  const tolerance = options.clockToleranceS ?? 30;
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
      const nowS = Math.floor((options.now?.() ?? new Date()).getTime() / 1000);
      if (typeof claims.iss !== 'string' || !options.issuers.includes(claims.iss)) {
        throw new TokenInvalidError('token issuer is not trusted');
      }
      if (typeof claims.exp !== 'number' || claims.exp <= nowS - tolerance) throw new TokenInvalidError('token has expired');
      if (typeof claims.sub !== 'string') throw new TokenInvalidError('token has no subject');
      return callerFrom(claims);
    },
  };
}

export function callerFrom(claims: JWTPayload): Caller {
  const email = typeof claims.email === 'string' ? claims.email : undefined;
  // Google has sent email_verified both as a boolean and as the string "true".
  const emailVerified = claims.email_verified === true || claims.email_verified === 'true';
  return { subject: claims.sub!, emailVerified, ...(email ? { email } : {}) };
}
