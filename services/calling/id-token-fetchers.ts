import http from 'node:http';
import type { GoogleAuth } from 'google-auth-library';
import { httpGet, type HttpAnswer, type HttpFailure } from '../shared/http.js';

/** One attempt to get a fresh ID token: resolves with it or rejects with IdTokenFetchError. */
export type FetchIdToken = (audience: string, timeoutMs: number) => Promise<string>;

export class IdTokenFetchError extends Error {
  /** Set when the attempt timed out: who did not answer, so the final error can name the whole wait. */
  readonly silent?: string;

  /** transient: worth retrying (no answer, 5xx, 429); otherwise retrying cannot help. */
  constructor(
    readonly reason: string,
    readonly transient: boolean,
    options?: { cause?: unknown; silent?: string },
  ) {
    super(reason, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'IdTokenFetchError';
    if (options?.silent !== undefined) this.silent = options.silent;
  }
}

const MAX_TOKEN_ANSWER_BYTES = 64 * 1024;

/**
 * ID tokens straight from the metadata server (Cloud Run's, or the emulator's). Unlike
 * google-auth-library it encodes the audience, and it keeps no "not on Google Cloud" verdict, so
 * a metadata server that comes back is used again at once.
 */
export function createMetadataIdTokenFetcher(host: string): FetchIdToken {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const where = `the metadata server at ${host}`;
  return async (audience, timeoutMs) => {
    const url = new URL(
      `http://${host}/computeMetadata/v1/instance/service-accounts/default/identity` +
        `?audience=${encodeURIComponent(audience)}&format=full`,
    );
    let answer: HttpAnswer;
    try {
      answer = await httpGet(url, {
        agent,
        headers: { 'Metadata-Flavor': 'Google' },
        timeoutMs,
        maxBytes: MAX_TOKEN_ANSWER_BYTES,
      });
    } catch (err) {
      const failure = err as HttpFailure;
      // A token is about 1 KB: an answer over the cap is not a metadata server's, and asking again will not change that.
      throw new IdTokenFetchError(`${where} ${failure.message}`, failure.kind !== 'too-large', {
        cause: failure,
        ...(failure.kind === 'timeout' ? { silent: where } : {}),
      });
    }
    if (answer.headers['metadata-flavor'] !== 'Google') {
      throw new IdTokenFetchError(
        `${host} answered without Metadata-Flavor: Google, so it is not a metadata server (check GCE_METADATA_HOST)`,
        false,
      );
    }
    if (answer.status !== 200) {
      const transient = answer.status >= 500 || answer.status === 429;
      throw new IdTokenFetchError(`${where} answered ${answer.status}`, transient);
    }
    return asToken(answer.body.trim(), `${where} answered`);
  };
}

/** token, if it has a JWT's shape: anything else would be sent on in a header (or refused there by Node). */
function asToken(token: unknown, who: string): string {
  if (typeof token === 'string' && /^[\w-]+\.[\w-]+\.[\w-]*$/.test(token)) return token;
  throw new IdTokenFetchError(`${who} something that is not a token`, false);
}

/**
 * ID tokens through google-auth-library's credentials (a service-account key named by
 * GOOGLE_APPLICATION_CREDENTIALS, or other ADC that can mint ID tokens), for use off Google Cloud.
 * makeAuth is called once, on the first token: google-auth-library is loaded only where it is used.
 */
export function createGoogleAuthIdTokenFetcher(makeAuth: () => Promise<GoogleAuth>): FetchIdToken {
  let auth: Promise<GoogleAuth> | undefined;
  return async (audience, timeoutMs) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      const message = `google-auth-library did not get a token within ${timeoutMs} ms`;
      const error = new IdTokenFetchError(message, true, { silent: 'google-auth-library' });
      timer = setTimeout(reject, timeoutMs, error);
    });
    try {
      return await Promise.race([
        (async () => {
          auth ??= makeAuth();
          const client = await (await auth).getClient();
          if (!('fetchIdToken' in client) || typeof client.fetchIdToken !== 'function') {
            throw new IdTokenFetchError(
              'these credentials cannot mint ID tokens (use a service-account key or impersonation, or run on Google Cloud)',
              false,
            );
          }
          return asToken(await client.fetchIdToken(audience), 'google-auth-library returned');
        })(),
        timeout,
      ]);
    } catch (err) {
      if (err instanceof IdTokenFetchError) throw err;
      // Whatever it rejected with: undefined, null and an object without a prototype too.
      const status = (err as { response?: { status?: number } } | null)?.response?.status;
      const transient = status === undefined || status >= 500 || status === 429;
      let message: string;
      try {
        message = err instanceof Error ? err.message : String(err);
      } catch {
        message = 'a rejection that cannot be turned into words'; // an object without a prototype
      }
      throw new IdTokenFetchError(`google-auth-library failed: ${message}`, transient, {
        cause: err,
      });
    } finally {
      clearTimeout(timer);
    }
  };
}
