/**
 * A local Cloud Run front door: what Cloud Run's serving layer does to a request before a
 * container sees it, as far as Cloud Run's public docs say (docs/cloud-run.md, "The local Cloud Run front
 * door", lists each rule with its source and marks what is inferred). A development tool like the
 * metadata emulator: never shipped, never imported by services/.
 *
 * Unlike Cloud Run, it says why it refused: one log line per refusal naming the rule that failed.
 */
import { randomBytes } from 'node:crypto';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createRemoteJWKSet, decodeJwt, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { iamMember } from '../../services/shared/iam.js';
import type { Logger } from '../../services/shared/logger.js';
import { redactPath } from '../../services/shared/redact-path.js';
import { isPublic, mayInvoke, type Policy } from './policy.js';
import type { ServiceManifest } from './service.js';

export interface FrontOptions {
  service: ServiceManifest;
  /** Where clients reach the service locally, e.g. http://127.0.0.1:8081: its audience. */
  url: string;
  /** The service's own process, e.g. http://127.0.0.1:40123; only the front calls it. */
  target: string;
  /** Google's public keys (locally, the metadata emulator's /oauth2/v3/certs). */
  jwksUrl: URL;
  /** The service's IAM policy and the project's, as they are now (they may change at any time). */
  policies: () => Policy[];
  logger: Logger;
}

/** Google's ID token issuers. */
const ISSUERS = ['https://accounts.google.com', 'accounts.google.com'];
const SIGNATURE_REMOVED = 'SIGNATURE_REMOVED_BY_GOOGLE';
/** Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and are not forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

type Verdict =
  | { admit: true; checked?: { header: 'authorization' | 'x-serverless-authorization'; token: string } }
  | { admit: false; status: 401 | 403 | 500; rule: string; reason: string };

/** A front for one service: an HTTP server, not yet listening. */
export function createCloudRunFront(options: FrontOptions): Server {
  const { service, logger } = options;
  const keys: JWTVerifyGetKey = createRemoteJWKSet(options.jwksUrl);
  const origin = new URL(options.url).origin;
  // The service's URL (an origin, no path, as Cloud Run's docs give it) and its custom audiences.
  const audiences = [origin, ...service.customAudiences];

  async function check(req: IncomingMessage): Promise<Verdict> {
    if (service.invokerIamDisabled) return { admit: true };
    let policies: Policy[];
    try {
      policies = options.policies();
    } catch (err) {
      return { admit: false, status: 500, rule: 'policy', reason: `the IAM policy cannot be read: ${(err as Error).message}` };
    }
    // allUsers holding an invoker role on the service (the first policy; the project's follows): public, no check.
    const [own] = policies;
    if (own !== undefined && isPublic(own)) return { admit: true };
    // Cloud Run checks X-Serverless-Authorization when present, else Authorization.
    const header = req.headers['x-serverless-authorization'] !== undefined ? 'x-serverless-authorization' : 'authorization';
    const token = bearer(req.headers[header] as string | undefined);
    if (token === undefined) {
      const name = header === 'authorization' ? 'Authorization' : 'X-Serverless-Authorization';
      const sent = req.headers[header] === undefined ? `no ${name} header` : `an ${name} header that is not "Bearer <token>"`;
      return {
        admit: false,
        status: 403,
        rule: 'token-missing',
        reason: `the request has ${sent}: ${service.name} is private (the invoker IAM check is on) and wants a Google-signed ID token`,
      };
    }
    let email: unknown;
    try {
      ({
        payload: { email },
      } = await jwtVerify(token, keys, { issuer: ISSUERS, audience: audiences, algorithms: ['RS256'] }));
    } catch (err) {
      return { admit: false, status: 401, rule: 'token-invalid', reason: whyInvalid(err, token, audiences, header) };
    }
    if (typeof email !== 'string' || email === '') {
      return {
        admit: false,
        status: 401,
        rule: 'token-invalid',
        reason: `the ${header} token has no email claim: not an ID token of a service account or user`,
      };
    }
    if (!mayInvoke(policies, email)) {
      return {
        admit: false,
        status: 403,
        rule: 'not-invoker',
        reason:
          `${email} holds no roles/run.invoker on ${service.name}; grant it with: npm run local -- run services ` +
          `add-iam-policy-binding ${service.name} --member=${iamMember(email)} --role=roles/run.invoker`,
      };
    }
    return { admit: true, checked: { header, token } };
  }

  return createServer((req, res) => {
    // Never the raw path in a log or a page: a token pasted into it is cut out.
    const path = redactPath(req.url!);
    void check(req).then(
      (verdict) => {
        if (!verdict.admit) {
          logger.warn(
            { service: service.name, rule: verdict.rule, status: verdict.status, method: req.method, path },
            `${service.name} front refused ${req.method} ${path} with ${verdict.status}: ${verdict.reason}`,
          );
          refuse(res, verdict.status, path);
          return;
        }
        forward(req, res, verdict, path);
      },
      (err: unknown) => {
        logger.error({ err, service: service.name }, `${service.name} front failed on ${req.method} ${path}`);
        refuse(res, 500, path);
      },
    );
  });

  function forward(req: IncomingMessage, res: ServerResponse, verdict: Verdict & { admit: true }, path: string): void {
    const headers: IncomingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name)) headers[name] = value;
    // The container sees the checked token without its signature, in the header it came in.
    if (verdict.checked !== undefined) {
      const { header, token } = verdict.checked;
      headers[header] = `Bearer ${token.split('.').slice(0, 2).join('.')}.${SIGNATURE_REMOVED}`;
    }
    if (headers.traceparent === undefined && headers['x-cloud-trace-context'] === undefined) {
      const traceId = randomBytes(16).toString('hex');
      const spanId = randomBytes(8);
      headers.traceparent = `00-${traceId}-${spanId.toString('hex')}-00`;
      headers['x-cloud-trace-context'] = `${traceId}/${spanId.readBigUInt64BE()};o=0`;
    }
    const client = req.socket.remoteAddress!;
    const forwardedFor = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = forwardedFor ? `${String(forwardedFor)}, ${client}` : client;
    headers['x-forwarded-proto'] = 'http';

    const target = new URL(req.url!, options.target);
    const upstream = httpRequest(target, { method: req.method, headers }, (answer) => {
      const out: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(answer.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
      res.writeHead(answer.statusCode!, out);
      answer.pipe(res);
      // The container cut its answer short (a reset, a crash): Node reports it as an error on the
      // answer ("aborted"); cut the client's answer too, as a proxy must.
      answer.once('error', () => res.destroy());
    });
    // The request timeout (timeoutSeconds): the whole answer must come within it.
    const timer = setTimeout(() => {
      logger.warn(
        { service: service.name, rule: 'timeout', status: 504, path },
        `${service.name} front ended ${req.method} ${path} with 504: no full answer within timeoutSeconds ${service.timeoutSeconds}`,
      );
      if (res.headersSent) res.destroy();
      else res.writeHead(504, { 'content-type': 'text/plain' }).end('upstream request timeout');
      upstream.destroy();
    }, service.timeoutSeconds * 1000);
    timer.unref();
    upstream.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (res.headersSent) return void res.destroy();
      logger.error(
        { service: service.name, rule: 'container-unreachable', status: 503, code: err.code },
        `${service.name} front could not reach its container at ${options.target} (${err.code ?? err.message})`,
      );
      res
        .writeHead(503, { 'content-type': 'text/html; charset=UTF-8' })
        .end(page(503, 'Service Unavailable', 'The service you requested is not available yet. Please try again in 30 seconds.'));
    });
    res.once('close', () => {
      clearTimeout(timer);
      if (!res.writableEnded) upstream.destroy();
    });
    req.pipe(upstream);
  }
}

