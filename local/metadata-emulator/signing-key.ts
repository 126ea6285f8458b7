import { createHash, createPrivateKey, createPublicKey, KeyObject } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose';

/** The emulator's RSA key: signs tokens and publishes its public half the way Google does. */
export interface SigningKey {
  kid: string;
  sign(claims: JWTPayload): Promise<string>;
  /** As https://www.googleapis.com/oauth2/v3/certs. */
  jwks: { keys: JWK[] };
  /** As https://www.googleapis.com/oauth2/v1/certs: kid → PEM (a public key; Google sends certificates). */
  pems: Record<string, string>;
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
  if (key.asymmetricKeyType !== 'rsa') throw new Error(`an RSA key is needed for RS256, not ${key.asymmetricKeyType ?? 'a secret key'}`);
  return signingKeyFrom(key);
}

async function signingKeyFrom(privateKey: KeyObject): Promise<SigningKey> {
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  // Google's key ids are 40 hex characters.
  const kid = createHash('sha1').update(spki).digest('hex');
  const jwk = await exportJWK(createPublicKey(privateKey));
  return {
    kid,
    sign: (claims) => new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(privateKey),
    jwks: { keys: [{ kty: jwk.kty!, alg: 'RS256', use: 'sig', kid, n: jwk.n!, e: jwk.e! }] },
    pems: { [kid]: spki },
  };
}
