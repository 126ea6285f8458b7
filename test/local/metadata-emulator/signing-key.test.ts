import { generateKeyPairSync } from 'node:crypto';
import { decodeProtectedHeader, importJWK, jwtVerify } from 'jose';
import { createSigningKey, loadSigningKey } from '../../../local/metadata-emulator/signing-key.js';

describe('the emulator signing key', () => {
  const pem = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

  it('one key file gives every emulator the same key set: the same kid, JWKS and signatures that verify', async () => {
    const file = pem();
    const [a, b] = await Promise.all([loadSigningKey(file), loadSigningKey(file)]);
    expect(a.kid).toMatch(/^[\da-f]{40}$/);
    expect(b.kid).toBe(a.kid);
    expect(b.jwks).toEqual(a.jwks);
    expect(Object.keys(a.pems)).toEqual([a.kid]);
    const token = await a.sign({ sub: 'x', aud: 'y' });
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', kid: a.kid, typ: 'JWT' });
    const { payload } = await jwtVerify(token, await importJWK(b.jwks.keys[0]!, 'RS256'));
    expect(payload).toEqual({ sub: 'x', aud: 'y' });
    // A fresh key per emulator otherwise.
    expect((await createSigningKey()).kid).not.toBe(a.kid);
    expect((await loadSigningKey(pem())).kid).not.toBe(a.kid);
  });

  it('refuses what is not an RSA private key', async () => {
    await expect(loadSigningKey('not a key')).rejects.toThrow('not a PEM private key');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    await expect(loadSigningKey(ec)).rejects.toThrow('an RSA key is needed for RS256, not ec');
  });
});
