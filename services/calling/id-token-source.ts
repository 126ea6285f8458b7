import type { Logger } from '../shared/logger.js';
import type { CheckedCredentials } from './credentials.js';
import { createCachingIdTokenSource, type IdTokenSource } from './id-token-cache.js';
import {
  createGoogleAuthIdTokenFetcher,
  createMetadataIdTokenFetcher,
} from './id-token-fetchers.js';

/** metadata: Cloud Run's metadata server or the emulator; google-auth: a key or impersonation, through google-auth-library. */
export type TokenOrigin =
  { kind: 'metadata'; host: string } | ({ kind: 'google-auth' } & CheckedCredentials);

export function createIdTokenSource(origin: TokenOrigin, logger: Logger): IdTokenSource {
  const fetcher =
    origin.kind === 'metadata'
      ? createMetadataIdTokenFetcher(origin.host)
      : createGoogleAuthIdTokenFetcher(async () => {
          // Loaded on first use only: it adds ~0.1 s to a cold start that the metadata path never needs.
          const { GoogleAuth } = await import('google-auth-library');
          // What was checked at start, not the file again.
          return new GoogleAuth({ credentials: origin.json });
        });
  const hint =
    origin.kind === 'metadata'
      ? 'On Cloud Run the metadata server is always there; off Google Cloud set GCE_METADATA_HOST to the emulator ' +
        '(npm start runs one at 127.0.0.1:8082), or GOOGLE_APPLICATION_CREDENTIALS to impersonated credentials or a key file'
      : origin.credentials.type === 'service_account'
        ? `Check the service-account key in GOOGLE_APPLICATION_CREDENTIALS (${origin.credentials.file})`
        : `Check the impersonated credentials in GOOGLE_APPLICATION_CREDENTIALS (${origin.credentials.file}): ` +
          `the account that made them needs roles/iam.serviceAccountTokenCreator on ${origin.credentials.account}`;
  return createCachingIdTokenSource(fetcher, {
    hint,
    onBackgroundRefreshError: (audience, error) =>
      logger.warn(
        { audience, cause: error.message },
        'background ID token refresh failed; the cached token is still valid',
      ),
  });
}
