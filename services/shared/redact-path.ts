/**
 * A JWT pasted into a URL path by mistake must not reach a log line or an error body: three
 * base64url runs joined by dots (encoded or not), the header long enough to be a JOSE header, so
 * that paths like /app.min.js or /v1.2.3 stay as they are.
 */
const JWT_SHAPED = /[\w-]{10,}(?:\.|%2e)[\w-]{2,}(?:\.|%2e)[\w-]*/gi;

/** The path with every JWT-shaped run replaced by `[token]`. */
export function redactPath(path: string): string {
  return path.replace(JWT_SHAPED, '[token]');
}
