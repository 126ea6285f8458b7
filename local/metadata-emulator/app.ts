import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '../../services/shared/logger.js';
import { requestLog } from '../../services/shared/request-log.js';
import type { EmulatorConfig } from './config.js';
import { identityClaims } from './identity.js';
import { buildMetadataTree, isDir, lookup, renderJson, renderText } from './metadata-tree.js';
import type { SigningKey } from './signing-key.js';

export interface EmulatorDeps {
  config: EmulatorConfig;
  key: SigningKey;
  logger: Logger;
  /** Seconds since the epoch; tests move it. */
  now?: () => number;
}

/** What the emulator has served, for tests and the benchmark (also at GET /emulator/stats). */
export interface EmulatorStats {
  identityRequests: number;
  accessTokenRequests: number;
  rejectedRequests: number;
  /** wait_for_change requests held now. */
  heldRequests: number;
}

export interface MetadataEmulator {
  app: Express;
  stats: EmulatorStats;
  /** Answers every request held by wait_for_change now, and any later one at once: for a shutdown. */
  endWaits(): void;
}

const V1 = '/computeMetadata/v1';

/**
 * A stand-in for the GCE / Cloud Run metadata server that Google's own clients use unmodified:
 * the paths they read, the header rules of the real server, and RS256 ID tokens whose keys are
 * published like Google's at /oauth2/v3/certs (JWKS) and /oauth2/v1/certs (X.509 certificates).
 */
export function createMetadataEmulator(deps: EmulatorDeps): MetadataEmulator {
  const { config, key, logger } = deps;
  const now = deps.now ?? (() => Math.floor(Date.now() / 1000));
  const tree = buildMetadataTree(config);
  const stats: EmulatorStats = {
    identityRequests: 0,
    accessTokenRequests: 0,
    rejectedRequests: 0,
    heldRequests: 0,
  };
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  // Paths as the real server reads them: case counts, and a trailing slash names a directory.
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  app.use(requestLog(logger, () => undefined, 'debug'));
  // One rule for every path: repeated slashes count as one, as on the real server, where Go's
  // metadata client once sent `/computeMetadata/v1//instance/...`.
  // (The path of an origin-form target only: an absolute-form one, `http://host/path`, is left whole.)
  app.use((req, _res, next) => {
    const query = req.url.indexOf('?');
    const path = query === -1 ? req.url : req.url.slice(0, query);
    if (path.startsWith('/') && path.includes('//'))
      req.url = path.replace(/\/{2,}/g, '/') + (query === -1 ? '' : req.url.slice(query));
    next();
  });

  app.use((req, res, next) => {
    res.set({
      'Metadata-Flavor': 'Google',
      Server: 'Metadata Server for VM',
      'X-XSS-Protection': '0',
      'X-Frame-Options': 'SAMEORIGIN',
    });
    // A web page that rebinds its own DNS name to 127.0.0.1 reaches this port with its name in Host;
    // answering only the metadata server's own names keeps it from minting tokens.
    if (!isMetadataHost(req.headers.host)) {
      reject(
        res,
        403,
        'Request denied: the metadata emulator answers only requests addressed to a loopback address, localhost, ' +
          'metadata.google.internal or metadata (check the Host header).\n',
      );
      return;
    }
    if (
      req.path === '/oauth2/v3/certs' ||
      req.path === '/oauth2/v1/certs' ||
      req.path === '/emulator/stats'
    ) {
      next();
      return;
    }
    if (req.headers['x-forwarded-for'] !== undefined) {
      reject(
        res,
        403,
        'Request denied: the metadata server does not answer requests with X-Forwarded-For.\n',
      );
      return;
    }
    const flavored =
      req.headers['metadata-flavor'] === 'Google' ||
      req.headers['x-google-metadata-request'] === 'True';
    if (!flavored && req.path !== '/') {
      reject(res, 403, 'Missing required header "Metadata-Flavor": "Google"\n');
      return;
    }
    next();
  });

  const reject = (res: Response, status: number, body: string) => {
    stats.rejectedRequests += 1;
    answer(res.status(status), 'text/html; charset=UTF-8', body);
  };
  const text = (res: Response, body: string) => answer(res, 'application/text', body);
  const json = (res: Response, value: unknown) =>
    answer(res, 'application/json', JSON.stringify(value));

  app.get('/oauth2/v3/certs', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=300').json(key.jwks);
  });
  app.get('/oauth2/v1/certs', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=300').json(key.certificates);
  });
  app.get('/emulator/stats', (_req, res) => {
    res.json(stats);
  });

  app.get('/', (_req, res) => text(res, 'computeMetadata/\n'));
  app.get('/computeMetadata{/}', (_req, res) => text(res, 'v1/\n'));

  app.get(`${V1}/instance/service-accounts/:account/identity`, async (req, res) => {
    if (!knownAccount(req.params.account)) return reject(res, 404, notFoundBody);
    const audience = single(req.query.audience);
    if (!audience) return reject(res, 400, 'non-empty audience parameter required\n');
    const format = single(req.query.format) ?? 'standard';
    if (format !== 'standard' && format !== 'full') {
      return reject(res, 400, 'format must be one of: standard, full\n');
    }
    stats.identityRequests += 1;
    const licenses = (single(req.query.licenses) ?? 'FALSE').toUpperCase() === 'TRUE';
    const token = await key.sign(
      identityClaims(config, { audience, format, licenses, now: now() }),
    );
    logger.debug({ audience, format }, 'minted an identity token');
    text(res, token);
  });

  app.get(`${V1}/instance/service-accounts/:account/token`, (req, res) => {
    if (!knownAccount(req.params.account)) return reject(res, 404, notFoundBody);
    stats.accessTokenRequests += 1;
    // Opaque to a client, like Google's; the local Cloud Run Admin API checks it (signing-key.ts).
    const expiresIn = 3599;
    const email = config.serviceAccount;
    json(res, {
      access_token: key.accessTokens.mint(email, now() + expiresIn),
      expires_in: expiresIn,
      token_type: 'Bearer',
    });
  });

  app.get([V1, `${V1}/`, `${V1}/*path`], (req: Request, res) => {
    const segments = req.path
      .slice(V1.length)
      .split('/')
      .filter((s) => s !== '');
    const node = lookup(tree, segments);
    // A value is not a directory: with a trailing slash it is not found, as on the real server.
    if (node === undefined || (!isDir(node) && req.path.endsWith('/')))
      return reject(res, 404, notFoundBody);
    const recursive = single(req.query.recursive)?.toLowerCase() === 'true';
    const alt = single(req.query.alt) ?? (recursive && isDir(node) ? 'json' : 'text');
    const [type, body] =
      alt === 'json'
        ? [
            'application/json',
            JSON.stringify(
              recursive || !isDir(node)
                ? renderJson(node)
                : Object.keys(node).map((name) => (isDir(node[name]!) ? `${name}/` : name)),
            ),
          ]
        : ['application/text', renderText(node)];
    const send = () => answer(res, type, body);
    if (single(req.query.wait_for_change)?.toLowerCase() !== 'true') return send();
    if (isDir(node) && !recursive)
      return reject(res, 400, 'wait_for_change on a directory needs recursive=true\n');
    const timeout = single(req.query.timeout_sec) ?? String(MAX_WAIT_S);
    if (!/^\d+$/.test(timeout))
      return reject(res, 400, 'timeout_sec must be a whole number of seconds\n');
    // Shutting down: nothing is held any more.
    if (stopping) return send();
    // The values never change while the emulator runs, so a wait ends at its timeout, or at once
    // when the client's last_etag is not the value's (it has missed a change).
    const lastEtag = single(req.query.last_etag);
    if (lastEtag !== undefined && lastEtag !== etag(body)) return send();
    // Ended once: by its timeout or a shutdown (which answer it), or by the client leaving.
    const forget = () => {
      clearTimeout(timer);
      waits.delete(end);
      stats.heldRequests = waits.size;
    };
    const end = () => {
      forget();
      send();
    };
    const timer = setTimeout(end, Math.min(Number(timeout), MAX_WAIT_S) * 1000);
    waits.add(end);
    stats.heldRequests = waits.size;
    res.locals.held = true;
    res.once('close', forget);
  });

  app.use((_req, res) => reject(res, 404, notFoundBody));
  // What Express itself refuses (a path with a malformed %-escape): the same kind of answer, no stack.
  app.use((err: { status?: unknown }, _req: Request, res: Response, _next: NextFunction) => {
    const status =
      typeof err.status === 'number' && err.status >= 400 && err.status < 500 ? err.status : 500;
    reject(res, status, status === 500 ? 'Internal Server Error\n' : 'Bad Request\n');
  });

  function knownAccount(account: string): boolean {
    return account === 'default' || account === config.serviceAccount;
  }

  const waits = new Set<() => void>();
  let stopping = false;
  const endWaits = () => {
    stopping = true;
    [...waits].forEach((end) => end());
  };
  return { app, stats, endWaits };
}

