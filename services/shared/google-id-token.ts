/**
 * The claims a Google-minted ID token always has, checked one way wherever a token is verified:
 * by receiving (TOKEN_CHECK=verify, and signed tokens in platform mode) and by the local Cloud Run
 * front door. Only how much clock skew to forgive differs between them.
 */
import { jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { TokenInvalidError } from './errors.js';

/** The issuers Google's ID tokens name. */
export const GOOGLE_ISSUERS: readonly string[] = [
  'https://accounts.google.com',
  'accounts.google.com',
];

/** Google's ID tokens live one hour; like google-auth-library, refuse any that claims more than a day. */
const MAX_TOKEN_LIFETIME_S = 24 * 60 * 60;

interface IdTokenRules {
  audiences: readonly string[];
  issuers: readonly string[];
  /** Seconds of clock skew forgiven on exp, nbf and iat. */
  clockToleranceS: number;
}

/** A payload that passed the rules: one audience, an issue and an expiry time, a subject. */
export type IdTokenClaims = JWTPayload & { aud: string; exp: number; iat: number; sub: string };

/**
 * Verifies an ID token: RS256 only, the signature, aud (one string, one of the audiences), iss,
 * exp and iat (both present; iat not in the future, at most a day ago, and at most a day before
 * exp), nbf, sub. Rejects with jose's error for the signature and the registered claims (the
 * caller words it: its own reader differs), with TokenInvalidError for the rest, and with whatever
 * getKey rejects with.
 */
export async function verifyIdToken(
  token: string,
  getKey: JWTVerifyGetKey,
  rules: IdTokenRules,
): Promise<IdTokenClaims> {
  const { payload } = await jwtVerify(token, getKey, {
    algorithms: ['RS256'],
    audience: [...rules.audiences],
    issuer: [...rules.issuers],
    // iat is required too: maxTokenAge requires it.
    requiredClaims: ['exp'],
    maxTokenAge: MAX_TOKEN_LIFETIME_S,
    clockTolerance: rules.clockToleranceS,
  });
  // Google's ID tokens carry one audience; google-auth-library refuses a list, and so do we.
  if (typeof payload.aud !== 'string')
    throw new TokenInvalidError('token audience must be one string, not a list');
  if (payload.exp! - payload.iat! > MAX_TOKEN_LIFETIME_S)
    throw new TokenInvalidError('token is valid for more than a day');
  if (typeof payload.sub !== 'string') throw new TokenInvalidError('token has no subject');
  return payload as IdTokenClaims;
}
