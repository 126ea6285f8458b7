/**
 * A local Cloud Run front door: what Cloud Run's serving layer does to a request before a
 * container sees it, as far as Cloud Run's public docs say (docs/cloud-run.md, "The local Cloud Run
 * front door", lists each rule with its source and marks what is inferred). A development tool like
 * the metadata emulator: never shipped, never imported by services/.
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
import type { Duplex } from 'node:stream';
import { createRemoteJWKSet, decodeJwt, errors, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { TokenInvalidError } from '../../services/shared/errors.js';
import { GOOGLE_ISSUERS, verifyIdToken } from '../../services/shared/google-id-token.js';
import { iamMember } from '../../services/shared/iam.js';
import type { Logger } from '../../services/shared/logger.js';
import { redactPath } from '../../services/shared/redact-path.js';
import { isPublic, mayInvoke, type Policy } from './policy.js';
import type { ServiceManifest } from './service.js';

export interface FrontOptions {
  /** The service's manifest as it is now: a replace through the local Admin API may change it. */
  service: () => ServiceManifest;
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

/** The audience of `gcloud auth print-identity-token` without --audiences: the gcloud CLI's OAuth client. */
export const GCLOUD_CLIENT_ID = '32555940559.apps.googleusercontent.com';
const SIGNATURE_REMOVED = 'SIGNATURE_REMOVED_BY_GOOGLE';
/** Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and are not forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
/** A client has this long to send its request line and headers (Node's default of 60 s invites slowloris). */
export const HEADERS_TIMEOUT_MS = 5000;
/** The longest attacker-chosen text (a path, a claim) that a log line or a page shows. */
const SHOWN_MAX = 200;

type Checked = { header: TokenHeader; token: string };
type TokenHeader = 'authorization' | 'x-serverless-authorization';
type Verdict =
  | { admit: true; checked?: Checked }
  | { admit: false; status: 400 | 401 | 403 | 500 | 501; rule: string; reason: string };