/** The longest a wait_for_change request is held (a client's own timeout_sec may be shorter). */
export const MAX_WAIT_S = 60;

/**
 * Every answer with its exact Content-Type (no charset: Debian's python3-google-auth 1.5.1
 * decodes JSON only on `application/json`) and an ETag of its body, as the real server sends.
 */
function answer(res: Response, type: string, body: string): void {
  // setHeader, not Express's set, which would add a charset to a type it knows; end, not send,
  // which would answer a matching If-None-Match with a bodiless 304.
  const bytes = Buffer.from(body, 'utf8');
  res.setHeader('Content-Type', type);
  res.setHeader('ETag', etag(body));
  res.setHeader('Content-Length', bytes.length);
  res.end(bytes);
}

function etag(body: string): string {
  return createHash('sha256').update(body).digest('hex').slice(0, 16);
}

const notFoundBody =
  '<!DOCTYPE html>\n<title>404 Not Found</title>\n<p>The requested URL was not found on this server.</p>\n';

const METADATA_NAMES = new Set(['localhost', 'metadata.google.internal', 'metadata']);

/** Whether a Host header names the metadata server: a loopback address or one of its names, any port. */
export function isMetadataHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  const match = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+))(?::\d{1,5})?$/i.exec(host);
  if (match === null) return false;
  if (match[1] !== undefined) {
    const ipv6 = match[1].toLowerCase();
    return ipv6 === '::1' || (ipv6.startsWith('::ffff:') && isLoopbackV4(ipv6.slice(7)));
  }
  const name = match[2]!.toLowerCase();
  return METADATA_NAMES.has(name) || isLoopbackV4(name);
}

function isLoopbackV4(address: string): boolean {
  return isIPv4(address) && address.startsWith('127.');
}

function single(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  return undefined;
}
