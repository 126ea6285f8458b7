// Run inside an image by test/containers/run.sh (`node /measure/cold-start.mjs ARGS...`, ARGS
// being node's arguments in the image's CMD): spawn -> first 200 on /health, alternately as
// deployed (the compile cache made at build time and the manifest's NODE_OPTIONS, passed in as
// DEPLOYED_NODE_OPTIONS), with the cache but no NODE_OPTIONS, and with neither; medians of 7 each.
// Reported, not asserted: timings on a shared machine are noise for a test.
import { spawn } from 'node:child_process';

const runs = 7;
const base = {
  PATH: process.env.PATH,
  HOST: '127.0.0.1',
  LOG_LEVEL: 'warn',
  URL: 'http://127.0.0.1:9/',
  TOKEN_CHECK: 'none',
};
let port = 18_000;

const deployedOptions = process.env.DEPLOYED_NODE_OPTIONS ?? '';

async function once(withCache, withOptions) {
  const env = {
    ...base,
    PORT: String(port++),
    ...(withCache ? { NODE_COMPILE_CACHE: '/app/.compile-cache' } : {}),
    ...(withOptions && deployedOptions ? { NODE_OPTIONS: deployedOptions } : {}),
  };
  const started = performance.now();
  const child = spawn(process.execPath, process.argv.slice(2), {
    cwd: '/app',
    env,
    stdio: 'ignore',
  });
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

const times = { deployed: [], cache: [], none: [] };
for (let i = 0; i < runs; i += 1) {
  times.deployed.push(await once(true, true));
  times.cache.push(await once(true, false));
  times.none.push(await once(false, false));
}
const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
const [deployed, cache, none] = [median(times.deployed), median(times.cache), median(times.none)];
console.log(
  `cold start in the image (spawn -> first 200, medians of ${runs}): ${Math.round(deployed)} ms as deployed (cache + NODE_OPTIONS '${deployedOptions}'), ` +
    `${Math.round(cache)} ms with the cache alone, ${Math.round(none)} ms with neither (cache x${(cache / none).toFixed(2)}, NODE_OPTIONS x${(deployed / cache).toFixed(2)})`,
);