/** A front for one service: an HTTP server, not yet listening. */
export function createCloudRunFront(options: FrontOptions): Server {
  const { logger } = options;
  // Its name and timeoutSeconds are fixed while it runs (a change makes a new revision).
  const service = options.service();
  const keys: JWTVerifyGetKey = createRemoteJWKSet(options.jwksUrl);
  const { hostname: targetHost, port: targetPort } = new URL(options.target);
  const origin = new URL(options.url).origin;

  async function check(req: IncomingMessage): Promise<Verdict> {
    const { invokerIamDisabled, customAudiences } = options.service();
    if (invokerIamDisabled) return { admit: true };
    // The service's URL (with or without the trailing slash Google's Go sample shows), the audience
    // of the gcloud CLI's own tokens, and the manifest's custom audiences.
    const audiences = [origin, `${origin}/`, GCLOUD_CLIENT_ID, ...customAudiences];
    let policies: Policy[];
    try {
      policies = options.policies();
    } catch (err) {
      return { admit: false, status: 500, rule: 'policy', reason: (err as Error).message };
    }
    // allUsers holding an invoker role on the service (the first policy; the project's follows): public, no check.
    const [own] = policies;
    if (own !== undefined && isPublic(own)) return { admit: true };
    // Cloud Run checks X-Serverless-Authorization when present, else Authorization.
    const header: TokenHeader =
      req.headers['x-serverless-authorization'] !== undefined
        ? 'x-serverless-authorization'
        : 'authorization';
    const name = header === 'authorization' ? 'Authorization' : 'X-Serverless-Authorization';
    const unusable = (reason: string): Verdict => ({
      admit: false,
      status: 401,
      rule: 'token-invalid',
      reason,
    });
    // Counted before anything else: Node keeps only the first Authorization, which may be empty.
    const copies = copiesOf(req, header);
    if (copies > 1) return unusable(`the request has ${copies} ${name} headers: send one`);
    const value = String(req.headers[header] ?? '');
    if (value === '') {
      return {
        admit: false,
        status: 403,
        rule: 'token-missing',
        reason: `the request has no token: ${service.name} is private (the invoker IAM check is on) and wants a Google-signed ID token in Authorization: Bearer`,
      };
    }
    if (value.split(/[\s,]/).filter((part) => part.split('.').length === 3).length > 1) {
      return unusable(`the ${name} header holds several JWTs: send one ID token`);
    }
    // Node has stripped the blanks around the value.
    const token = /^bearer[ \t]+(\S+)$/i.exec(value)?.[1];
    if (token === undefined) return unusable(`the ${name} header is not "Bearer <ID token>"`);
    let claims: JWTPayload;
    try {
      claims = await verifyIdToken(token, keys, {
        audiences,
        issuers: GOOGLE_ISSUERS,
        clockToleranceS: 0,
      });
    } catch (err) {
      return unusable(whyInvalid(err, token, audiences, name));
    }
    if (typeof claims.email !== 'string' || claims.email === '') {
      return unusable(
        `the ${name} token has no email claim: not an ID token of a service account or user`,
      );
    }
    // Google has sent email_verified both as a boolean and as the string "true".
    if (claims.email_verified !== true && claims.email_verified !== 'true') {
      return unusable(
        `the ${name} token's email is not verified (email_verified): IAM cannot take it for ${shown(claims.email)}`,
      );
    }
    if (!mayInvoke(policies, claims.email)) {
      const email = shown(claims.email);
      return {
        admit: false,
        status: 403,
        rule: 'not-invoker',
        reason:
          `${email} holds no roles/run.invoker on ${service.name}; grant it with: gcloud run services ` +
          `add-iam-policy-binding ${service.name} --member=${iamMember(email)} --role=roles/run.invoker ` +
          '(in a shell set up by eval "$(npm run -s local-env)"; or npm run local -- run services add-iam-policy-binding ...)',
      };
    }
    return { admit: true, checked: { header, token } };
  }

  async function serve(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    expectsContinue: boolean,
  ): Promise<void> {
    const route = routeOf(req);
    let verdict: Verdict = typeof route === 'string' ? await check(req) : route;
    // The client went while the check ran: nothing to answer, nothing to forward.
    if (req.socket.destroyed) return void res.destroy();
    if (verdict.admit && req.headers.upgrade !== undefined) {
      verdict = {
        admit: false,
        status: 501,
        rule: 'upgrade',
        reason: `the request asks to upgrade to ${shown(req.headers.upgrade)}: this local front does not proxy protocol upgrades such as WebSocket (Cloud Run does, after the IAM check)`,
      };
    }
    if (!verdict.admit) return refused(req, res, path, verdict);
    if (expectsContinue) res.writeContinue();
    // A socket still open has its peer's address.
    forward(req, res, route as string, verdict.checked, req.socket.remoteAddress!, path);
  }

  /** The path and query to ask the container for, or why the request target cannot be served. */
  function routeOf(req: IncomingMessage): string | Verdict {
    const hosts = copiesOf(req, 'host');
    const bad = (reason: string): Verdict => ({
      admit: false,
      status: 400,
      rule: 'bad-request',
      reason,
    });
    if (hosts > 1) return bad(`the request has ${hosts} Host headers`);
    const target = req.url!;
    // origin-form: a path, whatever it holds ("//host/x" too), for the service's own container.
    if (target.startsWith('/')) return target;
    // absolute-form (RFC 9112 §3.2.2), as a client sends through a proxy: only for this host.
    let url: URL;
    let host: URL;
    try {
      url = new URL(target);
      host = new URL(`http://${req.headers.host}`);
    } catch {
      return bad(`the request target ${shown(target)} is neither a path nor an absolute URL`);
    }
    if (!['http:', 'https:'].includes(url.protocol) || url.host !== host.host) {
      return bad(
        `the request target ${shown(target)} names another host than this service (${shown(host.host)})`,
      );
    }
    return `${url.pathname}${url.search}`;
  }

  function refused(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    verdict: Verdict & { admit: false },
  ): void {
    const { status, rule, reason } = verdict;
    logger.warn(
      { rule, status, method: req.method, path, reason },
      `${service.name} front refused ${req.method} ${path} with ${status}: ${reason}`,
    );
    refuse(res, status, path);
  }

  function forward(
    req: IncomingMessage,
    res: ServerResponse,
    target: string,
    checked: Checked | undefined,
    client: string,
    path: string,
  ): void {
    const headers = endToEnd(req.headers);
    // The container sees the checked token without its signature, in the header it came in.
    if (checked !== undefined) {
      headers[checked.header] =
        `Bearer ${checked.token.split('.').slice(0, 2).join('.')}.${SIGNATURE_REMOVED}`;
    }
    if (headers.traceparent === undefined && headers['x-cloud-trace-context'] === undefined) {
      const traceId = randomBytes(16).toString('hex');
      const spanId = randomBytes(8);
      headers.traceparent = `00-${traceId}-${spanId.toString('hex')}-00`;
      headers['x-cloud-trace-context'] = `${traceId}/${spanId.readBigUInt64BE()};o=0`;
    }
    const forwardedFor = headers['x-forwarded-for'];
    headers['x-forwarded-for'] = forwardedFor ? `${String(forwardedFor)}, ${client}` : client;
    headers['x-forwarded-proto'] = 'http';

    // Host and port are the container's, fixed at start: nothing in the request can name another.
    const upstream = httpRequest(
      { host: targetHost, port: targetPort, path: target, method: req.method, headers },
      (answer) => {
        answer.once('error', () => res.destroy());
        res.writeHead(answer.statusCode!, endToEnd(answer.headers));
        answer.pipe(res);
      },
    );
    // The request timeout (timeoutSeconds): the whole answer must come within it.
    const timer = setTimeout(() => {
      logger.warn(
        { rule: 'timeout', status: 504, method: req.method, path },
        `${service.name} front ended ${req.method} ${path} with 504: no full answer within timeoutSeconds ${service.timeoutSeconds}`,
      );
      if (res.headersSent) res.destroy();
      else res.writeHead(504, { 'content-type': 'text/plain' }).end('upstream request timeout');
      upstream.destroy();
    }, service.timeoutSeconds * 1000);
    timer.unref();
    let clientGone = false;
    upstream.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // The client went first and the front cut the container's request: nothing to answer or blame.
      if (clientGone) return;
      if (res.headersSent) return void res.destroy();
      logger.error(
        { rule: 'container-unreachable', status: 503, code: err.code },
        `${service.name} front could not reach its container at ${options.target} (${err.code ?? err.message})`,
      );
      res
        .writeHead(503, { 'content-type': 'text/html; charset=UTF-8' })
        .end(
          page(
            503,
            'Service Unavailable',
            'The service you requested is not available yet. Please try again in 30 seconds.',
          ),
        );
    });
    res.once('close', () => {
      clearTimeout(timer);
      if (res.writableEnded) return;
      clientGone = true;
      upstream.destroy();
    });
    req.pipe(upstream);
  }

  function onRequest(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    // Never the raw path in a log or a page: a token pasted into it is cut out, and it is cut short.
    const path = shown(req.url!);
    // Whatever goes wrong in answering one request, the front goes on serving the others.
    res.on('error', () => undefined);
    serve(req, res, path, expectsContinue).catch((err: unknown) => {
      logger.error(
        { err, method: req.method, path },
        `${service.name} front failed on ${req.method} ${path}`,
      );
      if (res.headersSent) res.destroy();
      else refuse(res, 500, path);
    });
  }

  const server = createServer(
    {
      headersTimeout: HEADERS_TIMEOUT_MS,
      // Node checks its timeouts this often (30 s by default): a slow client goes within seconds.
      connectionsCheckingInterval: 1000,
      // The whole request must arrive within the service's request timeout.
      requestTimeout: Math.max(service.timeoutSeconds * 1000, HEADERS_TIMEOUT_MS),
    },
    (req, res) => onRequest(req, res, false),
  );
  // Expect: 100-continue: the IAM check comes first, so a refused client never sends its body.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) =>
    onRequest(req, res, true),
  );
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => undefined);
    logger.warn(
      { rule: 'bad-request', status: 400, method: 'CONNECT', path: shown(req.url!) },
      `${service.name} front refused CONNECT ${shown(req.url!)} with 400: the front is not a forward proxy`,
    );
    const body = page(400, 'Bad Request', 'Your client has issued a malformed or illegal request.');
    // Closed outright once written: a CONNECT socket has left Node's parser and its timeouts, and
    // a client that never closes its side would otherwise hold it open for good.
    socket.end(
      `HTTP/1.1 400 Bad Request\r\ncontent-type: text/html; charset=UTF-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `connection: close\r\n\r\n${body}`,
      () => socket.destroy(),
    );
  });
  return server;
}

/** How many times the request carries a header (Node keeps only the first of some, such as Authorization). */
function copiesOf(req: IncomingMessage, name: string): number {
  return req.rawHeaders.filter((raw, i) => i % 2 === 0 && raw.toLowerCase() === name).length;
}

/** The headers without hop-by-hop ones, those the Connection header names included. */
function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase()),
  );
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers))
    if (!HOP_BY_HOP.has(name) && !named.has(name)) out[name] = value;
  return out;
}

/** Attacker-chosen text as a log line or a page may show it: JWT-shaped runs as [token], cut short. */
export function shown(text: string): string {
  const redacted = redactPath(text);
  return redacted.length > SHOWN_MAX ? `${redacted.slice(0, SHOWN_MAX)}…` : redacted;
}

/** What a developer should read about a token that failed the check; never the token itself. */
function whyInvalid(
  err: unknown,
  token: string,
  audiences: readonly string[],
  name: string,
): string {
  const claims = (() => {
    try {
      return decodeJwt(token);
    } catch {
      return undefined;
    }
  })();
  const where = `the ${name} token`;
  // Not three base64url parts of JSON, or a header jose cannot read: not a JWT at all.
  if (claims === undefined || err instanceof errors.JWSInvalid) {
    return (
      `${where} is not a JWT (an ID token is three base64url parts): perhaps an OAuth access token, which ` +
      'Cloud Run does not take; send an ID token (gcloud auth print-identity-token)'
    );
  }
  if (err instanceof TokenInvalidError)
    return `${where} fails Google's ID token rules: ${err.reason}`;
  if (err instanceof errors.JWTExpired) {
    if (err.claim === 'iat')
      return `${where} was issued more than a day ago (iat): Google's ID tokens live one hour`;
    return `${where} expired at ${new Date(Number(claims.exp) * 1000).toISOString()}; fetch a new one`;
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud' && err.reason === 'check_failed') {
      const custom = audiences.slice(3);
      return (
        `aud is ${shown(JSON.stringify(claims.aud))} but this service accepts ${audiences[0]} (its URL, with or without ` +
        `a trailing /), ${audiences[2]} (the gcloud CLI's tokens)` +
        (custom.length > 0
          ? ` and its custom audiences ${shown(custom.join(', '))}`
          : ' and no custom audience')
      );
    }
    if (err.claim === 'iss' && err.reason === 'check_failed') {
      return `iss is ${shown(JSON.stringify(claims.iss))}, not Google's (${GOOGLE_ISSUERS[0]})`;
    }
    return `${where} fails its ${err.claim} claim: ${shown(err.message)}`;
  }
  if (err instanceof errors.JWKSNoMatchingKey)
    return `${where} is signed with a key that is not one of Google's (kid unknown)`;
  if (err instanceof errors.JWSSignatureVerificationFailed)
    return `${where}'s signature does not verify with Google's keys`;
  if (err instanceof errors.JOSEAlgNotAllowed)
    return `${where} is not RS256, as Google's ID tokens are`;
  if (err instanceof errors.JWKSTimeout || !(err instanceof errors.JOSEError)) {
    return `Google's keys could not be fetched to check ${where}: ${shown((err as Error).message)}`;
  }
  // jose's own words can quote the token's header (an unknown crit name, say): shown, never whole.
  return `${where} does not verify: ${shown(err.message)}`;
}

