import { createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { selfSignedCertificate } from '../../../local/metadata-emulator/certificate.js';

describe('the self-signed certificate of /oauth2/v1/certs', () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const from = new Date('2026-01-01T00:00:00Z');
  const to = new Date('2027-01-01T00:00:00Z');

  it('is PEM as RFC 7468 writes it: 64 characters a line', () => {
    const pem = selfSignedCertificate(privateKey, 'metadata-emulator.local', from, to);
    const lines = pem.trimEnd().split('\n');
    expect([lines[0], lines.at(-1)]).toEqual([
      '-----BEGIN CERTIFICATE-----',
      '-----END CERTIFICATE-----',
    ]);
    const body = lines.slice(1, -1);
    expect(body.slice(0, -1).every((line) => line.length === 64)).toBe(true);
    expect(body.at(-1)!.length).toBeLessThanOrEqual(64);
  });

  it('is X.509 v3, sha256WithRSAEncryption with its NULL parameters, self-signed for the key, valid as asked', () => {
    const certificate = new X509Certificate(
      selfSignedCertificate(privateKey, 'metadata-emulator.local', from, to),
    );
    // AlgorithmIdentifier { 1.2.840.113549.1.1.11, NULL }, as RFC 4055 requires.
    expect(certificate.raw.includes(Buffer.from('300d06092a864886f70d01010b0500', 'hex'))).toBe(
      true,
    );
    expect(certificate.verify(createPublicKey(privateKey))).toBe(true);
    expect(certificate.publicKey.equals(createPublicKey(privateKey))).toBe(true);
    expect([certificate.subject, certificate.issuer]).toEqual([
      'CN=metadata-emulator.local',
      'CN=metadata-emulator.local',
    ]);
    expect([new Date(certificate.validFrom), new Date(certificate.validTo)]).toEqual([from, to]);
    expect(BigInt(`0x${certificate.serialNumber}`) > 0n).toBe(true);
  });

  it('encodes every length right, short and long forms alike (names of 0 to 300 characters)', () => {
    for (let length = 0; length <= 300; length += 1) {
      const name = 'x'.repeat(length);
      expect(new X509Certificate(selfSignedCertificate(privateKey, name, from, to)).subject).toBe(
        `CN=${name}`,
      );
    }
    // In their shortest form, as DER requires: 200 bytes take 0x81 0xc8, not 0x82 0x00 0xc8.
    const raw = new X509Certificate(selfSignedCertificate(privateKey, 'x'.repeat(200), from, to))
      .raw;
    expect(
      raw.includes(Buffer.concat([Buffer.from([0x0c, 0x81, 200]), Buffer.from('x'.repeat(200))])),
    ).toBe(true);
  });

  it('refuses what DER or UTCTime cannot hold here rather than writing it wrong', () => {
    expect(() => selfSignedCertificate(privateKey, 'x'.repeat(70_000), from, to)).toThrow(
      'DER value too long',
    );
    expect(() =>
      selfSignedCertificate(privateKey, 'x', from, new Date('2050-01-01T00:00:00Z')),
    ).toThrow('UTCTime covers 1950-2049 only');
    expect(() =>
      selfSignedCertificate(privateKey, 'x', new Date('1949-12-31T23:59:59Z'), to),
    ).toThrow('UTCTime covers 1950-2049 only');
    const edges = new X509Certificate(
      selfSignedCertificate(
        privateKey,
        'x',
        new Date('1950-01-01T00:00:00Z'),
        new Date('2049-12-31T23:59:59Z'),
      ),
    );
    expect([edges.validFrom, edges.validTo]).toEqual([
      'Jan  1 00:00:00 1950 GMT',
      'Dec 31 23:59:59 2049 GMT',
    ]);
  });
});
