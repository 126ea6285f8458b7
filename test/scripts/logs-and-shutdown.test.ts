import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { connect } from 'node:net';
import { freePort, startService } from '../../scripts/lib/processes.js';
import { startLocalChain } from '../../scripts/lib/local-chain.js';
import { serve } from '../helpers/servers.js';
import { rawServer } from '../helpers/faults.js';

const JWT = /eyJ[\w-]{8,}\.[\w-]{8,}/;

describe('what the running services write (real processes)', () => {
  it('no token, or any part of one, appears in any log line or answer', async () => {
    const lines: string[] = [];
    const ports = {
      calling: await freePort(),
      receiving: await freePort(),
      metadata: await freePort(),
      admin: await freePort(),
    };
    const stateDir = mkdtempSync(join(tmpdir(), 'logs-'));
    const chain = await startLocalChain({
      ports,
      stateDir,
      baseEnv: { PATH: process.env.PATH, LOG_LEVEL: 'debug' },
      onLine: (name, line) => lines.push(`${name}: ${line}`),
    });
    const answers: string[] = [];
    let tokens: string[] = [];
    let access = '';
    let forged = '';
    const call = async (url: string, headers: Record<string, string> = {}) => {
      const res = await fetch(url, { headers });
      answers.push(`${res.status} ${JSON.stringify([...res.headers])} ${await res.text()}`);
      return res.status;
    };
    try {
      const mint = async (audience: string) =>
        (
          await fetch(
            `${chain.metadata.url}/computeMetadata/v1/instance/service-accounts/default/identity?audience=${encodeURIComponent(audience)}`,
            {
              headers: { 'Metadata-Flavor': 'Google' },
            },
          )
        ).text();
      const good = await mint(chain.receiving.url);
      const foreign = await mint('https://another-service.example');
      const tampered = good.replace(
        /\.[\w-]+\./,
        `.${Buffer.from('{"email":"x"}').toString('base64url')}.`,
      );
      // The Admin API's access tokens, good and forged, are no more logged than ID tokens.
      access = (
        (await (
          await fetch(
            `${chain.metadata.url}/computeMetadata/v1/instance/service-accounts/default/token`,
            {
              headers: { 'Metadata-Flavor': 'Google' },
            },
          )
        ).json()) as { access_token: string }
      ).access_token;
      forged = access.replace(/\.[\w-]+$/, `.${'A'.repeat(43)}`);
      tokens = [good, foreign, tampered];
      const iam = `${chain.adminUrl}v1/projects/${chain.projectId}/locations/us-central1/services/receiving`;
      for (const [token, status] of [
        [access, 200],
        [forged, 401],
        [good, 401],
      ] as const) {
        expect(await call(`${iam}:getIamPolicy`, { Authorization: `Bearer ${token}` })).toBe(
          status,
        );
      }
      const set = await fetch(`${iam}:setIamPolicy`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${access}` },
        body: JSON.stringify({
          policy: {
            bindings: [
              {
                role: 'roles/run.invoker',
                members: [`serviceAccount:${chain.calling.serviceAccount}`],
              },
            ],
          },
        }),
      });
      answers.push(await set.text());
      expect(set.status).toBe(200);

      expect(
        await call(`${chain.calling.url}/`, {
          traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
        }),
      ).toBe(200);
      expect(
        await call(`${chain.calling.url}/?token=${good}`, { Accept: 'application/json' }),
      ).toBe(200);
      expect(await call(`${chain.receiving.url}/`, { Authorization: `Bearer ${good}` })).toBe(200);
      expect(await call(`${chain.receiving.url}/`, { Authorization: `Bearer ${foreign}` })).toBe(
        401,
      );
      expect(await call(`${chain.receiving.url}/`, { Authorization: `Bearer ${tampered}` })).toBe(
        401,
      );
      expect(
        await call(`${chain.receiving.url}/`, {
          Authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0NTY3ODkwIn0.',
        }),
      ).toBe(401);
      expect(
        await call(`${chain.receiving.url}/nowhere?access_token=${good}`, {
          Authorization: `Bearer ${good}`,
        }),
      ).toBe(404);
    } finally {
      await chain.stop();
      rmSync(stateDir, { recursive: true, force: true });
    }
    const everything = [...lines, ...answers].join('\n');
    expect(lines.length).toBeGreaterThan(10);
    expect(everything.match(JWT)).toBeNull();
    // Nor any part of one: not a payload, not a signature, even on its own.
    expect(tokens).toHaveLength(3);
    for (const part of tokens.flatMap((token) => token.split('.').slice(1)))
      expect(everything).not.toContain(part);
    // An access token is `ya29.emulator-BODY.MAC`; BODY and MAC are base64url and may hold `-`.
    const opaque = (token: string) => token.slice('ya29.emulator-'.length).split('.');
    expect(opaque(access).map((part) => part.length > 40)).toEqual([true, true]);
    for (const part of [access, forged].flatMap(opaque)) expect(everything).not.toContain(part);
    expect(everything).toContain('set the IAM policy of receiving');
    // What was logged is still useful: the reasons and the caller are there.
    expect(everything).toContain(
      'aud is \\"https://another-service.example\\" but this service accepts',
    );
    expect(everything).toContain(chain.calling.serviceAccount);
  });
});

describe('DEBUG=* (real processes)', () => {
  it('prints nothing of a token in a request target: the bundles carry no debug logger', async () => {
    const token = `eyJhbGciOiJSUzI1NiJ9.${'eyJzdWIiOiJ4In0'}.${'c2lnbmF0dXJlLXNlZ21lbnQ'.repeat(2)}`;
    const lines: string[] = [];
    const receiving = await startService('receiving', {
      env: { PATH: process.env.PATH, TOKEN_CHECK: 'none', DEBUG: '*', LOG_LEVEL: 'debug' },
      port: await freePort(),
      onLine: (_name, line) => lines.push(line),
    });
    try {
      for (const target of [`/${token}`, `/?access_token=${token}`, `/x?token=${token}`]) {
        expect((await fetch(`${receiving.url}${target}`)).status).toBeGreaterThanOrEqual(200);
      }
    } finally {
      await receiving.stop();
    }
    expect(lines.length).toBeGreaterThan(2);
    for (const part of token.split('.')) expect(lines.join('\n')).not.toContain(part);
  });
});

describe('graceful shutdown (real processes)', () => {
  it('a request in flight when SIGTERM arrives completes with 200; new ones are refused; exit 0', async () => {
    let arrived!: () => void;
    const requestArrived = new Promise<void>((resolve) => (arrived = resolve));
    const slow = express();
    slow.get('/', (_req, res) => {
      arrived();
      setTimeout(() => res.type('text/plain').send('slow hello'), 1500);
    });
    const upstream = await serve(slow);
    const lines: string[] = [];
    const calling = await startService('calling', {
      env: { PATH: process.env.PATH, URL: upstream.url, AUTH: 'none' },
      port: await freePort(),
      onLine: (_name, line) => lines.push(line),
    });
    try {
      const inFlight = fetch(`${calling.url}/`).then(async (res) => [res.status, await res.text()]);
      await requestArrived;
      calling.child.kill('SIGTERM');
      // Once the signal is handled, the port takes no new connections (while the request is still open).
      let refused = false;
      for (let i = 0; i < 50 && !refused; i += 1) {
        refused = await fetch(`${calling.url}/health`).then(
          () => false,
          () => true,
        );
        if (!refused) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(refused).toBe(true);
      expect(await inFlight).toEqual([200, 'Second service says: slow hello']);
      const answeredAt = Date.now();
      expect(await calling.exited).toBe(0);
      // fetch keeps its connection alive: the service closes it once the answer is done. Left to
      // Node, it would stay for the 5 s keep-alive timeout, and the exit with it.
      expect(Date.now() - answeredAt).toBeLessThan(4000);
      expect(lines.filter((line) => line.includes('"shutting down"'))).toHaveLength(1);
    } finally {
      await calling.stop();
      await upstream.close();
    }
  });

  it('a second signal (SIGTERM, then SIGINT as Ctrl-C under npm start sends) changes nothing: the request in flight still gets its 200, exit 0', async () => {
    let arrived!: () => void;
    const requestArrived = new Promise<void>((resolve) => (arrived = resolve));
    const slow = express();
    slow.get('/', (_req, res) => {
      arrived();
      setTimeout(() => res.type('text/plain').send('slow hello'), 1000);
    });
    const upstream = await serve(slow);
    const lines: string[] = [];
    const calling = await startService('calling', {
      env: { PATH: process.env.PATH, URL: upstream.url, AUTH: 'none' },
      port: await freePort(),
      onLine: (_name, line) => lines.push(line),
    });
    try {
      const inFlight = fetch(`${calling.url}/`).then(async (res) => [res.status, await res.text()]);
      await requestArrived;
      calling.child.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 100));
      calling.child.kill('SIGTERM');
      calling.child.kill('SIGINT');
      expect(await inFlight).toEqual([200, 'Second service says: slow hello']);
      expect(await calling.exited).toBe(0);
      expect(lines.filter((line) => line.includes('"shutting down"'))).toHaveLength(1);
    } finally {
      await calling.stop();
      await upstream.close();
    }
  });

  it('a pipelined request waiting behind an answered one is answered too before the exit', async () => {
    let asked = 0;
    const slow = express();
    slow.get('/', (_req, res) => {
      asked += 1;
      const ms = asked === 1 ? 100 : 1500;
      setTimeout(() => res.type('text/plain').send(`after ${ms}`), ms);
    });
    const upstream = await serve(slow);
    const calling = await startService('calling', {
      env: { PATH: process.env.PATH, URL: upstream.url, AUTH: 'none' },
      port: await freePort(),
    });
    const socket = connect(Number(new URL(calling.url).port), '127.0.0.1');
    let got = '';
    socket.on('data', (chunk) => (got += String(chunk)));
    socket.on('error', () => undefined);
    try {
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n');
      for (let i = 0; i < 100 && !got.includes('after 100'); i += 1)
        await new Promise((resolve) => setTimeout(resolve, 20));
      expect(got).toContain('after 100');
      calling.child.kill('SIGTERM');
      expect(await calling.exited).toBe(0);
      expect(got.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
      expect(got).toContain('Second service says: after 1500');
    } finally {
      socket.destroy();
      await calling.stop();
      await upstream.close();
    }
  });

  it.each([
    ['a connection that never sent a request', ''],
    ['a connection that sent half a request', 'GET / HTTP/1.1\r\nHost: x\r\n'],
    ['a kept-alive connection, idle after its answer', 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n'],
    [
      'a kept-alive connection answered once, then sent half a request',
      'GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n',
    ],
  ])('%s does not hold the exit: exit 0, not 1 after the grace', async (_what, bytes) => {
    const receiving = await startService('receiving', {
      env: { PATH: process.env.PATH, TOKEN_CHECK: 'none' },
      port: await freePort(),
    });
    const socket = connect(Number(new URL(receiving.url).port), '127.0.0.1');
    try {
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.on('error', () => undefined);
      if (bytes !== '') socket.write(bytes);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const signalledAt = Date.now();
      receiving.child.kill('SIGTERM');
      expect(await receiving.exited).toBe(0);
      // Closed by the service at once, not by Node's 5 s keep-alive or headers timeouts.
      expect(Date.now() - signalledAt).toBeLessThan(4000);
    } finally {
      socket.destroy();
      await receiving.stop();
    }
  });

  it('a request stuck on a silent upstream does not hold the exit past its grace: exit 1 before Cloud Run’s SIGKILL at 10 s', async () => {
    const silent = await rawServer(() => undefined);
    const lines: string[] = [];
    const calling = await startService('calling', {
      env: {
        PATH: process.env.PATH,
        URL: silent.url.href,
        AUTH: 'none',
        UPSTREAM_TIMEOUT_MS: '60000',
      },
      port: await freePort(),
      onLine: (_name, line) => lines.push(line),
    });
    try {
      const stuck = fetch(`${calling.url}/`).then(
        (res) => res.status,
        () => 'cut off',
      );
      for (let i = 0; i < 100 && silent.requests() === 0; i += 1)
        await new Promise((resolve) => setTimeout(resolve, 20));
      expect(silent.requests()).toBe(1);
      const signalled = Date.now();
      calling.child.kill('SIGTERM');
      expect(await calling.exited).toBe(1);
      const tookMs = Date.now() - signalled;
      // The grace is 8 s: long enough for any request that is answering, short of the SIGKILL.
      expect(tookMs).toBeGreaterThanOrEqual(7000);
      expect(tookMs).toBeLessThan(10_000);
      expect(await stuck).toBe('cut off');
      expect(lines.join('\n')).toContain('requests still open after the grace period; exiting');
    } finally {
      await calling.stop();
      await silent.close();
    }
  }, 20_000);

  it('the metadata emulator answers the waits it holds (wait_for_change) and exits 0 at once, not after its grace', async () => {
    const emulator = await startService('metadata-emulator', {
      env: { PATH: process.env.PATH },
      port: await freePort(),
      readyPath: '/computeMetadata/v1/instance/id',
      readyHeaders: { 'Metadata-Flavor': 'Google' },
    });
    try {
      const url = `${emulator.url}/computeMetadata/v1/project/project-id?wait_for_change=true&timeout_sec=60`;
      const held = fetch(url, { headers: { 'Metadata-Flavor': 'Google' } }).then(async (res) => [
        res.status,
        await res.text(),
      ]);
      // Held: a plain request made after it is answered first.
      await fetch(`${emulator.url}/computeMetadata/v1/instance/id`, {
        headers: { 'Metadata-Flavor': 'Google' },
      });
      emulator.child.kill('SIGTERM');
      expect(await held).toEqual([200, 'local-project']);
      // The grace period (8 s) would end in exit 1.
      expect(await emulator.exited).toBe(0);
    } finally {
      await emulator.stop();
    }
  });
});