/** Cloud Run's answers: HTML pages of the shape Google's front end sends. */
function refuse(res: ServerResponse, status: 400 | 401 | 403 | 500 | 501, path: string): void {
  const shownPath = escapeHtml(path);
  const html = { 'content-type': 'text/html; charset=UTF-8' };
  if (status === 403) {
    res.writeHead(403, html);
    res.end(
      page(
        403,
        'Forbidden',
        `Your client does not have permission to get URL <code>${shownPath}</code> from this server.`,
      ),
    );
  } else if (status === 401) {
    res.writeHead(401, {
      ...html,
      'www-authenticate':
        'Bearer error="invalid_token" error_description="The access token could not be verified"',
    });
    res.end(
      page(
        401,
        'Unauthorized',
        `Your client does not have permission to the requested URL <code>${shownPath}</code>.`,
      ),
    );
  } else if (status === 400) {
    res
      .writeHead(400, { ...html, connection: 'close' })
      .end(page(400, 'Bad Request', 'Your client has issued a malformed or illegal request.'));
  } else if (status === 501) {
    res
      .writeHead(501, html)
      .end(
        page(
          501,
          'Not Implemented',
          'The local Cloud Run front door does not proxy protocol upgrades (WebSocket).',
        ),
      );
  } else {
    res.writeHead(500, html).end(page(500, 'Server Error', 'The server encountered an error.'));
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
