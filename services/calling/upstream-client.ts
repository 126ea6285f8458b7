import http from 'node:http';
import https from 'node:https';
import { UpstreamTimeoutError, UpstreamUnreachableError } from '../shared/errors.js';
import { httpGet, type HttpFailure } from '../shared/http.js';

interface UpstreamResponse {
  status: number;
  body: string;
  /** WWW-Authenticate, when receiving sent one. */
  challenge?: string;
}

/** Resolves with whatever status came back; rejects only when no whole answer arrived in time. */
type UpstreamClient = (headers: Record<string, string>) => Promise<UpstreamResponse>;

const MAX_BODY_BYTES = 1024 * 1024;

/**
 * GETs the receiving service's URL over one keep-alive agent, each call bounded by timeoutMs.
 * Certificates to trust besides Node's go in NODE_EXTRA_CA_CERTS.
 */
export function createUpstreamClient(url: URL, timeoutMs: number): UpstreamClient {
  // Node's agents hand out the most recently used socket first (scheduling 'lifo' is the default).
  const agent =
    url.protocol === 'https:'
      ? new https.Agent({ keepAlive: true })
      : new http.Agent({ keepAlive: true });
  return async (headers) => {
    try {
      const answer = await httpGet(url, { agent, headers, timeoutMs, maxBytes: MAX_BODY_BYTES });
      const challenge = answer.headers['www-authenticate'];
      return {
        status: answer.status,
        body: answer.body,
        ...(challenge === undefined ? {} : { challenge }),
      };
    } catch (err) {
      const failure = err as HttpFailure;
      if (failure.kind === 'timeout')
        throw new UpstreamTimeoutError(url.href, timeoutMs, { cause: failure });
      throw new UpstreamUnreachableError(url.href, failure.message, { cause: failure });
    }
  };
}
