import request from 'supertest';
import { capturingLogger } from '../helpers/logs.js';
import {
  startEmulator,
  startReceiving as serveReceiving,
  type Running,
  type RunningEmulator,
} from '../helpers/servers.js';
import { b64url, claimsFor } from '../helpers/tokens.js';

const AUDIENCE = 'https://receiving-abc123-uc.a.run.app';

describe('receiving over HTTP', () => {
  let emulator: RunningEmulator;
  let receiving: Running;
  let logLines: string[];

  const startReceiving = async (invokers: string[]) => {
    const { logger, lines } = capturingLogger();
    logLines = lines;
    return serveReceiving(
      { AUDIENCES: AUDIENCE, JWKS_URL: emulator.jwksUrl.href, INVOKERS: invokers.join(',') },
      logger,
    );
  };
  const token = (overrides = {}) => emulator.key.sign(claimsFor(emulator, AUDIENCE, overrides));

  beforeAll(async () => {
    emulator = await startEmulator();
  });
  afterAll(() => emulator.close());
  afterEach(() => receiving.close());

  describe('with the emulator identity as its only invoker', () => {
    beforeEach(async () => {
      receiving = await startReceiving([`serviceAccount:${emulator.config.serviceAccount}`]);
    });

    it('answers Hello World! to an invoker', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await token()}`);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      expect(res.text).toBe('Hello World!');
    });

    it.each([
      'Basic dXNlcjpwYXNz',
      'Bearer',
      'Bearer a b',
      'abc.def.ghi',
      'XBearer abc.def.ghi',
      'Token bearer abc.def.ghi',
    ])(
      'refuses Authorization %j as not a bearer token, saying what the header should look like',
      async (header) => {
        const res = await request(receiving.url)
          .get('/')
          .set('Authorization', header)
          .set('Accept', 'application/json');
        expect([res.status, res.body.code, res.body.detail]).toEqual([
          401,
          'TOKEN_INVALID',
          'invalid token: Authorization header is not of the form "Bearer <token>"',
        ]);
      },
    );

    it.each([undefined, '', '   '])(
      'answers TOKEN_MISSING for Authorization %j',
      async (header) => {
        const req = request(receiving.url).get('/').set('Accept', 'application/json');
        const res = await (header === undefined ? req : req.set('Authorization', header));
        expect([res.status, res.body.code]).toEqual([401, 'TOKEN_MISSING']);
      },
    );

    it('accepts the scheme in any case, with spaces and tabs around the token', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `BEARER \t  ${await token()} \t`);
      expect(res.status).toBe(200);
    });

    it('accepts the scheme in any case', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `bEaReR ${await token()}`);
      expect(res.status).toBe(200);
    });

    it('answers /health without a token', async () => {
      const res = await request(receiving.url).get('/health');
      expect(res.status).toBe(200);
      expect(res.text).toBe('ok\n');
    });

    it('says nothing about its framework and sends no ETag', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await token()}`);
      expect(res.status).toBe(200);
      expect(res.headers).not.toHaveProperty('x-powered-by');
      expect(res.headers).not.toHaveProperty('etag');
      // Error answers go through res.send, which would add an ETag if it were on.
      const missing = await request(receiving.url)
        .get('/nowhere')
        .set('Authorization', `Bearer ${await token()}`);
      expect(missing.status).toBe(404);
      expect(missing.headers).not.toHaveProperty('etag');
      expect(missing.headers).not.toHaveProperty('x-powered-by');
    });

    it('answers 401 with a Bearer challenge when the token is missing', async () => {
      const res = await request(receiving.url).get('/');
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toMatch(
        /^Bearer error="invalid_token", error_description="no bearer token/,
      );
      expect(res.text).toMatch(/no bearer token/);
    });

    it('answers 401 naming the reason and never echoes or logs the token', async () => {
      const expired = await token({ iat: 1_600_000_000, exp: 1_600_003_600 });
      const res = await request(receiving.url).get('/').set('Authorization', `Bearer ${expired}`);
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBe(
        'Bearer error="invalid_token", error_description="token has expired"',
      );
      expect(res.text).toBe('invalid token: token has expired\n');
      const signature = expired.split('.')[2]!;
      const payload = expired.split('.')[1]!;
      for (const part of [signature, payload]) {
        expect(JSON.stringify(res.headers)).not.toContain(part);
        expect(logLines.join('\n')).not.toContain(part);
      }
      expect(logLines.join('\n')).toContain('token has expired');
    });

    it('keeps a token pasted into the URL path out of the 404 body and the log', async () => {
      const pasted = await token();
      const encoded = pasted.replaceAll('.', '%2E');
      for (const path of [`/${pasted}`, `/call/${pasted}/now`, `/${encoded}`, `/t=${pasted}`]) {
        const res = await request(receiving.url)
          .get(path)
          .set('Authorization', `Bearer ${await token()}`);
        expect(res.status).toBe(404);
        expect(res.text).toMatch(/^no route for \/(call\/|t=)?\[token\](\/now)?\n$/);
      }
      const logs = logLines.join('\n');
      for (const part of pasted.split('.')) expect(logs).not.toContain(part);
      expect(logs).toContain('GET /call/[token]/now 404');
    });

    it('answers 403 naming the caller when its email is not an invoker', async () => {
      const stranger = 'cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com';
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await token({ email: stranger })}`);
      expect(res.status).toBe(403);
      expect(res.text).toContain(`${stranger} is not allowed to invoke this service`);
      expect(res.text).toContain(`serviceAccount:${stranger}`);
    });

    it('admits the invoker whatever the case of its email in the token', async () => {
      const shouted = emulator.config.serviceAccount.toUpperCase();
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await token({ email: shouted })}`);
      expect([res.status, res.text]).toEqual([200, 'Hello World!']);
    });

    it('answers 403 when the email is not verified', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await token({ email_verified: false })}`);
      expect(res.status).toBe(403);
      expect(res.text).toMatch(/no verified email/);
    });

    it('answers 403 naming the subject when the token has no email, even one claiming email_verified', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set(
          'Authorization',
          `Bearer ${await token({ email: undefined, email_verified: true, sub: '1234567890' })}`,
        );
      expect(res.status).toBe(403);
      expect(res.text).toMatch(/no verified email/);
      expect(res.text).toContain('1234567890');
    });

    it('never answers 5xx, whatever the Authorization header holds', async () => {
      const garbage = [
        'Bearer',
        'Bearer .',
        'Bearer ...',
        `Bearer ${'A'.repeat(6000)}`,
        `Bearer ${b64url({ alg: 'RS256', kid: 42 })}.${b64url([])}.x`,
        `Bearer ${b64url({ alg: 'RS256', crit: ['exp'] })}.${b64url({})}.x`,
        `Bearer ${b64url('str')}.${b64url(null)}.${b64url(1)}`,
        'Bearer \u00ff\u00fe.\u00fd.\u00fc',
        'Negotiate abc',
      ];
      for (const header of garbage) {
        const res = await request(receiving.url).get('/').set('Authorization', header);
        expect([header.slice(0, 20), res.status]).toEqual([header.slice(0, 20), 401]);
      }
      const ok = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await token()}`);
      expect(ok.status).toBe(200);
    });
  });

  describe('with an invoker whose email holds a k', () => {
    const kelvin = 'kelvin@local-project.iam.gserviceaccount.com';
    const lookalike = '\u212Aelvin@local-project.iam.gserviceaccount.com'; // U+212A KELVIN SIGN, not k

    it('refuses a look-alike email that only Unicode case folding would make equal', async () => {
      receiving = await startReceiving([`serviceAccount:${kelvin}`]);
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await token({ email: lookalike })}`);
      expect(res.status).toBe(403);
      expect(res.text).toContain(`${lookalike} is not allowed to invoke this service`);
      const owner = await request(receiving.url)
        .get('/')
        .set(
          'Authorization',
          `Bearer ${await token({ email: 'KELVIN@local-project.iam.gserviceaccount.com' })}`,
        );
      expect(owner.status).toBe(200);
    });

    it('does not let a look-alike in INVOKERS admit the real address', async () => {
      receiving = await startReceiving([`serviceAccount:${lookalike}`]);
      const res = await request(receiving.url)
        .get('/')
        .set('Authorization', `Bearer ${await token({ email: kelvin })}`);
      expect(res.status).toBe(403);
    });
  });

  describe('without INVOKERS', () => {
    beforeEach(async () => {
      receiving = await startReceiving([]);
    });

    it('lets any caller with a valid token in', async () => {
      const res = await request(receiving.url)
        .get('/')
        .set(
          'Authorization',
          `Bearer ${await token({ email: 'anyone@example.com', email_verified: false })}`,
        );
      expect(res.status).toBe(200);
    });
  });
});

describe('receiving with TOKEN_CHECK=none', () => {
  it('answers everyone, as the tutorial service behind Cloud Run IAM does', async () => {
    const receiving = await serveReceiving({ TOKEN_CHECK: 'none' });
    try {
      const res = await request(receiving.url).get('/');
      expect(res.status).toBe(200);
      expect(res.text).toBe('Hello World!');
    } finally {
      await receiving.close();
    }
  });
});
