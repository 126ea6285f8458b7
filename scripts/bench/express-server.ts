/**
 * The benchmark's framework floors, the stack the design card chose with nothing of ours on it:
 * a bare Express 5 hello world (MODE=hello) and a bare Express 5 proxy calling one through
 * node-fetch 2 with a keep-alive agent (MODE=proxy, TARGET=http://...). No auth, no logging.
 * `cold_start_vs_express` divides the services' start-up by MODE=hello's; `chain_vs_framework`
 * divides chain-auth's req/s by the two-hop's.
 */
import http from 'node:http';
import express from 'express';

const mode = process.env.MODE ?? 'hello';
const target = process.env.TARGET ?? '';
const agent = new http.Agent({ keepAlive: true });
// Loaded by the proxy only: the hello world is a bare Express app, for the cold-start baseline.
const fetch = mode === 'proxy' ? (await import('node-fetch')).default : undefined;

const app = express();
app.get('/health', (_req, res) => {
  res.send('ok\n');
});
app.get('/', async (_req, res) => {
  if (mode === 'hello') {
    res.type('text/plain').send('Hello World!');
    return;
  }
  try {
    const upstream = await fetch!(target, { agent });
    const text = await upstream.text();
    res
      .status(upstream.ok ? 200 : 502)
      .type('text/plain')
      .send(`Second service says: ${text}`);
  } catch {
    res.status(502).end();
  }
});
const server = app.listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '127.0.0.1');
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
