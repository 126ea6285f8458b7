import { CLOUD_RUN_METADATA_HOST, EnvReader, type CommonConfig, type Env } from '../shared/env.js';
import { readCredentials } from './credentials.js';
import type { TokenOrigin } from './id-token-source.js';

const AUTH_MODES = ['id-token', 'none'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

const TOKEN_HEADERS = ['authorization', 'x-serverless-authorization', 'both'] as const;
export type TokenHeader = (typeof TOKEN_HEADERS)[number];

export interface CallingConfig extends CommonConfig {
  /** The receiving service's URL, called on every request. */
  url: URL;
  /** The audience ID tokens are minted for: the receiving service's origin unless set. */
  audience: string;
  /** id-token: send an ID token; none: send nothing (the tutorial's first calling service). */
  auth: AuthMode;
  /**
   * Where the token goes. x-serverless-authorization: Cloud Run IAM reads it there and passes
   * Authorization through untouched; both: the same token in both, so receiving can verify it too.
   */
  tokenHeader: TokenHeader;
  upstreamTimeoutMs: number;
  /** Where ID tokens come from: the credentials GOOGLE_APPLICATION_CREDENTIALS names when set, else the metadata server. */
  tokenOrigin: TokenOrigin;
}

export function loadCallingConfig(env: Env): CallingConfig {
  const read = new EnvReader('calling', env);
  const rawUrl = read.required(
    'URL',
    "the receiving service's URL, e.g. https://receiving-abc123-uc.a.run.app (locally http://127.0.0.1:8081)",
  );
  const url = rawUrl === '' ? undefined : read.httpUrl('URL', rawUrl);
  const audience = read.raw('AUDIENCE') ?? url?.origin ?? '';
  const common = read.common();
  return read.done({
    ...common,
    url: url ?? new URL('http://invalid'),
    audience,
    auth: read.oneOf('AUTH', AUTH_MODES, 'id-token'),
    tokenHeader: read.oneOf('TOKEN_HEADER', TOKEN_HEADERS, 'authorization'),
    upstreamTimeoutMs: read.integer('UPSTREAM_TIMEOUT_MS', 10_000, 1, 600_000),
    tokenOrigin: tokenOriginFrom(read, common.metadataHost ?? CLOUD_RUN_METADATA_HOST),
  });
}

function tokenOriginFrom(read: EnvReader, metadataHost: string): TokenOrigin {
  const file = read.raw('GOOGLE_APPLICATION_CREDENTIALS');
  if (file === undefined) return { kind: 'metadata', host: metadataHost };
  try {
    return { kind: 'google-auth', ...readCredentials(file) };
  } catch (err) {
    read.problem(`GOOGLE_APPLICATION_CREDENTIALS: ${(err as Error).message}`);
    return { kind: 'metadata', host: '' };
  }
}
