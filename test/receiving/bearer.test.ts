import { TokenInvalidError, TokenMissingError } from '../../services/shared/errors.js';
import { readBearerToken } from '../../services/receiving/bearer.js';

describe('readBearerToken', () => {
  it.each(['Bearer abc.def.ghi', 'bearer abc.def.ghi', 'BEARER   abc.def.ghi  '])('reads %j', (header) => {
    expect(readBearerToken(header)).toBe('abc.def.ghi');
  });

  it.each([undefined, '', '   '])('answers token missing for %j', (header) => {
    expect(() => readBearerToken(header)).toThrow(TokenMissingError);
  });

  it.each(['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer a b', 'abc.def.ghi', 'XBearer abc.def.ghi', 'Token bearer abc.def.ghi'])(
    'refuses %j as not a bearer token, saying what the header should look like',
    (header) => {
      expect(() => readBearerToken(header)).toThrow(TokenInvalidError);
      expect(() => readBearerToken(header)).toThrow('Authorization header is not of the form "Bearer <token>"');
    },
  );
});
