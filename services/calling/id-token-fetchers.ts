import http from 'node:http';
import type { GoogleAuth } from 'google-auth-library';
import fetch from 'node-fetch';

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

/** Where the metadata server is: GCE_METADATA_IP, else GCE_METADATA_HOST, else Cloud Run's own. */
export function metadataHostFrom(env: Readonly<Record<string, string | undefined>>): string {
  return env.GCE_METADATA_IP?.trim() || env.GCE_METADATA_HOST?.trim() || '169.254.169.254';
}

/**
 * ID tokens straight from the metadata server (Cloud Run's, or the emulator's). Unlike
 * google-auth-library it encodes the audience, and it keeps no "not on Google Cloud" verdict, so
 * a metadata server that comes back is used again at once.
 */
export function createMetadataIdTokenFetcher(host: string): FetchIdToken {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const where = `the metadata server at ${host}`;
  return async (audience, timeoutMs) => {
    const url =
      `http://${host}/computeMetadata/v1/instance/service-accounts/default/identity` +
      `?audience=${encodeURIComponent(audience)}&format=full`;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const response = await fetch(url, {
        headers: { 'Metadata-Flavor': 'Google' },
        agent,
        redirect: 'manual',
        size: MAX_TOKEN_ANSWER_BYTES,
        signal: controller.signal,
      });
      const body = await response.text();
      if (response.headers.get('metadata-flavor') !== 'Google') {
        throw new IdTokenFetchError(
          `${host} answered without Metadata-Flavor: Google, so it is not a metadata server (check GCE_METADATA_HOST)`,
          false,
        );
      }
      if (response.status !== 200) {
        const transient = response.status >= 500 || response.status === 429;
        throw new IdTokenFetchError(`${where} answered ${response.status}`, transient);
      }
      const token = body.trim();
      if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(token)) {
        throw new IdTokenFetchError(`${where} answered something that is not a token`, false);
      }
      return token;
    } catch (err) {
      if (err instanceof IdTokenFetchError) throw err;
      if (controller.signal.aborted) {
        throw new IdTokenFetchError(`${where} did not answer within ${timeoutMs} ms`, true, { cause: err, silent: where });
      }
      if ((err as { type?: string }).type === 'max-size') {
        // A token is about 1 KB: this is not a metadata server, and asking again will not change that.
        throw new IdTokenFetchError(`${where} answered more than ${MAX_TOKEN_ANSWER_BYTES / 1024} KB`, false, { cause: err });
      }
      const code = (err as { code?: string }).code;
      const how = code === 'ECONNREFUSED' ? 'refused the connection' : `could not be reached (${code ?? 'network error'})`;
      throw new IdTokenFetchError(`${where} ${how}`, true, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  };
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
      timer = setTimeout(
        () =>
          reject(
            new IdTokenFetchError(`google-auth-library did not get a token within ${timeoutMs} ms`, true, {
              silent: 'google-auth-library',
            }),
          ),
        timeoutMs,
      );
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
          return client.fetchIdToken(audience);
        })(),
        timeout,
      ]);
    } catch (err) {
      if (err instanceof IdTokenFetchError) throw err;
      const status = (err as { status?: number; response?: { status?: number } }).response?.status;
      const transient = status === undefined || status >= 500 || status === 429;
      const message = err instanceof Error ? err.message : String(err);
      throw new IdTokenFetchError(`google-auth-library failed: ${message}`, transient, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  };
}
