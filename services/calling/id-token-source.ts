import { GoogleAuth, type IdTokenClient } from 'google-auth-library';
import { IdTokenUnavailableError } from '../shared/errors.js';

/** Where calling gets the ID tokens it sends. One method, so tests can pass a fake. */
export interface IdTokenSource {
  /** Resolves with a token for the audience, or rejects with IdTokenUnavailableError. */
  getIdToken(audience: string): Promise<string>;
}

/**
 * ID tokens through google-auth-library: from the metadata server on Cloud Run (or the emulator
 * named by GCE_METADATA_HOST), or from a service-account key off Google Cloud. The library's
 * IdTokenClient caches each token until shortly before it expires.
 */
export function createGoogleIdTokenSource(auth: GoogleAuth = new GoogleAuth()): IdTokenSource {
  const clients = new Map<string, Promise<IdTokenClient>>();
  const clientFor = (audience: string): Promise<IdTokenClient> => {
    let client = clients.get(audience);
    if (client === undefined) {
      client = auth.getIdTokenClient(audience);
      clients.set(audience, client);
      // A failed lookup (no credentials yet) must not stick: try afresh next time.
      client.catch(() => clients.delete(audience));
    }
    return client;
  };
  return {
    async getIdToken(audience) {
      try {
        const headers = await (await clientFor(audience)).getRequestHeaders();
        const authorization = headers.get('authorization') ?? '';
        if (!authorization.startsWith('Bearer ')) throw new Error('no bearer token in the auth headers');
        return authorization.slice('Bearer '.length);
      } catch (err) {
        throw new IdTokenUnavailableError(audience, { cause: err });
      }
    },
  };
}
