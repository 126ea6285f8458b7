import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  KeyObject,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose';
import { selfSignedCertificate } from './certificate.js';

/** The emulator's RSA key: signs tokens and publishes its public half the way Google does. */
export interface SigningKey {
  kid: string;
  sign(claims: JWTPayload): Promise<string>;
  /** As https://www.googleapis.com/oauth2/v3/certs. */
  jwks: { keys: JWK[] };
  /** As https://www.googleapis.com/oauth2/v1/certs: kid → a self-signed X.509 certificate (PEM). */
  certificates: Record<string, string>;
  /** OAuth access tokens for an account, which whoever holds the key can check (see mintAccessToken). */
  accessTokens: AccessTokens;
}

export interface AccessTokens {
  /** An access token for `email`, good until `expiresAt` (seconds since the epoch). */
  mint(email: string, expiresAt: number): string;
  /** The email a token was minted for, or undefined if this key did not mint it or it has expired. */
  verify(token: string, now: number): string | undefined;
}

const ACCESS_TOKEN = /^ya29\.emulator-([\w-]+)\.([\w-]{43})$/;

/**
 * Access tokens look like Google's (`ya29.` and opaque to a client) and carry the account and the
 * expiry, MACed with a key derived from the signing key: the local Cloud Run Admin API, which
 * holds the same key, knows who a token was minted for without asking the emulator.
 */
function accessTokensFor(privateKey: KeyObject): AccessTokens {
  const der = privateKey.export({ type: 'pkcs8', format: 'der' });
  const macKey = createHash('sha256')
    .update('metadata-emulator access tokens\0')
    .update(der)
    .digest();
  const mac = (body: string) => createHmac('sha256', macKey).update(body).digest('base64url');
  return {
    mint(email, expiresAt) {
      const body = Buffer.from(
        JSON.stringify({ email, exp: expiresAt, n: randomBytes(8).toString('hex') }),
      ).toString('base64url');
      return `ya29.emulator-${body}.${mac(body)}`;
    },
    verify(token, now) {
      const match = ACCESS_TOKEN.exec(token);
      if (match === null) return undefined;
      const [, body, sent] = match as unknown as [string, string, string];
      if (!timingSafeEqual(Buffer.from(mac(body)), Buffer.from(sent))) return undefined;
      const { email, exp } = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as {
        email?: unknown;
        exp?: unknown;
      };
      return typeof email === 'string' && typeof exp === 'number' && now < exp ? email : undefined;
    },
  };
}

/** A fresh RSA key, for one emulator. */
export async function createSigningKey(): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  return signingKeyFrom(KeyObject.from(privateKey));
}

/**
 * The RSA key in a PKCS#8 PEM file (SIGNING_KEY_FILE), so that several emulators, one per local
 * service as each Cloud Run service has its own metadata server, sign with Google's one key set.
 */
export async function loadSigningKey(pem: string): Promise<SigningKey> {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new Error('not a PEM private key');
  }
  if (key.asymmetricKeyType !== 'rsa')
    throw new Error(
      `an RSA key is needed for RS256, not ${key.asymmetricKeyType ?? 'a secret key'}`,
    );
  return signingKeyFrom(key);
}

// Made at each start; valid from an hour before it (clock skew) for a year.
const HOUR_MS = 3600_000;
const YEAR_MS = 365 * 24 * HOUR_MS;
const CERTIFICATE_NAME = 'metadata-emulator.local';

async function signingKeyFrom(privateKey: KeyObject): Promise<SigningKey> {
  const now = Date.now();
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  // Google's key ids are 40 hex characters.
  const kid = createHash('sha1').update(spki).digest('hex');
  const jwk = await exportJWK(createPublicKey(privateKey));
  return {
    kid,
    sign: (claims) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(privateKey),
    jwks: { keys: [{ kty: jwk.kty!, alg: 'RS256', use: 'sig', kid, n: jwk.n!, e: jwk.e! }] },
    certificates: {
      [kid]: selfSignedCertificate(
        privateKey,
        CERTIFICATE_NAME,
        new Date(now - HOUR_MS),
        new Date(now + YEAR_MS),
      ),
    },
    accessTokens: accessTokensFor(privateKey),
  };
}
