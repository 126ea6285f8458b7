import http from 'node:http';
import https from 'node:https';
import fetch, { FetchError } from 'node-fetch';
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

/** node-fetch 2 over keep-alive agents (measured fastest in STACK.md); each call is time-bounded. */
export function createUpstreamClient(options: { timeoutMs: number }): UpstreamClient {
  const httpAgent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  const httpsAgent = new https.Agent({ keepAlive: true, scheduling: 'lifo' });
  return {
    async get(url, headers) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), options.timeoutMs);
      try {
        const response = await fetch(url.href, {
          headers,
          agent: (u) => (u.protocol === 'https:' ? httpsAgent : httpAgent),
          redirect: 'manual',
          size: MAX_BODY_BYTES,
          signal: controller.signal,
        });
        const challenge = response.headers.get('www-authenticate');
        return { status: response.status, body: await response.text(), ...(challenge ? { challenge } : {}) };
      } catch (err) {
        if (controller.signal.aborted) {
          throw new UpstreamTimeoutError(url.href, options.timeoutMs, { cause: err });
        }
        if (err instanceof FetchError || err instanceof Error) {
          throw new UpstreamUnreachableError(url.href, { cause: err });
        }
        throw err;
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
