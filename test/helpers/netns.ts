import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A loopback-only network namespace with an /etc/hosts of its own (a mount namespace), where
 * Google's clients run so that nothing they do can leave the machine. It is held open by a
 * sleeping process; commands join it with nsenter. Needs root (CI and these machines run as root);
 * undefined elsewhere, and an error in CI, where its absence must not silently skip a check.
 */
export interface LoopbackNamespace {
  /** Runs a command inside, to its end. */
  run(
    command: string,
    args: string[],
    options?: { env?: NodeJS.ProcessEnv; timeoutMs?: number },
  ): Promise<Result>;
  /** Starts a long-running command inside. */
  spawn(command: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess;
  close(): void;
}

export async function loopbackNamespace(
  hosts: string,
  what: string,
): Promise<LoopbackNamespace | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'netns-'));
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, hosts);
  const holder = spawn(
    'unshare',
    [
      '--net',
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      `ip link set lo up && mount --bind '${hostsFile}' /etc/hosts && echo ready && exec sleep 3600`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let said = '';
  holder.stdout.on('data', (chunk) => (said += chunk));
  holder.stderr.on('data', (chunk) => (said += chunk));
  const ready = await new Promise<boolean>((resolve) => {
    holder.once('exit', () => resolve(false));
    holder.once('error', () => resolve(false));
    holder.stdout.on('data', () => said.includes('ready') && resolve(true));
  });
  if (!ready) {
    rmSync(dir, { recursive: true, force: true });
    const why = `no loopback-only network namespace (unshare as root): ${said.trim() || 'unshare failed'}`;
    if (process.env.CI) throw new Error(`${why}: ${what} cannot be checked`);
    console.warn(`${why}: ${what} not checked`);
    return undefined;
  }
  const enter = (command: string, args: string[]) => [
    '-t',
    String(holder.pid),
    '--net',
    '--mount',
    '--',
    command,
    ...args,
  ];
  return {
    run: (command, args, options = {}) =>
      new Promise<Result>((resolve) => {
        execFile(
          'nsenter',
          enter(command, args),
          { env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000 },
          (err, stdout, stderr) =>
            resolve({
              code: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
              stdout,
              stderr,
            }),
        );
      }),
    spawn: (command, args, env = process.env) =>
      spawn('nsenter', enter(command, args), { env, stdio: ['ignore', 'pipe', 'pipe'] }),
    close: () => {
      holder.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
