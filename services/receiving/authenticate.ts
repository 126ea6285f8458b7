import type { RequestHandler } from 'express';
import { CallerNotInvokerError } from '../shared/errors.js';
import { readBearerToken } from './bearer.js';
import { isInvoker, type Invokers } from './invokers.js';
import type { Caller, TokenVerifier } from './token-verifier.js';

export interface AuthenticatedLocals {
  caller?: Caller;
}

/**
 * Lets a request through only with a valid ID token and, when invokers are set, only when the
 * token's verified email is one of them. The caller is left in res.locals.caller.
 */
export function authenticate(
  verifier: TokenVerifier,
  invokers: Invokers | null,
  /** Headers read for the token, first present wins (platform mode reads X-Serverless-Authorization first). */
  tokenHeaders: readonly string[] = ['authorization'],
): RequestHandler {
  return async (req, res, next) => {
    const header = tokenHeaders.map((name) => req.headers[name]).find((value) => typeof value === 'string');
    const caller = await verifier.verify(readBearerToken(header as string | undefined));
    (res.locals as AuthenticatedLocals).caller = caller;
    if (invokers !== null) {
      if (caller.email === undefined || !caller.emailVerified) {
        throw new CallerNotInvokerError(null, caller.subject);
      }
      if (!isInvoker(invokers, caller.email)) throw new CallerNotInvokerError(caller.email);
    }
    next();
  };
}
