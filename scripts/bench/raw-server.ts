/**
 * The benchmark's floors: a bare node:http server (MODE=hello answers "Hello World!") and a bare
 * node:http proxy with a keep-alive agent in front of one (MODE=proxy, TARGET=http://...).
 * No framework, no auth, no logging: what one hop and a chain of two cost at the least.
 */
import http from 'node:http';

const mode = process.env.MODE ?? 'hello';
const target = process.env.TARGET ?? '';
const agent = new http.Agent({ keepAlive: true });

const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (mode === 'hello') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('Hello World!');
    return;
  }
  http
    .get(target, { agent }, (upstream) => {
      const chunks: Buffer[] = [];
      upstream.on('data', (chunk: Buffer) => chunks.push(chunk));
      upstream.on('end', () => {
        res.writeHead(upstream.statusCode === 200 ? 200 : 502, { 'content-type': 'text/plain' });
        res.end(`Second service says: ${Buffer.concat(chunks).toString()}`);
      });
    })
    .on('error', () => res.writeHead(502).end());
});
server.listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '127.0.0.1');
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
