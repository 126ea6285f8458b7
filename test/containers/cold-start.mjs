// Run inside an image by test/containers/run.sh (`node /measure/cold-start.mjs ARGS...`, ARGS
// being node's arguments in the image's CMD): spawn -> first 200 on /health, alternately with the compile cache made at build time and without
// it, medians of 7 each. Reported, not asserted: timings on a shared machine are noise for a test.
import { spawn } from 'node:child_process';

const runs = 7;
const base = { PATH: process.env.PATH, HOST: '127.0.0.1', LOG_LEVEL: 'warn', URL: 'http://127.0.0.1:9/', TOKEN_CHECK: 'none' };
let port = 18_000;

async function once(withCache) {
  const env = { ...base, PORT: String(port++), ...(withCache ? { NODE_COMPILE_CACHE: '/app/.compile-cache' } : {}) };
  const started = performance.now();
  const child = spawn(process.execPath, process.argv.slice(2), { cwd: '/app', env, stdio: 'ignore' });
  try {
    for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
      try {
        const response = await fetch(`http://127.0.0.1:${env.PORT}/health`);
        await response.arrayBuffer();
        if (response.ok) return performance.now() - started;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    throw new Error('not ready within 10 s');
  } finally {
    child.kill('SIGKILL');
  }
}

const times = { cache: [], none: [] };
for (let i = 0; i < runs; i += 1) {
  times.cache.push(await once(true));
  times.none.push(await once(false));
}
const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
const [cache, none] = [median(times.cache), median(times.none)];
console.log(
  `cold start in the image (spawn -> first 200, medians of ${runs}): ${Math.round(cache)} ms with the compile cache, ${Math.round(none)} ms without (x${(cache / none).toFixed(2)})`,
);
