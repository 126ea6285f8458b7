import {
  CallerNotInvokerError,
  IdTokenUnavailableError,
  NotFoundError,
  SigningKeysUnavailableError,
  TokenInvalidError,
  TokenMissingError,
  UpstreamRefusedError,
  UpstreamTimeoutError,
  UpstreamUnreachableError,
  type ServiceError,
} from '../../services/shared/errors.js';

/** One of each error a service can answer with, as the services raise them. */
const every: ServiceError[] = [
  new TokenMissingError(),
  new TokenInvalidError('token has expired'),
  new CallerNotInvokerError('a@p.iam.gserviceaccount.com'),
  new SigningKeysUnavailableError('https://keys.example/certs', 'answered 500', 30),
  new IdTokenUnavailableError(
    'https://r.example',
    'the metadata server at h answered 500',
    'Check it.',
  ),
  new UpstreamRefusedError('UPSTREAM_UNAUTHORIZED', 'm', {}),
  new UpstreamRefusedError('UPSTREAM_FORBIDDEN', 'm', {}),
  new UpstreamRefusedError('UPSTREAM_ERROR', 'm', {}),
  new UpstreamUnreachableError('https://r.example/', 'the connection was refused'),
  new UpstreamTimeoutError('https://r.example/', 300),
  new NotFoundError('/x'),
];

describe('the errors services answer with', () => {
  it('cover every code once, each with its own human title and a stable problem type', () => {
    expect(new Set(every.map((e) => e.code)).size).toBe(every.length);
    expect(new Set(every.map((e) => e.title)).size).toBe(every.length);
    for (const error of every) {
      expect(error.title).toMatch(/^[A-Z][a-z]+( [a-z0-9A-Z]+)+$|^Not found$/);
      expect(error.type).toBe(
        `urn:cloudrun-service-auth:problem:${error.code.toLowerCase().replaceAll('_', '-')}`,
      );
      // Each by its own class's name, as a stack trace or a log line shows it.
      expect(error.name).toBe(error.constructor.name);
    }
    expect(new Set(every.map((e) => e.name))).toEqual(
      new Set([
        'TokenMissingError',
        'TokenInvalidError',
        'CallerNotInvokerError',
        'SigningKeysUnavailableError',
        'IdTokenUnavailableError',
        'UpstreamRefusedError',
        'UpstreamUnreachableError',
        'UpstreamTimeoutError',
        'NotFoundError',
      ]),
    );
  });

  it.each([
    [new TokenMissingError(), 401, 'No bearer token'],
    [new TokenInvalidError('x'), 401, 'Invalid token'],
    [new CallerNotInvokerError(null, '123'), 403, 'Caller is not an invoker'],
    [new SigningKeysUnavailableError('u', 'h', 1), 503, 'Signing keys unavailable'],
    [new IdTokenUnavailableError('a', 'r', 'h'), 503, 'No identity token'],
    [
      new UpstreamRefusedError('UPSTREAM_UNAUTHORIZED', 'm', {}),
      502,
      'The receiving service did not accept the token',
    ],
    [
      new UpstreamRefusedError('UPSTREAM_FORBIDDEN', 'm', {}),
      502,
      'The receiving service refused this caller',
    ],
    [
      new UpstreamRefusedError('UPSTREAM_ERROR', 'm', {}),
      502,
      'The receiving service answered with an error',
    ],
    [new UpstreamUnreachableError('u', 'h'), 502, 'The receiving service could not be reached'],
    [new UpstreamTimeoutError('u', 1), 504, 'The receiving service did not answer in time'],
    [new NotFoundError('/'), 404, 'Not found'],
  ])('%s answers %d titled "%s"', (error, status, title) => {
    expect([error.status, error.title]).toEqual([status, title]);
  });

  it('keeps the Bearer challenge well-formed whatever the reason holds', () => {
    const error = new TokenInvalidError('a "quoted" \\ reason\r\nX-Injected: 1');
    expect(error.headers['WWW-Authenticate']).toBe(
      'Bearer error="invalid_token", error_description="a  quoted    reason  X-Injected: 1"',
    );
  });

  it('tells a caller without a verified email why it cannot be matched, naming its subject', () => {
    expect(new CallerNotInvokerError(null, '1234').message).toBe(
      'the caller (subject 1234) has no verified email in its token, so it cannot be matched against INVOKERS',
    );
  });

  it('names the binding that fixes a refused caller: serviceAccount: for service accounts, user: for people', () => {
    expect(new CallerNotInvokerError('sa@p.iam.gserviceaccount.com').message).toBe(
      'sa@p.iam.gserviceaccount.com is not allowed to invoke this service: grant it roles/run.invoker ' +
        '(locally: add serviceAccount:sa@p.iam.gserviceaccount.com to INVOKERS)',
    );
    expect(new CallerNotInvokerError('ann@example.com').message).toContain(
      'add user:ann@example.com to INVOKERS',
    );
  });

  it('keeps the cause of an error for the log', () => {
    const cause = new Error('ECONNREFUSED');
    expect(new UpstreamUnreachableError('u', 'the connection was refused', { cause }).cause).toBe(
      cause,
    );
    expect(new TokenInvalidError('x').cause).toBeUndefined();
  });
});