/** The token of a `Bearer <token>` header (as receiving reads it: scheme in any case, blanks around). */
function bearer(value: string | undefined): string | undefined {
  return /^bearer[ \t]+([^\s]+)[ \t]*$/i.exec(value ?? '')?.[1];
}

/** What a developer should read about a token that failed the check; never the token itself. */
function whyInvalid(err: unknown, token: string, audiences: readonly string[], header: string): string {
  const claims = (() => {
    try {
      return decodeJwt(token);
    } catch {
      return undefined;
    }
  })();
  const where = `the ${header} token`;
  // Not three base64url parts of JSON, or a header jose cannot read: not a JWT at all.
  if (claims === undefined || err instanceof errors.JWSInvalid) {
    return (
      `${where} is not a JWT (an ID token is three base64url parts): perhaps an OAuth access token, which Cloud Run ` +
      'also accepts but this front cannot check on one machine; send an ID token'
    );
  }
  if (err instanceof errors.JWTExpired) {
    return `${where} expired at ${new Date(Number(claims.exp) * 1000).toISOString()}; fetch a new one`;
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') {
      const custom = audiences.slice(1);
      return (
        `aud is ${JSON.stringify(claims.aud)} but this service accepts ${audiences[0]} (its URL)` +
        (custom.length > 0 ? ` and its custom audiences ${custom.join(', ')}` : ' and no custom audience')
      );
    }
    if (err.claim === 'iss') return `iss is ${JSON.stringify(claims.iss)}, not Google's (${ISSUERS[0]})`;
    return `${where} fails its ${err.claim} claim: ${err.message}`;
  }
  if (err instanceof errors.JWKSNoMatchingKey) return `${where} is signed with a key that is not one of Google's (kid unknown)`;
  if (err instanceof errors.JWSSignatureVerificationFailed) return `${where}'s signature does not verify with Google's keys`;
  if (err instanceof errors.JOSEAlgNotAllowed) return `${where} is not RS256, as Google's ID tokens are`;
  if (err instanceof errors.JWKSTimeout || !(err instanceof errors.JOSEError)) {
    return `Google's keys could not be fetched to check ${where}: ${(err as Error).message}`;
  }
  return `${where} does not verify: ${(err as Error).message}`;
}

/** Cloud Run's answers: HTML pages of the shape Google's front end sends. */
function refuse(res: ServerResponse, status: 401 | 403 | 500, path: string): void {
  const shown = escapeHtml(path);
  if (status === 403) {
    res.writeHead(403, { 'content-type': 'text/html; charset=UTF-8' });
    res.end(page(403, 'Forbidden', `Your client does not have permission to get URL <code>${shown}</code> from this server.`));
  } else if (status === 401) {
    res.writeHead(401, {
      'content-type': 'text/html; charset=UTF-8',
      'www-authenticate': 'Bearer error="invalid_token" error_description="The access token could not be verified"',
    });
    res.end(page(401, 'Unauthorized', `Your client does not have permission to the requested URL <code>${shown}</code>.`));
  } else {
    res.writeHead(500, { 'content-type': 'text/html; charset=UTF-8' }).end(page(500, 'Server Error', 'The server encountered an error.'));
  }
}

function page(status: number, title: string, text: string): string {
  return (
    `<html><head>\n<meta http-equiv="content-type" content="text/html;charset=utf-8">\n<title>${status} ${title}</title>\n</head>\n` +
    `<body text=#000000 bgcolor=#ffffff>\n<h1>Error: ${title}</h1>\n<h2>${text}</h2>\n<h2></h2>\n</body></html>\n`
  );
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
