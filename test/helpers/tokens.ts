import type { JWTPayload } from 'jose';
import type { RunningEmulator } from './servers.js';
import { nowS } from './servers.js';

/** Claims like the emulator's, signed with its key; override any to make a bad token. */
export function claimsFor(
  emulator: RunningEmulator,
  audience: string,
  overrides: JWTPayload = {},
): JWTPayload {
  const now = nowS();
  return {
    aud: audience,
    azp: '100000000000000000001',
    email: emulator.config.serviceAccount,
    email_verified: true,
    exp: now + 3600,
    iat: now,
    iss: 'https://accounts.google.com',
    sub: '100000000000000000001',
    ...overrides,
  };
}

export const b64url = (value: unknown): string =>
  Buffer.from(JSON.stringify(value)).toString('base64url');
