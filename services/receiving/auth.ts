import type { RequestHandler } from 'express';
import { CallerNotInvokerError, TokenInvalidError, TokenMissingError } from '../shared/errors.js';
import { emailKey } from '../shared/iam.js';
import type { Invokers, ReceivingConfig } from './config.js';
import {
  createJwksTokenVerifier,
  createPlatformTokenVerifier,
  type Caller,
  type TokenVerifier,
} from './token-verifier.js';

// HTTP trims the value, so nothing can follow the token.
const BEARER = /^bearer[ \t]+(\S+)$/i;

/** The token from an `Authorization: Bearer <token>` header (scheme case-insensitive). */
function readBearerToken(header: string | undefined): string {
  // HTTP trims a header's value, so blank is empty.
  if (header === undefined || header === '') throw new TokenMissingError();
  const match = BEARER.exec(header);
  if (match === null) {
    throw new TokenInvalidError('Authorization header is not of the form "Bearer <token>"');
  }
  return match[1]!;
}

/** Where platform mode looks for the token: Cloud Run checks X-Serverless-Authorization first. */
const PLATFORM_TOKEN_HEADERS = ['x-serverless-authorization', 'authorization'];

/**
 * Lets a request through only with a valid ID token and, when invokers are set, only when the
 * token's verified email is one of them (matched as IAM matches it, shared/iam.ts).
 */
function authenticate(
  verifier: TokenVerifier,
  invokers: Invokers | null,
  tokenHeaders: readonly string[],
): RequestHandler {
  return async (req, res, next) => {
    const header = tokenHeaders
      .map((name) => req.headers[name])
      .find((value) => typeof value === 'string');
    const caller: Caller = await verifier.verify(readBearerToken(header));
    res.locals.caller = caller;
    if (invokers !== null) {
      if (caller.email === undefined || !caller.emailVerified)
        throw new CallerNotInvokerError(null, caller.subject);
      if (!invokers.has(emailKey(caller.email))) throw new CallerNotInvokerError(caller.email);
    }
    next();
  };
}

/**
 * The middleware TOKEN_CHECK asks for: verify (every token checked here), platform (tokens Cloud
 * Run checked and unsigned are trusted, signed ones verified), none (null: Cloud Run IAM alone).
 * The caller, once admitted, is left in res.locals.caller for the request's log line.
 */
export function createTokenCheck(config: ReceivingConfig): RequestHandler | null {
  if (config.tokenCheck === 'none') return null;
  const signedTokens =
    config.audiences.length > 0
      ? createJwksTokenVerifier({
          jwksUrl: config.jwksUrl,
          audiences: config.audiences,
          issuers: config.issuers,
        })
      : null;
  if (config.tokenCheck === 'verify')
    return authenticate(signedTokens!, config.invokers, ['authorization']);
  return authenticate(
    createPlatformTokenVerifier({ issuers: config.issuers, signedTokens }),
    config.invokers,
    PLATFORM_TOKEN_HEADERS,
  );
}
