import { redactPath } from '../../services/shared/redact-path.js';

const JWT = 'eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWJ5dGVz';

describe('redactPath', () => {
  it.each([
    [`/${JWT}`, '/[token]'],
    [`/a/${JWT}/b`, '/a/[token]/b'],
    [`/${JWT.replaceAll('.', '%2E')}`, '/[token]'],
    [`/${JWT.replaceAll('.', '%2e')}`, '/[token]'],
    ['/eyJhbGciOiJub25lIn0.e30.', '/[token]'],
    ['/eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.SIGNATURE_REMOVED_BY_GOOGLE', '/[token]'],
    [`/x/${JWT}/y/${JWT}`, '/x/[token]/y/[token]'],
    [`/Bearer%20${JWT}`, '/Bearer%20[token]'],
    [JWT, '[token]'],
    [`/a.b.${JWT}`, '/a.b.[token]'],
    [`?t=${JWT}&u=1`, '?t=[token]&u=1'],
    ['/x?access_token=ya29.a0AfH6SMBx-y_z.more&u=1', '/x?access_token=[token]&u=1'],
    [`/ya29.emulator-${JWT.split('.')[1]!}.${'A'.repeat(43)}`, '/[token]'],
    ['/Bearer%20ya29.abc', '/Bearer%20[token]'],
    ['/ya29%2Eabc.def', '/[token]'],
    ['/ya29%2eabc%2Ddef?x=1', '/[token]?x=1'],
    ['/tokenya29.abc', '/token[token]'],
    ['/_ya29.abc/next', '/_[token]/next'],
  ])('replaces the token in %s', (path, expected) => {
    expect(redactPath(path)).toBe(expected);
  });

  it.each([
    '/',
    '/health',
    '/static/app.min.js',
    '/v1.2.3',
    '/computeMetadata/v1/instance/service-accounts/default/identity',
    'cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com',
    'https://receiving-123456789012.us-central1.run.app',
    '/eyJhbGciOiJSUzI1NiJ9.a.b',
    '/eyJhbGciO.ab.c',
    '/ya29',
    '/ya29.',
    '/ya29x.abc',
  ])('leaves %s as it is', (path) => {
    expect(redactPath(path)).toBe(path);
  });
});
