import express, { type Express } from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';

/**
 * A stand-in for Cloud Run's IAM check in front of a --no-allow-unauthenticated service, as
 * STACK.md describes it: the token comes from X-Serverless-Authorization if present, else
 * Authorization; it must verify for the service's audience and belong to an invoker (else 401 /
 * 403); the container then gets that header with the signature replaced by
 * SIGNATURE_REMOVED_BY_GOOGLE, and any other header untouched.
 */
export function cloudRunFront(options: { target: string; audience: string; jwksUrl: URL; invokers: string[] }): Express {
  const jwks = createRemoteJWKSet(options.jwksUrl);
  const app = express();
  app.use(async (req, res) => {
    const header = req.headers['x-serverless-authorization'] !== undefined ? 'x-serverless-authorization' : 'authorization';
    const value = String(req.headers[header] ?? '');
    const token = /^Bearer (.+)$/i.exec(value)?.[1];
    if (!token) return void res.status(401).type('text/html').send('<h1>401 Unauthorized</h1>');
    let email: unknown;
    try {
      ({ payload: { email } } = await jwtVerify(token, jwks, { audience: options.audience, algorithms: ['RS256'] }));
    } catch {
      return void res.status(401).type('text/html').send('<h1>401 Unauthorized</h1>');
    }
    if (!options.invokers.includes(String(email))) return void res.status(403).type('text/html').send('<h1>403 Forbidden</h1>');
    const headers: Record<string, string> = {};
    for (const name of ['authorization', 'x-serverless-authorization']) {
      const original = req.headers[name];
      if (typeof original === 'string') headers[name] = original;
    }
    headers[header] = `Bearer ${token.replace(/[^.]+$/, 'SIGNATURE_REMOVED_BY_GOOGLE')}`;
    const upstream = await fetch(`${options.target}${req.originalUrl}`, { headers });
    const challenge = upstream.headers.get('www-authenticate');
    if (challenge) res.set('WWW-Authenticate', challenge);
    res.status(upstream.status).type(upstream.headers.get('content-type') ?? 'text/plain').send(await upstream.text());
  });
  return app;
}
