/**
 * `npm run bench [-- --json FILE] [--duration S] [--rounds N] [--connections N] [--spawns N] [--no-memory-limit] [--baseline DIR]`:
 * starts the services and their
 * baselines as separate processes on 127.0.0.1, drives each scenario with autocannon at the same
 * concurrency for the same time, and prints a table and the ratios the product is judged by.
 * Absolute numbers on a shared machine are noise; ratios measured side by side in one run are not.
 * --baseline DIR: another built checkout (its dist/bundle), whose chain and receiving run in the
 * same rounds, so a change is judged against the code before it in one run.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { loadEmulatorConfig } from '../../local/metadata-emulator/config.js';
import {
  freePort,
  nodeArgsOf,
  SERVICE_NODE_FLAGS,
  startProcess,
  startService,
  type ServiceProcess,
  type StartOptions,
} from '../lib/processes.js';
import { deployedRuntime, memoryCgroup, type MemoryCgroup } from './memory-limit.js';

interface Options {
  json?: string;
  /** Seconds of each scenario per round. */
  durationS: number;
  rounds: number;
  connections: number;
  /** Cold starts of each process measured, alternating. */
  spawns: number;
  /** Whether to run the chain under the deployed memory limit too (`--no-memory-limit` skips it). */
  memoryLimit: boolean;
  /** A built checkout to measure beside this one. */
  baseline?: string;
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    durationS: 2,
    rounds: 6,
    connections: 32,
    spawns: 15,
    memoryLimit: true,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--no-memory-limit') {
      options.memoryLimit = false;
      continue;
    }
    if (flag === '--json' && value) options.json = value;
    else if (flag === '--duration' && value) options.durationS = Number(value);
    else if (flag === '--connections' && value) options.connections = Number(value);
    else if (flag === '--rounds' && value) options.rounds = Number(value);
    else if (flag === '--spawns' && value) options.spawns = Number(value);
    else if (flag === '--baseline' && value) options.baseline = resolve(value);
    else
      throw new Error(
        `unknown argument ${flag}; use --json FILE, --duration S, --rounds N, --connections N, --spawns N, --no-memory-limit, --baseline DIR`,
      );
    i += 1;
  }
  if (!(options.durationS >= 1 && options.durationS <= 60))
    throw new Error('--duration must be 1 to 60 seconds');
  if (!(options.rounds >= 1 && options.rounds <= 10)) throw new Error('--rounds must be 1 to 10');
  if (!(options.connections >= 1 && options.connections <= 256))
    throw new Error('--connections must be 1 to 256');
  if (!(options.spawns >= 1 && options.spawns <= 31)) throw new Error('--spawns must be 1 to 31');
  for (const service of ['calling', 'receiving']) {
    if (options.baseline !== undefined && !existsSync(baselineEntry(options.baseline, service))) {
      throw new Error(
        `--baseline ${options.baseline}: no ${baselineEntry(options.baseline, service)} (run npm run build there first)`,
      );
    }
  }
  return options;
}

const round3 = (value: number) => Math.round(value * 1000) / 1000;

function baselineEntry(dir: string, service: string): string {
  return join(dir, 'dist', 'bundle', service, 'main.mjs');
}

/** The authenticated chain started under the deployed memory limit. */
interface LimitedChain {
  label: string;
  receiving: ServiceProcess;
  calling: ServiceProcess;
}

/** What it measured (with and without the manifests' NODE_OPTIONS), or why it was not measured. */
type LimitReport = { mib: { calling: number; receiving: number } } & (
  | {
      node_options: { calling: string | null; receiving: string | null };
      rss_after_load_mb: { calling: number; receiving: number };
      rps_vs_unlimited: number;
      without_node_options: {
        rss_after_load_mb: { calling: number; receiving: number };
        rps_vs_unlimited: number;
      };
    }
  | { unavailable: string }
);

interface Scenario {
  name: string;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  /** The slowest and fastest round's req/s: how noisy the machine was. */
  rps_range?: [number, number];
}

/** req/s of each scenario in each round, to pair scenarios measured moments apart. */
const perRound = new Map<string, number[]>();

