import { generateKeyPairSync } from 'node:crypto';
import { decodeProtectedHeader, importJWK, jwtVerify } from 'jose';
import { createSigningKey, loadSigningKey } from '../../../local/metadata-emulator/signing-key.js';

describe('the emulator signing key', () => {
  const pem = () =>
    generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();

  it('one key file gives every emulator the same key set: the same kid, JWKS and signatures that verify', async () => {
    const file = pem();
    const [a, b] = await Promise.all([loadSigningKey(file), loadSigningKey(file)]);
    expect(a.kid).toMatch(/^[\da-f]{40}$/);
    expect(b.kid).toBe(a.kid);
    expect(b.jwks).toEqual(a.jwks);
    expect(Object.keys(a.certificates)).toEqual([a.kid]);
    const token = await a.sign({ sub: 'x', aud: 'y' });
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', kid: a.kid, typ: 'JWT' });
    const { payload } = await jwtVerify(token, await importJWK(b.jwks.keys[0]!, 'RS256'));
    expect(payload).toEqual({ sub: 'x', aud: 'y' });
    // A fresh key per emulator otherwise.
    expect((await createSigningKey()).kid).not.toBe(a.kid);
    expect((await loadSigningKey(pem())).kid).not.toBe(a.kid);
  });

  it('mints access tokens that only the same key verifies, for the account minted, until they expire', async () => {
    const file = pem();
    const [a, b, other] = await Promise.all([
      loadSigningKey(file),
      loadSigningKey(file),
      createSigningKey(),
    ]);
    const token = a.accessTokens.mint('dev@example.com', 2000);
    expect(token).toMatch(/^ya29\.emulator-[\w-]+\.[\w-]{43}$/);
    expect(a.accessTokens.mint('dev@example.com', 2000)).not.toBe(token); // each one fresh
    expect(b.accessTokens.verify(token, 1999)).toBe('dev@example.com');
    expect(b.accessTokens.verify(token, 2000)).toBeUndefined();
    expect(other.accessTokens.verify(token, 1999)).toBeUndefined();
    const [body, mac] = token.slice('ya29.emulator-'.length).split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...claims, email: 'evil@example.com' })).toString(
      'base64url',
    );
    expect(b.accessTokens.verify(`ya29.emulator-${forged}.${mac}`, 1999)).toBeUndefined();
    for (const bad of [
      '',
      'ya29.',
      `ya29.emulator-${body}`,
      `ya29.emulator-${body}.${mac}x`,
      `${token} `,
      ` ${token}`,
      `x${token}`,
      token.replace('ya29', 'ya30'),
    ]) {
      expect({ bad, email: b.accessTokens.verify(bad, 1999) }).toEqual({ bad, email: undefined });
    }
  });

  it('refuses what is not an RSA private key', async () => {
    await expect(loadSigningKey('not a key')).rejects.toThrow('not a PEM private key');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    await expect(loadSigningKey(ec)).rejects.toThrow('an RSA key is needed for RS256, not ec');
  });
});
