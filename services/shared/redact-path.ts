/**
 * A token pasted into a URL path by mistake must not reach a log line or an error body. A JWT: three
 * base64url runs joined by dots (encoded or not), the first one a JOSE header (JSON, so "ey..."
 * once encoded) long enough to be one, so that /app.min.js, /v1.2.3, an email or a run.app host
 * stay as they are.
 *
 * Linear in the input, whatever it holds: a match starts only where a run of base64url characters
 * starts (or right after a %XX escape, as in "Bearer%20eyJ..."), and that first run is taken whole
 * (the lookahead and back-reference make it atomic). Without both, a 16 KB run of letters took the
 * regex engine over a second. A token glued to a word before it ("x_eyJ...") is not matched.
 */
const JWT_SHAPED =
  /(?<=^|[^\w-]|%[\da-f]{2})ey(?=([\w-]{8,}))\1(?:\.|%2e)[\w-]{2,}(?:\.|%2e)[\w-]*/gi;
/**
 * An OAuth access token of Google's (or of the metadata emulator): "ya29." and all that follows of
 * base64url, dots and %XX escapes, wherever it starts ("ya29." glued to a word is still a token).
 */
const ACCESS_TOKEN = /ya29(?:\.|%2e)(?:[\w.-]|%[\da-f]{2})+/gi;

/** The path (or any text) with every JWT-shaped run and access token replaced by `[token]`. */
export function redactPath(path: string): string {
  return path.replace(JWT_SHAPED, '[token]').replace(ACCESS_TOKEN, '[token]');
}