const options = parseArgs(process.argv.slice(2));
const identity = loadEmulatorConfig({});
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
// Request logs off (LOG_LEVEL=warn) in every service: the benchmark measures the auth and HTTP path,
// and the baselines log nothing either.
const baseEnv = {
  PATH: process.env.PATH,
  LOG_LEVEL: 'warn',
  GOOGLE_CLOUD_PROJECT: identity.projectId,
};
const started: ServiceProcess[] = [];
const groups: MemoryCgroup[] = [];
const say = (text = '') => process.stdout.write(`${text}\n`);

async function start(
  name: string,
  entry: string | string[] | null,
  env: Record<string, string | undefined>,
  ready: Partial<StartOptions> = {},
) {
  const port = await freePort();
  const opts: StartOptions = { env: { ...baseEnv, ...env }, port, readyPollMs: 5, ...ready };
  const service =
    entry === null
      ? await startService(name as 'calling' | 'receiving' | 'metadata-emulator', opts)
      : await startProcess(name, entry, opts);
  started.push(service);
  return service;
}

async function load(
  url: string,
  headers: Record<string, string> = {},
  amount?: number,
): Promise<autocannon.Result> {
  return autocannon({
    url,
    headers,
    connections: amount ?? options.connections,
    ...(amount ? { amount } : { duration: options.durationS }),
    timeout: 10,
  });
}

interface Target {
  name: string;
  url: string;
  headers?: Record<string, string>;
  /** The processes this scenario loads: their RSS is read after each of its rounds. */
  loads?: ServiceProcess[];
}

/** The highest RSS (MB) each process showed right after a round that loaded it. */
const peakRss = new Map<ServiceProcess, number>();
const afterLoad = (service: ServiceProcess): number => peakRss.get(service) ?? rssMb(service);

/**
 * Runs the targets round-robin, `rounds` times each, so that a slow patch of a shared machine
 * falls on every scenario alike (each round starting at the next scenario); req/s is all 2xx answers over all measured time, p50 and p99 the
 * medians over the rounds.
 */
async function measureAll(
  targets: Target[],
  hooks: { beforeRounds: () => Promise<void>; afterRounds: () => Promise<void> },
): Promise<Scenario[]> {
  for (const t of targets) await warmUp(t);
  await hooks.beforeRounds();
  const results = new Map<string, autocannon.Result[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < options.rounds; round += 1) {
    // Each round starts one scenario later, so no scenario always follows the same neighbour.
    for (let i = 0; i < targets.length; i += 1) {
      const t = targets[(i + round) % targets.length]!;
      results.get(t.name)!.push(await load(t.url, t.headers));
      for (const service of t.loads ?? [])
        peakRss.set(service, Math.max(peakRss.get(service) ?? 0, rssMb(service)));
    }
  }
  await hooks.afterRounds();
  return targets.map((t) => {
    const runs = results.get(t.name)!;
    perRound.set(
      t.name,
      runs.map((r) => r['2xx'] / r.duration),
    );
    const scenario: Scenario = {
      name: t.name,
      rps: Math.round(
        runs.reduce((n, r) => n + r['2xx'], 0) / runs.reduce((n, r) => n + r.duration, 0),
      ),
      p50_ms: median(runs.map((r) => r.latency.p50)),
      p99_ms: median(runs.map((r) => r.latency.p99)),
      errors: runs.reduce((n, r) => n + r.errors + r.timeouts + r.non2xx, 0),
      rps_range: [
        Math.round(Math.min(...runs.map((r) => r['2xx'] / r.duration))),
        Math.round(Math.max(...runs.map((r) => r['2xx'] / r.duration))),
      ],
    };
    say(row(scenario));
    return scenario;
  });
}

const warmUp = (t: Target) =>
  autocannon({
    url: t.url,
    headers: t.headers ?? {},
    connections: options.connections,
    duration: 2,
    timeout: 10,
  });

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const row = (s: Scenario) =>
  `${s.name.padEnd(27)} ${String(s.rps).padStart(8)} ${s.p50_ms.toFixed(1).padStart(8)} ${s.p99_ms.toFixed(1).padStart(8)} ${String(s.errors).padStart(7)}` +
  (s.rps_range ? `   ${s.rps_range[0]}-${s.rps_range[1]}` : '');

const identityRequests = async (metadata: ServiceProcess): Promise<number> =>
  ((await (await fetch(`${metadata.url}/emulator/stats`)).json()) as { identityRequests: number })
    .identityRequests;

