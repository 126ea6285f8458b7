import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A service running as its own node process, as it would in its own container. */
export interface ServiceProcess {
  name: string;
  /** Milliseconds from spawn to the first 200 on the readiness path. */
  readyAfterMs: number;
  url: string;
  child: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export type ServiceName = 'calling' | 'receiving' | 'metadata-emulator';

/** The repository's dist/ folder, whether this runs from source (ts-jest) or from dist. */
function distDir(): string {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  return basename(root) === 'dist' ? root : join(root, 'dist');
}

/**
 * The file each service runs from: for the deployed services the bundle the images ship
 * (dist/bundle/NAME/main.mjs, made by scripts/bundle.ts), for the emulator tsc's output.
 */
export function entryOf(name: ServiceName): string {
  const dist = distDir();
  return name === 'metadata-emulator'
    ? join(dist, 'local', name, 'main.js')
    : join(dist, 'bundle', name, 'main.mjs');
}

/**
 * Node's flags for the deployed services, the same in the Dockerfiles' CMD and package.json's
 * start scripts (a test holds them together). DEP0169: Express's URL parser (parseurl) calls
 * url.parse() for a request target that is not a plain path (absolute-form, or holding a space or
 * `#`); Node 24+ warns about url.parse() in code outside node_modules, which a bundle is, so
 * without this the first such request would print that warning.
 * No heap flags: see docs/performance.md (they cost req/s and, on Node 20, start-up time).
 */
export const SERVICE_NODE_FLAGS = ['--disable-warning=DEP0169'] as const;

/** The arguments after `node` that start a service. */
export function nodeArgsOf(name: ServiceName): string[] {
  return name === 'metadata-emulator' ? [entryOf(name)] : [...SERVICE_NODE_FLAGS, entryOf(name)];
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

export interface StartOptions {
  env: Record<string, string | undefined>;
  port: number;
  /** Each output line of the child; none are shown when absent. */
  onLine?: ((name: string, line: string) => void) | undefined;
  /** How to tell it is ready: a path answering 200 and the headers to send. */
  readyPath?: string;
  readyHeaders?: Record<string, string>;
  readyTimeoutMs?: number;
  /** How often to ask whether it is ready (default 50 ms; the benchmark asks more often). */
  readyPollMs?: number;
  /** A command that runs node's command line after it (the benchmark's memory cgroup); its process becomes node. */
  wrap?: readonly string[];
}

/**
 * What makes a child die with this process, however this process dies (SIGKILL included): on
 * Linux, util-linux's setpriv asks the kernel for SIGKILL at the parent's death (PR_SET_PDEATHSIG),
 * then runs the command in its own place, so the child keeps its pid. Where there is no setpriv
 * (not Linux), nothing: a child outlives a parent that dies without stopping it.
 */
const DIE_WITH_PARENT: readonly string[] = ['/usr/bin/setpriv', '/bin/setpriv']
  .filter((path) => existsSync(path))
  .slice(0, 1)
  .flatMap((path) => [path, '--pdeathsig', 'KILL', '--']);

export function startService(name: ServiceName, options: StartOptions): Promise<ServiceProcess> {
  return startProcess(name, nodeArgsOf(name), options);
}

/** Any node script (its path, or node's arguments) as a service process (the benchmark's baselines). */
export async function startProcess(
  name: string,
  entry: string | string[],
  options: StartOptions,
): Promise<ServiceProcess> {
  const spawnedAt = performance.now();
  const command = [
    ...DIE_WITH_PARENT,
    ...(options.wrap ?? []),
    process.execPath,
    ...(typeof entry === 'string' ? [entry] : entry),
  ];
  const child = spawn(command[0]!, command.slice(1), {
    env: { ...cleanEnv(options.env), PORT: String(options.port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const stream of [child.stdout, child.stderr]) {
    const lines = createInterface({ input: stream });
    lines.on('line', (line) => options.onLine?.(name, line));
  }
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const url = `http://127.0.0.1:${options.port}`;
  const service: ServiceProcess = {
    name,
    readyAfterMs: 0,
    url,
    child,
    exited,
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  try {
    await waitUntilReady(
      service,
      options.readyPath ?? '/health',
      options.readyHeaders ?? {},
      options.readyTimeoutMs ?? 15_000,
      options.readyPollMs ?? 50,
    );
    service.readyAfterMs = performance.now() - spawnedAt;
  } catch (err) {
    await service.stop();
    throw err;
  }
  return service;
}

async function waitUntilReady(
  service: ServiceProcess,
  path: string,
  headers: Record<string, string>,
  timeoutMs: number,
  pollMs: number,
): Promise<void> {
  let exitCode: number | null | undefined;
  void service.exited.then((code) => (exitCode = code));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exitCode !== undefined)
      throw new Error(`${service.name} exited with code ${exitCode} before it was ready`);
    try {
      const response = await fetch(`${service.url}${path}`, {
        headers,
        signal: AbortSignal.timeout(1000),
      });
      await response.arrayBuffer();
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  throw new Error(`${service.name} was not ready at ${service.url}${path} within ${timeoutMs} ms`);
}

/** Drops undefined values (an explicit undefined removes an inherited variable). */
function cleanEnv(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
}
