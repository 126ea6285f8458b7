import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../scripts/lib/processes.js';

const launcher = fileURLToPath(new URL('../../dist/scripts/start-local.js', import.meta.url));

/** "PID ARGS" of each child of a process, read from /proc (no ps in slim images). */
const childrenOf = (parent: number): string[] =>
  readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .flatMap((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid !== parent) return [];
        return [`${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim()}`];
      } catch {
        return []; // gone meanwhile
      }
    });

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm start (the built launcher, as a real process)', () => {
  it('starts the three services, serves the chain, and Ctrl-C stops them all', async () => {
    const ports = { calling: await freePort(), receiving: await freePort(), metadata: await freePort() };
    const child = spawn(process.execPath, [launcher], {
      env: {
        ...process.env,
        CALLING_PORT: String(ports.calling),
        RECEIVING_PORT: String(ports.receiving),
        METADATA_PORT: String(ports.metadata),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    let pids: number[] = [];
    try {
      const deadline = Date.now() + 20_000;
      while (!output.includes('Ctrl-C stops all three') && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const services = childrenOf(child.pid!);
      pids = services.map((line) => Number.parseInt(line, 10));
      expect(output).toContain(`curl http://127.0.0.1:${ports.calling}`);
      expect(services.map((line) => line.match(/(?:services|local)\/([a-z-]+)\/main\.js/)?.[1]).sort()).toEqual([
        'calling',
        'metadata-emulator',
        'receiving',
      ]);

      const chain = await fetch(`http://127.0.0.1:${ports.calling}/`);
      expect(chain.status).toBe(200);
      expect(await chain.text()).toBe('Second service says: Hello World!');
      const direct = await fetch(`http://127.0.0.1:${ports.receiving}/`);
      expect(direct.status).toBe(401);

      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(output).toContain('all services stopped');
      expect(pids.filter(isAlive)).toEqual([]);
      for (const port of Object.values(ports)) {
        await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
      }
    } finally {
      // Should the test fail midway, leave nothing running.
      if (child.exitCode === null) child.kill('SIGKILL');
      pids.filter(isAlive).forEach((pid) => process.kill(pid, 'SIGKILL'));
    }
  });
});