const rssMb = (service: ServiceProcess): number => {
  const status = readFileSync(`/proc/${service.child.pid}/status`, 'utf8');
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
};

interface Spawnable {
  name: string;
  /** Node's arguments: a script, or flags and a script. */
  args: string[];
  env: Record<string, string | undefined>;
}

/**
 * Cold starts: spawn -> first 200 on /health (asked every 2 ms) and RSS at that moment, of each
 * process `spawns` times, alternating, each round starting one process later so that none always
 * follows the same neighbour. One process runs at a time, each on a fresh port.
 */
async function coldStarts(
  candidates: Spawnable[],
): Promise<Map<string, { ms: number[]; rssMb: number[] }>> {
  const results = new Map(
    candidates.map((c) => [c.name, { ms: [] as number[], rssMb: [] as number[] }]),
  );
  for (let round = 0; round < options.spawns; round += 1) {
    for (let i = 0; i < candidates.length; i += 1) {
      const c = candidates[(i + round) % candidates.length]!;
      const service = await startProcess(c.name, c.args, {
        env: { ...baseEnv, ...c.env },
        port: await freePort(),
        readyPollMs: 2,
      });
      results.get(c.name)!.ms.push(service.readyAfterMs);
      results.get(c.name)!.rssMb.push(rssMb(service));
      await service.stop();
    }
  }
  return results;
}

