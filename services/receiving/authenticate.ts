import type { NextFunction, RequestHandler, Response } from 'express';
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
  const admit = (caller: Caller, res: Response, next: NextFunction) => {
    (res.locals as AuthenticatedLocals).caller = caller;
    if (invokers !== null) {
      if (caller.email === undefined || !caller.emailVerified) {
        throw new CallerNotInvokerError(null, caller.subject);
      }
      if (!isInvoker(invokers, caller.email)) throw new CallerNotInvokerError(caller.email);
    }
    next();
  };
  return (req, res, next) => {
    let header: string | undefined;
    for (const name of tokenHeaders) {
      const value = req.headers[name];
      if (typeof value === 'string') {
        header = value;
        break;
      }
    }
    const token = readBearerToken(header);
    // A token already verified is answered without a trip through the promise machinery.
    const known = verifier.remembered?.(token);
    if (known !== undefined) return admit(known, res, next);
    return verifier.verify(token).then((caller) => admit(caller, res, next));
  };
}
