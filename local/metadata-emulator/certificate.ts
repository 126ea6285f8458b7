import { createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';

/**
 * A self-signed X.509 certificate (PEM) for an RSA key, as https://www.googleapis.com/oauth2/v1/certs
 * publishes one per key id: Java's GooglePublicKeysManager parses certificates and nothing else.
 * One fixed structure (RFC 5280: version 3, sha256WithRSAEncryption, a common name, a validity), so a
 * few lines of DER rather than a PKI library; the X.509 parsers of Node, OpenSSL and Java read it in
 * the tests.
 */
export function selfSignedCertificate(
  privateKey: KeyObject,
  commonName: string,
  notBefore: Date,
  notAfter: Date,
): string {
  const algorithm = sequence(SHA256_WITH_RSA, NULL);
  const name = sequence(
    der(SET, sequence(COMMON_NAME, der(UTF8_STRING, Buffer.from(commonName, 'utf8')))),
  );
  const serial = randomBytes(8);
  // A positive INTEGER in its shortest form: high bit clear, first byte not zero.
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  const tbs = sequence(
    der(0xa0, der(INTEGER, Buffer.from([2]))), // [0] EXPLICIT version: v3
    der(INTEGER, serial),
    algorithm,
    name,
    sequence(utcTime(notBefore), utcTime(notAfter)),
    name,
    createPublicKey(privateKey).export({ type: 'spki', format: 'der' }),
  );
  const signature = sign('sha256', tbs, privateKey);
  const certificate = sequence(
    tbs,
    algorithm,
    der(BIT_STRING, Buffer.concat([Buffer.from([0]), signature])),
  );
  const lines = certificate.toString('base64').match(/.{1,64}/g)!;
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

const INTEGER = 0x02;
const BIT_STRING = 0x03;
const UTF8_STRING = 0x0c;
const UTC_TIME = 0x17;
const SET = 0x31;
// 1.2.840.113549.1.1.11 and 2.5.4.3, DER-encoded with their tags; NULL parameters.
const SHA256_WITH_RSA = Buffer.from('06092a864886f70d01010b', 'hex');
const COMMON_NAME = Buffer.from('0603550403', 'hex');
const NULL = Buffer.from('0500', 'hex');

function der(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  if (n > 0xffff) throw new RangeError('DER value too long');
  return Buffer.concat([Buffer.from([tag, ...length]), body]);
}

function sequence(...parts: Buffer[]): Buffer {
  return der(0x30, ...parts);
}

/** YYMMDDHHMMSSZ, which RFC 5280 requires for dates through 2049. */
function utcTime(date: Date): Buffer {
  if (date.getUTCFullYear() < 1950 || date.getUTCFullYear() > 2049)
    throw new RangeError('UTCTime covers 1950-2049 only');
  const text = date.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  return der(UTC_TIME, Buffer.from(text, 'ascii'));
}