async function main(): Promise<void> {
  say(
    `bench: ${options.connections} connections; each scenario warmed up 2 s, then measured ${options.rounds} x ${options.durationS} s, ` +
      'round-robin; all on 127.0.0.1',
  );
  const metadata = await start(
    'metadata-emulator',
    null,
    {},
    {
      readyPath: '/computeMetadata/v1/instance/id',
      readyHeaders: { 'Metadata-Flavor': 'Google' },
    },
  );
  const jwks = `${metadata.url}/oauth2/v3/certs`;
  const rawHello = await start('raw-hello', here('./raw-server.js'), { MODE: 'hello' });
  const rawProxy = await start('raw-proxy', here('./raw-server.js'), {
    MODE: 'proxy',
    TARGET: `${rawHello.url}/`,
  });
  const expressHello = await start('express-hello', here('./express-server.js'), { MODE: 'hello' });
  const expressProxy = await start('express-proxy', here('./express-server.js'), {
    MODE: 'proxy',
    TARGET: `${expressHello.url}/`,
  });
  const receivingNone = await start('receiving', null, { TOKEN_CHECK: 'none' });
  const verifyPort = await freePort();
  const verifyUrl = `http://127.0.0.1:${verifyPort}`;
  const receivingVerify = await startService('receiving', {
    env: {
      ...baseEnv,
      TOKEN_CHECK: 'verify',
      AUDIENCES: verifyUrl,
      JWKS_URL: jwks,
      INVOKERS: `serviceAccount:${identity.serviceAccount}`,
    },
    port: verifyPort,
    readyPollMs: 5,
  });
  started.push(receivingVerify);
  const callingNone = await start('calling', null, { URL: receivingNone.url, AUTH: 'none' });
  const callingEnv = { URL: verifyUrl, GCE_METADATA_HOST: new URL(metadata.url).host };
  const callingAuth = await start('calling', null, callingEnv);
  const official = await start('official-sample', here('./official-sample.js'), callingEnv);
  // The baseline's chain, exactly as ours: its receiving verifies, its calling gets tokens from the emulator.
  const baselineArgs = (service: string) => [
    ...SERVICE_NODE_FLAGS,
    baselineEntry(options.baseline!, service),
  ];
  const baselineVerifyUrl = `http://127.0.0.1:${await freePort()}`;
  const baselineEnv = {
    TOKEN_CHECK: 'verify',
    AUDIENCES: baselineVerifyUrl,
    JWKS_URL: jwks,
    INVOKERS: `serviceAccount:${identity.serviceAccount}`,
  };
  const baseline =
    options.baseline === undefined
      ? undefined
      : await (async () => {
          const receiving = await startProcess('baseline-receiving', baselineArgs('receiving'), {
            env: { ...baseEnv, ...baselineEnv },
            port: Number(new URL(baselineVerifyUrl).port),
            readyPollMs: 5,
          });
          started.push(receiving);
          const calling = await start('baseline-calling', baselineArgs('calling'), {
            ...callingEnv,
            URL: baselineVerifyUrl,
          });
          return { receiving, calling };
        })();

  // The same authenticated chain, each service in a memory cgroup with the limit its manifest
  // deploys it with, as on Cloud Run (Node sizes its heap from that limit): once as deployed, with
  // the manifests' NODE_OPTIONS, and once without them, to show what they are for.
  const runtime = { calling: deployedRuntime('calling'), receiving: deployedRuntime('receiving') };
  const limitMiB = { calling: runtime.calling.memoryMiB, receiving: runtime.receiving.memoryMiB };
  const limitLabel = `chain-auth-${limitMiB.calling}mi`;
  const startLimited = async (
    label: string,
    withOptions: boolean,
  ): Promise<LimitedChain | { unavailable: string }> => {
    const receivingGroup = memoryCgroup(`${label}-receiving`, limitMiB.receiving);
    const callingGroup = memoryCgroup(`${label}-calling`, limitMiB.calling);
    groups.push(receivingGroup, callingGroup);
    if (!('wrap' in receivingGroup)) return receivingGroup;
    if (!('wrap' in callingGroup)) return callingGroup;
    const nodeOptionsOf = (service: 'calling' | 'receiving') =>
      withOptions && runtime[service].nodeOptions !== undefined
        ? { NODE_OPTIONS: runtime[service].nodeOptions }
        : {};
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const receiving = await startService('receiving', {
      env: {
        ...baseEnv,
        ...nodeOptionsOf('receiving'),
        TOKEN_CHECK: 'verify',
        AUDIENCES: url,
        JWKS_URL: jwks,
        INVOKERS: `serviceAccount:${identity.serviceAccount}`,
      },
      port,
      wrap: receivingGroup.wrap,
    });
    started.push(receiving);
    const calling = await start(
      'calling',
      null,
      { ...callingEnv, ...nodeOptionsOf('calling'), URL: url },
      { wrap: callingGroup.wrap },
    );
    return { label, receiving, calling };
  };
  const limited = options.memoryLimit
    ? await startLimited(limitLabel, true)
    : { unavailable: 'skipped (--no-memory-limit)' };
  const limitedBare =
    'unavailable' in limited ? limited : await startLimited(`${limitLabel}-no-options`, false);

  // Cold starts first, on a machine not yet busy with load: our two services (the bundles the images
  // ship) against a bare Express hello world, the official sample and bare node:http.
  say(`cold starts: ${options.spawns} spawns of each, alternating ...`);
  const starts = await coldStarts([
    { name: 'express-hello', args: [here('./express-server.js')], env: { MODE: 'hello' } },
    { name: 'calling', args: nodeArgsOf('calling'), env: callingEnv },
    {
      name: 'receiving',
      args: nodeArgsOf('receiving'),
      // Its own URL is its audience; which port it gets does not matter for /health.
      env: {
        TOKEN_CHECK: 'verify',
        AUDIENCES: verifyUrl,
        JWKS_URL: jwks,
        INVOKERS: `serviceAccount:${identity.serviceAccount}`,
      },
    },
    { name: 'official-sample', args: [here('./official-sample.js')], env: callingEnv },
    { name: 'raw-hello', args: [here('./raw-server.js')], env: { MODE: 'hello' } },
    ...(options.baseline === undefined
      ? []
      : [
          { name: 'baseline-calling', args: baselineArgs('calling'), env: callingEnv },
          {
            name: 'baseline-receiving',
            args: baselineArgs('receiving'),
            env: { ...baselineEnv, AUDIENCES: verifyUrl },
          },
        ]),
  ]);
  const startMs = (name: string) => Math.round(median(starts.get(name)!.ms));
  const startRss = (name: string) => Math.round(median(starts.get(name)!.rssMb));
  // Each the median over the rounds of that round's ratio, as for throughput below.
  const startRatioTo = (name: string, other: string) => {
    const [ours, theirs] = [starts.get(name)!.ms, starts.get(other)!.ms];
    return Math.round(median(ours.map((value, i) => value / theirs[i]!)) * 1000) / 1000;
  };
  const startRatio = (name: string) => startRatioTo(name, 'express-hello');

  const token = await (
    await fetch(
      `${metadata.url}/computeMetadata/v1/instance/service-accounts/default/identity?audience=${encodeURIComponent(verifyUrl)}`,
      {
        headers: { 'Metadata-Flavor': 'Google' },
      },
    )
  ).text();
  const baselineToken = await (
    await fetch(
      `${metadata.url}/computeMetadata/v1/instance/service-accounts/default/identity?audience=${encodeURIComponent(baselineVerifyUrl)}`,
      {
        headers: { 'Metadata-Flavor': 'Google' },
      },
    )
  ).text();

  say();
  say(
    `${'scenario'.padEnd(27)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)}   req/s per round (min-max)`,
  );
  // Identity requests of the authenticated chain: its cold warm-up (32 connections at once on an
  // empty cache), then all measured rounds. The official sample asks the emulator too, but only in
  // its own warm-up: its token then lasts the whole run, so it adds nothing to the rounds.
  const chainAuth: Target = {
    name: 'chain-auth',
    url: `${callingAuth.url}/`,
    loads: [callingAuth, receivingVerify],
  };
  const beforeWarmUp = await identityRequests(metadata);
  await warmUp(chainAuth);
  let authIdentityRequests = (await identityRequests(metadata)) - beforeWarmUp;
  let beforeRounds = 0;
  const scenarios = await measureAll(
    [
      { name: 'raw-one-hop', url: `${rawHello.url}/` },
      { name: 'raw-two-hop', url: `${rawProxy.url}/` },
      { name: 'express-two-hop', url: `${expressProxy.url}/`, loads: [expressProxy] },
      // The same request, token included, to both: the ratio is the cost of checking it.
      {
        name: 'receiving-none',
        url: `${receivingNone.url}/`,
        headers: { Authorization: `Bearer ${token}` },
      },
      {
        name: 'receiving-verify',
        url: `${verifyUrl}/`,
        headers: { Authorization: `Bearer ${token}` },
        loads: [receivingVerify],
      },
      { name: 'chain-none', url: `${callingNone.url}/` },
      chainAuth,
      { name: 'official-sample', url: `${official.url}/`, loads: [official, receivingVerify] },
      ...(baseline === undefined
        ? []
        : [
            {
              name: 'baseline-receiving-verify',
              url: `${baseline.receiving.url}/`,
              headers: { Authorization: `Bearer ${baselineToken}` },
              loads: [baseline.receiving],
            },
            {
              name: 'baseline-chain-auth',
              url: `${baseline.calling.url}/`,
              loads: [baseline.calling, baseline.receiving],
            },
          ]),
      ...[limited, limitedBare].flatMap((chain) =>
        'calling' in chain
          ? [
              {
                name: chain.label,
                url: `${chain.calling.url}/`,
                loads: [chain.calling, chain.receiving],
              },
            ]
          : [],
      ),
    ],
    {
      beforeRounds: async () => {
        beforeRounds = await identityRequests(metadata);
      },
      afterRounds: async () => {
        authIdentityRequests += (await identityRequests(metadata)) - beforeRounds;
      },
    },
  );

  // A cold burst: a fresh calling service, 200 requests at once.
  const beforeBurst = await identityRequests(metadata);
  const fresh = await start('calling', null, callingEnv);
  const burst = await load(`${fresh.url}/`, {}, 200);
  const burstScenario: Scenario = {
    name: 'cold-burst-200',
    rps: Math.round(burst['2xx'] / burst.duration),
    p50_ms: burst.latency.p50,
    p99_ms: burst.latency.p99,
    errors: burst.errors + burst.timeouts + burst.non2xx,
  };
  say(row(burstScenario));
  scenarios.push(burstScenario);
  const burstIdentityRequests = (await identityRequests(metadata)) - beforeBurst;

  // Each ratio is the median over the rounds of that round's ratio: the two scenarios of a pair
  // ran seconds apart, so a slow patch of the machine cancels out, and one odd round cannot move it.
  const ratio = (a: string, b: string) => {
    const [as, bs] = [perRound.get(a)!, perRound.get(b)!];
    return Math.round(median(as.map((value, i) => value / bs[i]!)) * 1000) / 1000;
  };
  const ratios = {
    auth_overhead: ratio('chain-auth', 'chain-none'),
    verify_overhead: ratio('receiving-verify', 'receiving-none'),
    chain_vs_limit: ratio('chain-auth', 'raw-two-hop'),
    chain_vs_framework: ratio('chain-auth', 'express-two-hop'),
    vs_official_sample: ratio('chain-auth', 'official-sample'),
  };
  // This checkout against the baseline's, pair by pair in the same rounds (> 1: this one is faster).
  const vsBaseline =
    baseline === undefined
      ? undefined
      : {
          chain_auth: ratio('chain-auth', 'baseline-chain-auth'),
          receiving_verify: ratio('receiving-verify', 'baseline-receiving-verify'),
          cold_start_calling: startRatioTo('calling', 'baseline-calling'),
          cold_start_receiving: startRatioTo('receiving', 'baseline-receiving'),
          rss_after_load_calling: afterLoad(callingAuth) / afterLoad(baseline.calling),
          rss_after_load_receiving: afterLoad(receivingVerify) / afterLoad(baseline.receiving),
        };
  const report = {
    scenarios,
    ratios,
    metadata_identity_requests: authIdentityRequests,
    cold_burst: {
      requests: 200,
      errors: burstScenario.errors,
      identity_requests: burstIdentityRequests,
    },
    cold_start_ms: Object.fromEntries(
      [...starts.keys()].map((name) => [name.replaceAll('-', '_'), startMs(name)]),
    ),
    cold_start_vs_express: { calling: startRatio('calling'), receiving: startRatio('receiving') },
    rss_first_200_mb: {
      calling: startRss('calling'),
      receiving: startRss('receiving'),
      express_hello: startRss('express-hello'),
    },
    rss_after_load_mb: {
      calling: afterLoad(callingAuth),
      receiving: afterLoad(receivingVerify),
      official_sample: afterLoad(official),
      express_proxy: afterLoad(expressProxy),
      metadata_emulator: rssMb(metadata),
    },
    // The authenticated chain again, each service under its deployed memory limit (when this machine can impose one).
    memory_limit: ('calling' in limited && 'calling' in limitedBare
      ? {
          mib: limitMiB,
          node_options: {
            calling: runtime.calling.nodeOptions ?? null,
            receiving: runtime.receiving.nodeOptions ?? null,
          },
          rss_after_load_mb: {
            calling: afterLoad(limited.calling),
            receiving: afterLoad(limited.receiving),
          },
          rps_vs_unlimited: ratio(limited.label, 'chain-auth'),
          without_node_options: {
            rss_after_load_mb: {
              calling: afterLoad(limitedBare.calling),
              receiving: afterLoad(limitedBare.receiving),
            },
            rps_vs_unlimited: ratio(limitedBare.label, 'chain-auth'),
          },
        }
      : {
          mib: limitMiB,
          unavailable:
            'unavailable' in limited
              ? limited.unavailable
              : 'unavailable' in limitedBare
                ? limitedBare.unavailable
                : '',
        }) as LimitReport,
    vs_baseline: vsBaseline === undefined ? null : { dir: options.baseline, ...vsBaseline },
    settings: {
      connections: options.connections,
      rounds: options.rounds,
      round_s: options.durationS,
      spawns: options.spawns,
      node: process.version,
    },
  };

  const targets: [string, number, '>=' | '<=' | '=', number, string][] = [
    ['auth_overhead', ratios.auth_overhead, '>=', 0.95, 'chain-auth / chain-none'],
    ['verify_overhead', ratios.verify_overhead, '>=', 0.9, 'receiving-verify / receiving-none'],
    ['chain_vs_limit', ratios.chain_vs_limit, '>=', 0.6, 'chain-auth / raw-two-hop'],
    ['chain_vs_framework', ratios.chain_vs_framework, '>=', 0.95, 'chain-auth / express-two-hop'],
    ['vs_official_sample', ratios.vs_official_sample, '>=', 1.5, 'chain-auth / official-sample'],
    [
      'metadata_identity_requests',
      authIdentityRequests,
      '=',
      1,
      'identity requests during chain-auth (= 1)',
    ],
    [
      'cold_start_vs_express.calling',
      report.cold_start_vs_express.calling,
      '<=',
      1,
      'spawn to first 200: calling / bare Express',
    ],
    [
      'cold_start_vs_express.receiving',
      report.cold_start_vs_express.receiving,
      '<=',
      1,
      'spawn to first 200: receiving / bare Express',
    ],
    ['rss_first_200_mb.calling', report.rss_first_200_mb.calling, '<=', 60, 'MB at its first 200'],
    [
      'rss_first_200_mb.receiving',
      report.rss_first_200_mb.receiving,
      '<=',
      60,
      'MB at its first 200',
    ],
    [
      'rss_after_load_mb.calling',
      report.rss_after_load_mb.calling,
      '<=',
      90,
      'highest MB right after a round of its load',
    ],
    [
      'rss_after_load_mb.receiving',
      report.rss_after_load_mb.receiving,
      '<=',
      90,
      'highest MB right after a round of its load',
    ],
    ...(vsBaseline === undefined
      ? []
      : ([
          [
            'vs_baseline.chain_auth',
            vsBaseline.chain_auth,
            '>=',
            0.95,
            'chain-auth / the baseline chain-auth',
          ],
          [
            'vs_baseline.receiving_verify',
            vsBaseline.receiving_verify,
            '>=',
            0.95,
            'receiving-verify / the baseline receiving-verify',
          ],
          [
            'vs_baseline.cold_start_calling',
            vsBaseline.cold_start_calling,
            '<=',
            1.05,
            'spawn to first 200: calling / the baseline calling',
          ],
          [
            'vs_baseline.cold_start_receiving',
            vsBaseline.cold_start_receiving,
            '<=',
            1.05,
            'the same for receiving',
          ],
          [
            'vs_baseline.rss_after_load_calling',
            round3(vsBaseline.rss_after_load_calling),
            '<=',
            1.05,
            'RSS after load: calling / the baseline calling',
          ],
          [
            'vs_baseline.rss_after_load_receiving',
            round3(vsBaseline.rss_after_load_receiving),
            '<=',
            1.05,
            'the same for receiving',
          ],
        ] as [string, number, '>=' | '<=' | '=', number, string][])),
  ];
  const meets = {
    '>=': (v: number, t: number) => v >= t,
    '<=': (v: number, t: number) => v <= t,
    '=': (v: number, t: number) => v === t,
  };
  say();
  for (const [name, value, op, target, what] of targets) {
    say(
      `${name.padEnd(32)} ${String(value).padStart(7)}  target ${op} ${target}  ${meets[op](value, target) ? 'met' : 'MISSED'}  (${what})`,
    );
  }
  say(
    `cold burst: 200 requests on a fresh calling service, ${burstScenario.errors} errors, ${burstIdentityRequests} identity request(s)`,
  );
  say(
    `cold start (spawn to first 200, medians of ${options.spawns}): ${Object.entries(
      report.cold_start_ms,
    )
      .map(([k, v]) => `${k} ${v} ms`)
      .join(', ')}`,
  );
  say(
    `RSS at the first 200 (medians): ${Object.entries(report.rss_first_200_mb)
      .map(([k, v]) => `${k} ${v} MB`)
      .join(', ')}`,
  );
  say(
    `RSS after load (highest right after a round): ${Object.entries(report.rss_after_load_mb)
      .map(([k, v]) => `${k} ${v} MB`)
      .join(', ')}`,
  );
  const atLimit = report.memory_limit;
  if ('rss_after_load_mb' in atLimit) {
    say(
      `under the deployed memory limit (calling ${atLimit.mib.calling} MiB, receiving ${atLimit.mib.receiving} MiB, from deploy/*.yaml), ` +
        `with its NODE_OPTIONS (${atLimit.node_options.calling ?? 'none'}): RSS after load calling ${atLimit.rss_after_load_mb.calling} MB, ` +
        `receiving ${atLimit.rss_after_load_mb.receiving} MB; req/s ${limitLabel} / chain-auth ${atLimit.rps_vs_unlimited}`,
    );
    const bare = atLimit.without_node_options;
    say(
      `  the same without NODE_OPTIONS: RSS calling ${bare.rss_after_load_mb.calling} MB, receiving ${bare.rss_after_load_mb.receiving} MB; ` +
        `req/s ${limitLabel}-no-options / chain-auth ${bare.rps_vs_unlimited}`,
    );
  } else say(`under the deployed memory limit: not measured: ${atLimit.unavailable}`);
  if (options.json) {
    writeFileSync(options.json, `${JSON.stringify(report, null, 2)}\n`);
    say(`figures written to ${options.json}`);
  }
}

try {
  await main();
} finally {
  await Promise.all(started.map((s) => s.stop()));
  for (const group of groups) if ('remove' in group) group.remove();
}
