/**
 * The pattern of Google's Node samples for calling a private Cloud Run service (google-auth-library's
 * ID-token sample for serverless, the Cloud Run Markdown preview sample's renderer): an
 * IdTokenClient made once, its request headers asked for on every request, and an HTTP client
 * used as it comes (Node's fetch, untuned). The benchmark's baseline for calling; not shipped.
 */
import express from 'express';
import { GoogleAuth, type IdTokenClient } from 'google-auth-library';

const url = process.env.URL ?? '';
const audience = new URL(url).origin;
const auth = new GoogleAuth();
let client: IdTokenClient | undefined;

const app = express();
app.get('/health', (_req, res) => {
  res.send('ok\n');
});
app.get('/', async (_req, res) => {
  try {
    client ??= await auth.getIdTokenClient(audience);
    const headers = await client.getRequestHeaders();
    const upstream = await fetch(url, {
      headers: { Authorization: headers.get('authorization') ?? '' },
    });
    res.status(upstream.ok ? 200 : 502).send(`Second service says: ${await upstream.text()}`);
  } catch {
    res.status(503).send('could not call the receiving service\n');
  }
});
const server = app.listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '127.0.0.1');
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
