import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as connectTcp, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from '../../scripts/lib/processes.js';

const launcher = fileURLToPath(new URL('../../dist/scripts/start-local.js', import.meta.url));
const localCommand = fileURLToPath(new URL('../../dist/scripts/local.js', import.meta.url));
const run = promisify(execFile);

/** "PID ARGS" of each child of a process, read from /proc (no ps in slim images). */
const childrenOf = (parent: number): string[] =>
  readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .flatMap((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid !== parent) return [];
        return [
          `${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim()}`,
        ];
      } catch {
        return []; // gone meanwhile
      }
    });

/** Whether a process runs (a zombie, dead but not yet reaped by its new parent, does not). */
const isAlive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};

type Ports = { calling: number; receiving: number; metadata: number; admin: number };

/** The launcher as `npm start` runs it, on the given ports; resolves once it says the chain is up. */
async function launch(ports: Ports, stateDir: string) {
  const child = spawn(process.execPath, [launcher], {
    env: {
      ...process.env,
      CALLING_PORT: String(ports.calling),
      RECEIVING_PORT: String(ports.receiving),
      METADATA_PORT: String(ports.metadata),
      ADMIN_PORT: String(ports.admin),
      LOCAL_STATE_DIR: stateDir,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout.on('data', (chunk) => (text += chunk));
  child.stderr.on('data', (chunk) => (text += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 20_000;
  while (
    !text.includes('Ctrl-C stops them all') &&
    child.exitCode === null &&
    Date.now() < deadline
  ) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, output: () => text, exited };
}

describe('npm start (the built launcher, as a real process)', () => {
  it('starts each service from deploy/ behind its Cloud Run front, serves the chain, and Ctrl-C stops them all', async () => {
    const ports = {
      calling: await freePort(),
      receiving: await freePort(),
      metadata: await freePort(),
      admin: await freePort(),
    };
    const stateDir = mkdtempSync(join(tmpdir(), 'start-'));
    const { child, output, exited } = await launch(ports, stateDir);
    let pids: number[] = [];
    try {
      const services = childrenOf(child.pid!);
      pids = services.map((line) => Number.parseInt(line, 10));
      expect(output()).toContain(`curl http://127.0.0.1:${ports.calling}`);
      expect(
        services.map((line) => line.match(/(?:bundle|local)\/([a-z-]+)\/main\.m?js/)?.[1]).sort(),
      ).toEqual(['calling', 'metadata-emulator', 'metadata-emulator', 'receiving']);
      // Each service has its own metadata server reporting its own account; both sign with one key set.
      const receivingMetadata =
        /receiving has its own, reporting its account, at (http:\/\/127\.0\.0\.1:\d+)/.exec(
          output(),
        )![1]!;
      const ask = async (base: string, path: string) =>
        (
          await fetch(`${base}/computeMetadata/v1/${path}`, {
            headers: { 'Metadata-Flavor': 'Google' },
          })
        ).text();
      const callingMetadata = `http://127.0.0.1:${ports.metadata}`;
      expect(await ask(callingMetadata, 'instance/service-accounts/default/email')).toBe(
        'cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com',
      );
      expect(await ask(receivingMetadata, 'instance/service-accounts/default/email')).toBe(
        'cloudrun-receiving-sa@local-project.iam.gserviceaccount.com',
      );
      const jwks = async (base: string) => (await fetch(`${base}/oauth2/v3/certs`)).json();
      expect(await jwks(receivingMetadata)).toEqual(await jwks(callingMetadata));
      expect(statSync(join(stateDir, 'metadata-signing-key.pem')).mode & 0o777).toBe(0o600);

      const chain = await fetch(`http://127.0.0.1:${ports.calling}/`);
      expect(chain.status).toBe(200);
      expect(await chain.text()).toBe('Second service says: Hello World!');
      // receiving is private behind its Cloud Run front: no token, Cloud Run's 403.
      const direct = await fetch(`http://127.0.0.1:${ports.receiving}/`);
      expect(direct.status).toBe(403);
      expect(await direct.text()).toContain(
        'Your client does not have permission to get URL <code>/</code> from this server.',
      );
      // The front's log line reaches the launcher's output() a moment after the answer.
      for (
        let i = 0;
        i < 100 && !output().includes('receiving front refused GET / with 403');
        i += 1
      )
        await new Promise((r) => setTimeout(r, 20));
      expect(output()).toContain('receiving front refused GET / with 403');
      // receiving runs as deployed: TOKEN_CHECK=platform, its own account, from deploy/receiving.yaml.
      expect(output()).toContain(
        'TOKEN_CHECK=platform, runs as cloudrun-receiving-sa@local-project.iam.gserviceaccount.com',
      );
      expect(output()).toContain(
        'runs as cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com',
      );

      // A token the emulator minted for another audience: Cloud Run's 401.
      const foreign = await (
        await fetch(
          `http://127.0.0.1:${ports.metadata}/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://elsewhere.example`,
          {
            headers: { 'Metadata-Flavor': 'Google' },
          },
        )
      ).text();
      expect(
        (
          await fetch(`http://127.0.0.1:${ports.receiving}/`, {
            headers: { Authorization: `Bearer ${foreign}` },
          })
        ).status,
      ).toBe(401);

      // The local policy command changes what the running front enforces, within a second.
      const binding = [
        'receiving',
        '--member=serviceAccount:cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com',
        '--role=roles/run.invoker',
      ];
      const policy = (verb: string, ...args: string[]) =>
        run(
          process.execPath,
          [localCommand, 'run', 'services', verb, ...args, '--region=us-central1'],
          {
            env: { ...process.env, LOCAL_STATE_DIR: stateDir },
          },
        );
      const within = async (ms: number, check: () => Promise<boolean>) => {
        const started = Date.now();
        while (!(await check())) {
          if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      };
      expect((await policy('get-iam-policy', 'receiving')).stdout).toContain(
        'serviceAccount:cloudrun-authenticated-sa@local-project.iam.gserviceaccount.com',
      );
      await policy('remove-iam-policy-binding', ...binding);
      await within(1000, async () => {
        const res = await fetch(`http://127.0.0.1:${ports.calling}/`);
        return res.status === 502 && (await res.text()).includes('answered 403');
      });
      await policy('add-iam-policy-binding', ...binding);
      await within(
        1000,
        async () => (await fetch(`http://127.0.0.1:${ports.calling}/`)).status === 200,
      );

      // A second chain on the same state directory would reset the policies under this one: refused.
      const second = await run(process.execPath, [launcher], {
        env: {
          ...process.env,
          CALLING_PORT: '0',
          RECEIVING_PORT: '0',
          METADATA_PORT: '0',
          ADMIN_PORT: '0',
          LOCAL_STATE_DIR: stateDir,
        },
        timeout: 30_000,
      }).catch((err: { code: number; stderr: string }) => err);
      expect(second).toMatchObject({ code: 1 });
      expect((second as { stderr: string }).stderr).toContain(
        `could not start the chain: another chain (pid ${child.pid}) is running with its state in ${stateDir}: stop it, or give this one another LOCAL_STATE_DIR`,
      );
      expect((await fetch(`http://127.0.0.1:${ports.calling}/`)).status).toBe(200);
      // It says how to reach it while it runs, and takes that back when it stops.
      expect(JSON.parse(readFileSync(join(stateDir, 'chain.json'), 'utf8'))).toMatchObject({
        admin: `http://localhost:${ports.admin}/`,
        metadataHost: `127.0.0.1:${ports.metadata}`,
      });
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(output()).toContain('all services stopped');
      expect(readdirSync(stateDir)).not.toContain('chain.json');
      expect(readdirSync(stateDir)).not.toContain('chain.lock');
      expect(pids.filter(isAlive)).toEqual([]);
      for (const port of Object.values(ports)) {
        await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
      }
    } finally {
      // Should the test fail midway, leave nothing running.
      if (child.exitCode === null) child.kill('SIGKILL');
      pids.filter(isAlive).forEach((pid) => process.kill(pid, 'SIGKILL'));
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

/** A request written byte for byte on a connection of its own, dropped after `afterMs` or once answered. */
const hostile = (port: number, request: string, afterMs: number) =>
  new Promise<void>((resolve) => {
    const socket = connectTcp(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.on('data', () => socket.destroy());
    socket.once('close', () => resolve());
    socket.write(request, () => setTimeout(() => socket.destroy(), afterMs));
  });

describe('npm start under attack, then killed outright', () => {
  it('keeps serving through hostile requests, then takes every process with it on SIGKILL', async () => {
    const ports = {
      calling: await freePort(),
      receiving: await freePort(),
      metadata: await freePort(),
      admin: await freePort(),
    };
    const stateDir = mkdtempSync(join(tmpdir(), 'start-'));
    const { child, output, exited } = await launch(ports, stateDir);
    let pids: number[] = [];
    try {
      expect(output()).toContain('Ctrl-C stops them all');
      pids = childrenOf(child.pid!).map((line) => Number.parseInt(line, 10));
      expect(pids).toHaveLength(4);
      // Odd targets and clients that vanish, at both fronts and the Admin API (bounded: 10 rounds of 24 requests each).
      const targets = [
        '//',
        '///',
        'http://[::1',
        `//127.0.0.1:${ports.metadata}/`,
        `http://127.0.0.1:${ports.metadata}/`,
        '*',
      ];
      for (let round = 0; round < 10; round += 1) {
        await Promise.all(
          [ports.calling, ports.receiving, ports.admin].flatMap((port) => [
            ...targets.map((target) =>
              hostile(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 0),
            ),
            hostile(
              port,
              'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer x.y.z\r\n\r\n',
              0,
            ),
            hostile(
              port,
              'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50\r\n\r\nhalf',
              5,
            ),
          ]),
        );
      }
      const chain = await fetch(`http://127.0.0.1:${ports.calling}/`);
      expect(await chain.text()).toBe('Second service says: Hello World!');
      expect(child.exitCode).toBeNull();
      expect(output()).not.toContain('front failed');
      expect(output()).not.toContain('the local Admin API failed');

      child.kill('SIGKILL');
      expect(await exited).toBeNull();
      for (let i = 0; i < 100 && pids.some(isAlive); i += 1)
        await new Promise((resolve) => setTimeout(resolve, 50));
      expect(pids.filter(isAlive)).toEqual([]);
      // Nothing listens on the chain's ports any more (the fronts died with the launcher itself).
      // Asked by connecting: binding the port to check it can collide with one of this test's
      // own client sockets, which the kernel may have given the same number.
      for (const port of Object.values(ports)) {
        await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
      }
      // Its lock names a process that is gone: the next start takes the state directory over.
      expect(readFileSync(join(stateDir, 'chain.lock'), 'utf8')).toBe(String(child.pid));
      const again = await launch(
        {
          calling: await freePort(),
          receiving: await freePort(),
          metadata: await freePort(),
          admin: await freePort(),
        },
        stateDir,
      );
      expect(again.output()).toContain('Ctrl-C stops them all');
      again.child.kill('SIGINT');
      expect(await again.exited).toBe(0);
    } finally {
      pids.filter(isAlive).forEach((pid) => process.kill(pid, 'SIGKILL'));
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

describe('npm start with a port taken', () => {
  it('exits 1 naming the port and the variable that moves it, and leaves nothing running', async () => {
    const holder = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => holder.once('listening', resolve));
    const taken = (holder.address() as { port: number }).port;
    const stateDir = mkdtempSync(join(tmpdir(), 'start-'));
    try {
      const metadataPort = await freePort();
      const child = spawn(process.execPath, [launcher], {
        env: {
          ...process.env,
          CALLING_PORT: String(await freePort()),
          RECEIVING_PORT: String(taken),
          METADATA_PORT: String(metadataPort),
          LOCAL_STATE_DIR: stateDir,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect(code).toBe(1);
      expect(stderr).toContain(
        `port ${taken} on 127.0.0.1 (receiving's front) is already in use: stop what holds it or set RECEIVING_PORT`,
      );
      // The metadata emulator had started before the front failed: it was stopped again, the state directory given back.
      await expect(fetch(`http://127.0.0.1:${metadataPort}/`)).rejects.toThrow();
      expect(readdirSync(stateDir)).not.toContain('chain.lock');
    } finally {
      holder.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
