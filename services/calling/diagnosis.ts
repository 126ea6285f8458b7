import { decodeJwt } from 'jose';
import { UpstreamRefusedError } from '../shared/errors.js';
import { iamMember } from '../shared/iam.js';
import type { AuthMode } from './config.js';

interface Refusal {
  url: URL;
  upstreamStatus: number;
  audience: string;
  auth: AuthMode;
  /** The token calling sent, read here only for its email; never echoed. */
  token: string | null;
  /** The receiving service's WWW-Authenticate header, if any. */
  challenge?: string | undefined;
}

/**
 * Turns a non-2xx answer from receiving into an error that says who called, for which audience,
 * and what to run to fix it.
 */
export function explainRefusal(refusal: Refusal): UpstreamRefusedError {
  const { url, upstreamStatus, audience, auth } = refusal;
  const caller = auth === 'none' || refusal.token === null ? null : callerOf(refusal.token);
  const said = reasonIn(refusal.challenge, refusal.token);
  const extensions = { upstreamStatus, caller, audience: auth === 'none' ? null : audience };
  const head = `the receiving service at ${url.href} answered ${upstreamStatus}`;
  const as =
    caller === null
      ? 'calling sent no token (AUTH=none)'
      : `calling called as ${caller} with a token for audience ${audience}`;
  const receivingSaid = said ? ` Receiving said: ${said}.` : '';

  if ((upstreamStatus === 401 || upstreamStatus === 403) && auth === 'none') {
    const fix = 'set AUTH=id-token on calling so it sends an ID token';
    return new UpstreamRefusedError(
      upstreamStatus === 401 ? 'UPSTREAM_UNAUTHORIZED' : 'UPSTREAM_FORBIDDEN',
      `${head}: ${as}, and a private service wants one.${receivingSaid}\nFix: ${fix}.`,
      { ...extensions, fix },
    );
  }
  if (upstreamStatus === 403) {
    const member = iamMember(caller ?? 'CALLER_EMAIL');
    const service = serviceOf(url);
    const fix =
      `gcloud run services add-iam-policy-binding ${service.name}${service.region ? ` --region=${service.region}` : ''} ` +
      `--member=${member} --role=roles/run.invoker`;
    return new UpstreamRefusedError(
      'UPSTREAM_FORBIDDEN',
      `${head}: ${as}, and that identity may not invoke it.${receivingSaid}\n` +
        `Fix: grant the caller the Cloud Run Invoker role on the receiving service:\n  ${fix}\n` +
        '(locally, on npm start: the same command, in a shell set up by eval "$(npm run -s local-env)")',
      { ...extensions, fix },
    );
  }
  if (upstreamStatus === 401) {
    const fix =
      said === 'token signature does not verify'
        ? 'behind Cloud Run IAM the signature is removed before receiving sees the token: run receiving with ' +
          'TOKEN_CHECK=platform, or set TOKEN_HEADER=both on calling so Authorization reaches receiving untouched'
        : `the audience must be the receiving service's URL origin (${url.origin}) or a custom audience set on it: ` +
          `set AUDIENCE on calling to match (it is ${audience})`;
    return new UpstreamRefusedError(
      'UPSTREAM_UNAUTHORIZED',
      `${head}: it did not accept the token; ${as}.${receivingSaid}\nFix: ${fix}.`,
      { ...extensions, fix },
    );
  }
  return new UpstreamRefusedError('UPSTREAM_ERROR', `${head}.`, extensions);
}

function callerOf(token: string): string {
  try {
    const { email, sub } = decodeJwt(token);
    if (typeof email === 'string') return email;
    if (typeof sub === 'string') return `subject ${sub}`;
  } catch {
    // Not a JWT: say so below.
  }
  return 'an identity its token does not name';
}

/**
 * error_description from a Bearer challenge, short and printable, and never a piece of the token
 * calling sent (a receiving or a proxy could echo it): a run of base64url that shares 8 characters
 * with the token, or any run long enough to be a token's part, is left out.
 */
function reasonIn(challenge: string | undefined, token: string | null): string | undefined {
  const match = challenge && /error_description="([^"]{1,200})"/.exec(challenge);
  return match
    ? match[1]!
        .replace(/[^\x20-\x7e]/g, '')
        .replace(/[\w-]{8,}/g, (run) =>
          run.length >= 20 || sharesEight(run, token) ? '[redacted]' : run,
        )
    : undefined;
}

function sharesEight(run: string, token: string | null): boolean {
  for (let i = 0; i + 8 <= run.length; i += 1)
    if (token?.includes(run.slice(i, i + 8))) return true;
  return false;
}

/** The Cloud Run service name (and region when the URL tells it), for the gcloud command. */
function serviceOf(url: URL): { name: string; region?: string } {
  const host = url.hostname;
  // https://SERVICE-PROJECTNUMBER.REGION.run.app
  const deterministic = /^(.+)-\d+\.([a-z]+-[a-z]+\d+)\.run\.app$/.exec(host);
  if (deterministic) return { name: deterministic[1]!, region: deterministic[2]! };
  // https://SERVICE-HASH-REGIONCODE.a.run.app
  const legacy = /^(.+)-[a-z0-9]{10}-[a-z]{2}\.a\.run\.app$/.exec(host);
  if (legacy) return { name: legacy[1]! };
  if (host === '127.0.0.1' || host === 'localhost' || host === '[::1]')
    return { name: 'receiving' };
  return { name: 'RECEIVING_SERVICE' };
}
