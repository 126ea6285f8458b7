import { createHash } from 'node:crypto';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose';

/** The emulator's RSA key: signs tokens and publishes its public half the way Google does. */
export interface SigningKey {
  kid: string;
  sign(claims: JWTPayload): Promise<string>;
  /** As https://www.googleapis.com/oauth2/v3/certs. */
  jwks: { keys: JWK[] };
  /** As https://www.googleapis.com/oauth2/v1/certs: kid → PEM (a public key; Google sends certificates). */
  pems: Record<string, string>;
}

export async function createSigningKey(): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const spki = await exportSPKI(publicKey);
  // Google's key ids are 40 hex characters.
  const kid = createHash('sha1').update(spki).digest('hex');
  const jwk = await exportJWK(publicKey);
  return {
    kid,
    sign: (claims) => new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(privateKey),
    jwks: { keys: [{ kty: jwk.kty!, alg: 'RS256', use: 'sig', kid, n: jwk.n!, e: jwk.e! }] },
    pems: { [kid]: spki },
  };
}
