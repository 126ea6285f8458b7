import { explainRefusal } from '../../services/calling/diagnosis.js';
import { b64url } from '../helpers/tokens.js';

const SA = 'cloudrun-authenticated-sa@my-project.iam.gserviceaccount.com';
const tokenFor = (claims: object) => `${b64url({ alg: 'RS256' })}.${b64url(claims)}.c2ln`;
const url = new URL('https://receiving-abc123defg-uc.a.run.app/');
const base = {
  url,
  audience: url.origin,
  auth: 'id-token' as const,
  token: tokenFor({ email: SA }),
};

describe('explainRefusal', () => {
  it('on 403 names the caller and gives the invoker binding that fixes it', () => {
    const error = explainRefusal({ ...base, upstreamStatus: 403 });
    expect(error.status).toBe(502);
    expect(error.code).toBe('UPSTREAM_FORBIDDEN');
    expect(error.message).toContain(
      `calling called as ${SA} with a token for audience ${url.origin}`,
    );
    expect(error.message).toContain(
      `gcloud run services add-iam-policy-binding receiving --member=serviceAccount:${SA} --role=roles/run.invoker`,
    );
    expect(error.message).toContain(
      '(locally, on npm start: the same command, in a shell set up by eval "$(npm run -s local-env)")',
    );
    expect(error.extensions).toMatchObject({
      upstreamStatus: 403,
      caller: SA,
      audience: url.origin,
    });
  });

  it('on 401 points at the audience and relays what receiving said', () => {
    const error = explainRefusal({
      ...base,
      audience: 'https://wrong.example',
      upstreamStatus: 401,
      challenge:
        'Bearer error="invalid_token", error_description="token audience is not this service"',
    });
    expect(error.code).toBe('UPSTREAM_UNAUTHORIZED');
    expect(error.message).toContain('Receiving said: token audience is not this service.');
    expect(error.message).toContain(
      `the audience must be the receiving service's URL origin (${url.origin})`,
    );
    expect(error.message).toContain('(it is https://wrong.example)');
  });

  it('never relays a piece of the token it sent, should receiving (or a proxy) echo it in its reason', () => {
    const token = `${b64url({ alg: 'RS256', kid: 'k' })}.${b64url({ email: SA, sub: '1' })}.${'s1GnAtUrE_'.repeat(8)}`;
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const padded = `_${signature.slice(10, 27)}_ -${payload.slice(2, 20)} x${header.slice(0, 8)}x`;
    for (const echoed of [
      signature.slice(0, 60),
      `${header}.${payload}`,
      `${signature.slice(3, 12)} and ${payload.slice(5, 14)}`,
      padded,
    ]) {
      const error = explainRefusal({
        ...base,
        token,
        upstreamStatus: 401,
        challenge: `Bearer error_description="bad token ${echoed}"`,
      });
      expect(error.message).toContain('Receiving said: bad token [redacted]');
      for (const part of [signature, header, payload]) {
        for (let i = 0; i + 8 <= part.length; i += 1)
          expect(error.message).not.toContain(part.slice(i, i + 8));
      }
    }
  });

  it.each([
    [401, 'UPSTREAM_UNAUTHORIZED'],
    [403, 'UPSTREAM_FORBIDDEN'],
  ])('on %i without a token says to turn AUTH on', (upstreamStatus, code) => {
    const error = explainRefusal({ ...base, auth: 'none', token: null, upstreamStatus });
    expect(error.code).toBe(code);
    expect(error.message).toBe(
      `the receiving service at ${url.href} answered ${upstreamStatus}: calling sent no token (AUTH=none), and a private service wants one.\n` +
        'Fix: set AUTH=id-token on calling so it sends an ID token.',
    );
    expect(error.extensions).toEqual({
      upstreamStatus,
      caller: null,
      audience: null,
      fix: 'set AUTH=id-token on calling so it sends an ID token',
    });
  });

  it('on 401 without a reason from receiving says so in full, with the fix as a member', () => {
    const error = explainRefusal({ ...base, upstreamStatus: 401 });
    const fix = `the audience must be the receiving service's URL origin (${url.origin}) or a custom audience set on it: set AUDIENCE on calling to match (it is ${url.origin})`;
    expect(error.message).toBe(
      `the receiving service at ${url.href} answered 401: it did not accept the token; calling called as ${SA} with a token for audience ${url.origin}.\nFix: ${fix}.`,
    );
    expect(error.extensions).toEqual({
      upstreamStatus: 401,
      caller: SA,
      audience: url.origin,
      fix,
    });
  });

  it.each([
    [{ sub: '1234' }, 'subject 1234'],
    [{ email: 42, sub: '1234' }, 'subject 1234'],
    [{}, 'an identity its token does not name'],
  ])(
    'names a caller whose token has no email by its subject, or says it cannot (%j)',
    (claims, caller) => {
      expect(
        explainRefusal({ ...base, token: tokenFor(claims), upstreamStatus: 403 }).extensions.caller,
      ).toBe(caller);
    },
  );

  it('names no caller for a token that is not a JWT', () => {
    expect(
      explainRefusal({ ...base, token: 'opaque', upstreamStatus: 403 }).extensions.caller,
    ).toBe('an identity its token does not name');
  });

  it("keeps receiving's reason printable, and leaves out long runs and runs the token shares, to the last 8 characters", () => {
    const token = `${tokenFor({ email: SA }).slice(0, -4)}zzzzzzzzzzzzzzzz`; // its signature: 16 z's
    const said = (reason: string) =>
      explainRefusal({
        ...base,
        token,
        upstreamStatus: 401,
        challenge: `Bearer error_description="${reason}"`,
      })
        .message.split('Receiving said: ')[1]!
        .split('.\n')[0];
    expect(said('bad\u0007 token\u00e9')).toBe('bad token');
    expect(said(`a ${'x'.repeat(19)} b`)).toBe(`a ${'x'.repeat(19)} b`);
    expect(said(`a ${'x'.repeat(20)} b`)).toBe('a [redacted] b');
    // A run whose only 8 characters in common with the token are its last 8.
    expect(said('a abcdezzzzzzzz b')).toBe('a [redacted] b');
    expect(said('a abcdezzzzzzzy b')).toBe('a abcdezzzzzzzy b');
  });

  it('never puts the token in the message or the problem members', () => {
    const token = tokenFor({ email: SA, secret: 'do-not-show' });
    for (const upstreamStatus of [401, 403, 500]) {
      const error = explainRefusal({ ...base, token, upstreamStatus });
      const everything = `${error.message}${JSON.stringify(error.extensions)}`;
      for (const part of token.split('.')) expect(everything).not.toContain(part);
    }
  });

  it('on a status that is no refusal says only what came back, sending a token or not', () => {
    const error = explainRefusal({ ...base, auth: 'none', token: null, upstreamStatus: 500 });
    expect([error.code, error.message]).toEqual([
      'UPSTREAM_ERROR',
      `the receiving service at ${url.href} answered 500.`,
    ]);
  });

  it('on other statuses says only what came back', () => {
    const error = explainRefusal({ ...base, upstreamStatus: 500 });
    expect(error.code).toBe('UPSTREAM_ERROR');
    expect(error.message).toBe(`the receiving service at ${url.href} answered 500.`);
  });
});

describe('the service a 403 fix names, read from URL', () => {
  it.each([
    ['https://receiving-abc123defg-uc.a.run.app', 'receiving'],
    ['https://my-receiving-123456789012.us-central1.run.app', 'my-receiving --region=us-central1'],
    ['http://127.0.0.1:8081', 'receiving'],
    ['https://receiving-123456789012.europe-west10.run.app', 'receiving --region=europe-west10'],
    ['http://localhost:8081', 'receiving'],
    ['http://[::1]:8081', 'receiving'],
    ['https://api.example.com', 'RECEIVING_SERVICE'],
    // Look-alikes of Cloud Run's hosts name no service.
    ['https://receiving-123456789012.us-central1.run.app.example.com', 'RECEIVING_SERVICE'],
    ['https://receiving-abc123defg-uc.a.run.app.example.com', 'RECEIVING_SERVICE'],
  ])('reads %s', (href, service) => {
    const error = explainRefusal({ ...base, url: new URL(href), upstreamStatus: 403 });
    expect(error.extensions.fix).toBe(
      `gcloud run services add-iam-policy-binding ${service} --member=serviceAccount:${SA} --role=roles/run.invoker`,
    );
  });
});
