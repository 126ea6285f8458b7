import { TokenInvalidError, TokenMissingError } from '../shared/errors.js';

const BEARER = /^bearer[ \t]+([^\s]+)[ \t]*$/i;

/** The token from an `Authorization: Bearer <token>` header (scheme case-insensitive). */
export function readBearerToken(header: string | undefined): string {
  if (header === undefined || header.trim() === '') throw new TokenMissingError();
  const match = BEARER.exec(header);
  if (match === null) {
    throw new TokenInvalidError('Authorization header is not of the form "Bearer <token>"');
  }
  return match[1]!;
}
