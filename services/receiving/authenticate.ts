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
export function authenticate(verifier: TokenVerifier, invokers: Invokers | null): RequestHandler {
  return async (req, res, next) => {
    const caller = await verifier.verify(readBearerToken(req.headers.authorization));
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
