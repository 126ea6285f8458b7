import type { RequestHandler } from 'express';
import { authenticate } from './authenticate.js';
import type { ReceivingConfig } from './config.js';
import { createPlatformTokenVerifier } from './platform-token-verifier.js';
import { createJwksTokenVerifier, type JwksVerifierOptions } from './token-verifier.js';

/** Where platform mode looks for the token: Cloud Run checks X-Serverless-Authorization first. */
export const PLATFORM_TOKEN_HEADERS = ['x-serverless-authorization', 'authorization'] as const;

/**
 * The middleware TOKEN_CHECK asks for: verify (every token checked here), platform (tokens Cloud
 * Run checked and unsigned are trusted, signed ones verified), none (null: Cloud Run IAM alone).
 */
export function createTokenCheck(
  config: Pick<ReceivingConfig, 'tokenCheck' | 'audiences' | 'jwksUrl' | 'issuers' | 'invokers'>,
  verifierOptions: Partial<JwksVerifierOptions> = {},
): RequestHandler | null {
  if (config.tokenCheck === 'none') return null;
  const signedTokens =
    config.audiences.length > 0
      ? createJwksTokenVerifier({ jwksUrl: config.jwksUrl, audiences: config.audiences, issuers: config.issuers, ...verifierOptions })
      : null;
  if (config.tokenCheck === 'verify') return authenticate(signedTokens!, config.invokers);
  return authenticate(createPlatformTokenVerifier({ issuers: config.issuers, signedTokens }), config.invokers, PLATFORM_TOKEN_HEADERS);
}
