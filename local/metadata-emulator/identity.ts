import { createHash } from 'node:crypto';
import type { JWTPayload } from 'jose';
import type { EmulatorConfig } from './config.js';

export const GOOGLE_ISSUER = 'https://accounts.google.com';
export const TOKEN_LIFETIME_S = 3600;
export const INSTANCE_NAME = 'local-instance';
export const ZONE = 'us-central1-1';
export const REGION = 'us-central1';

/** A stable 21-digit id for an email, shaped like a service account's unique id. */
export function numericIdFor(email: string): string {
  const digest = createHash('sha256').update(email.toLowerCase()).digest('hex');
  return `1${(BigInt(`0x${digest.slice(0, 24)}`) % 10n ** 20n).toString().padStart(20, '0')}`;
}

/** 16 digits, so it survives JSON as a number. */
export function instanceIdFor(config: EmulatorConfig): string {
  return numericIdFor(`${config.projectId}/${INSTANCE_NAME}`).slice(0, 16);
}

const startedAt = Math.floor(Date.now() / 1000);

export interface IdentityRequest {
  audience: string;
  format: 'standard' | 'full';
  licenses: boolean;
  /** Seconds since the epoch. */
  now: number;
}

/** The claims of a metadata-server ID token, in the order Google sends them. */
export function identityClaims(config: EmulatorConfig, request: IdentityRequest): JWTPayload {
  const sub = numericIdFor(config.serviceAccount);
  const claims: JWTPayload = {
    aud: request.audience,
    azp: sub,
    email: config.serviceAccount,
    email_verified: true,
    exp: request.now + TOKEN_LIFETIME_S,
  };
  if (request.format === 'full') {
    claims.google = {
      compute_engine: {
        instance_creation_timestamp: startedAt,
        instance_id: instanceIdFor(config),
        instance_name: INSTANCE_NAME,
        project_id: config.projectId,
        project_number: Number(config.projectNumber),
        zone: ZONE,
        ...(request.licenses ? { license_id: [] } : {}),
      },
    };
  }
  return { ...claims, iat: request.now, iss: GOOGLE_ISSUER, sub };
}
