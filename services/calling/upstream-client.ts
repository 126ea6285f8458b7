import http from 'node:http';
import https from 'node:https';
import fetch from 'node-fetch';
import { UpstreamTimeoutError, UpstreamUnreachableError } from '../shared/errors.js';

export interface UpstreamResponse {
  status: number;
  body: string;
  /** WWW-Authenticate, when receiving sent one. */
  challenge?: string;
}

export interface UpstreamClient {
  /** Resolves with whatever status came back; rejects only when no answer arrived in time. */
  get(url: URL, headers: Record<string, string>): Promise<UpstreamResponse>;
  close(): void;
}

const MAX_BODY_BYTES = 1024 * 1024;
const STALE_CONNECTION = new Set(['ECONNRESET', 'EPIPE']);

/**
 * node-fetch 2 over keep-alive agents (the fastest Node HTTP client measured here). Each call, retry included, is
 * bounded by timeoutMs.
 */
export function createUpstreamClient(options: {
  timeoutMs: number;
  /** Certificates to trust besides Node's (tests: a self-signed loopback one). Deployed, none: use NODE_EXTRA_CA_CERTS. */
  ca?: string | Buffer;
}): UpstreamClient {
  // Node's agents hand out the most recently used socket first (scheduling 'lifo' is the default).
  const httpAgent = new http.Agent({ keepAlive: true });
  const httpsAgent = new https.Agent({ keepAlive: true, ca: options.ca }); // ca undefined: Node's own list
  const agent = (u: URL) => (u.protocol === 'https:' ? httpsAgent : httpAgent);

  const attempt = async (url: URL, headers: Record<string, string>, signal: AbortSignal) => {
    const response = await fetch(url.href, { headers, agent, redirect: 'manual', size: MAX_BODY_BYTES, signal });
    const challenge = response.headers.get('www-authenticate');
    return { status: response.status, body: await response.text(), ...(challenge ? { challenge } : {}) };
  };

  return {
    async get(url, headers) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), options.timeoutMs);
      try {
        try {
          return await attempt(url, headers, controller.signal);
        } catch (err) {
          if (!isStaleConnection(err)) throw err;
          return await attempt(url, headers, controller.signal);
        }
      } catch (err) {
        if (controller.signal.aborted) {
          throw new UpstreamTimeoutError(url.href, options.timeoutMs, { cause: err });
        }
        throw new UpstreamUnreachableError(url.href, whyUnreachable(err), { cause: err });
      } finally {
        clearTimeout(timer);
      }
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

function codeOf(err: unknown): string {
  return (err as { code?: string }).code ?? '';
}

/** A kept-alive connection the server closed meanwhile: the one failure worth sending a GET (safe to repeat) again for. */
export function isStaleConnection(err: unknown): boolean {
  return STALE_CONNECTION.has(codeOf(err));
}

/** What the 502 says went wrong, in words; the error code when nothing better is known. */
export function whyUnreachable(err: unknown): string {
  const code = codeOf(err);
  switch (code) {
    case 'ECONNREFUSED':
      return 'the connection was refused';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'the connection was reset';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'its host name does not resolve';
    default:
      if ((err as { type?: string }).type === 'max-size') return 'its answer was too large';
      return code === '' ? 'a network error' : `a network error (${code})`;
  }
}
