import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createSigningKey } from '../../local/metadata-emulator/signing-key.js';
import {
  nodeArgsOf,
  freePort,
  startService,
  type ServiceName,
} from '../../scripts/lib/processes.js';
import { nowS } from '../helpers/servers.js';

const run = promisify(execFile);

/** Runs a built service with only the given env; resolves with its exit code and stderr. */
async function startWith(name: ServiceName, env: Record<string, string>) {
  try {
    await run(process.execPath, nodeArgsOf(name), {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', ...env },
      timeout: 10_000,
    });
    return { code: 0, stderr: '' };
  } catch (err) {
    const { code, stderr } = err as { code: number; stderr: string };
    return { code, stderr };
  }
}

describe('services refuse to start on bad configuration (real processes)', () => {
  it('calling without URL exits 1 naming URL', async () => {
    const { code, stderr } = await startWith('calling', { PORT: String(await freePort()) });
    expect(code).toBe(1);
    expect(stderr).toContain("URL is required: the receiving service's URL");
    expect(stderr).toContain('refusing to start');
  });

  it('receiving in verify mode without AUDIENCES exits 1 naming AUDIENCES', async () => {
    const { code, stderr } = await startWith('receiving', { PORT: String(await freePort()) });
    expect(code).toBe(1);
    expect(stderr).toContain('AUDIENCES is required with TOKEN_CHECK=verify');
  });

  it('names every bad variable at once', async () => {
    const { code, stderr } = await startWith('receiving', {
      PORT: 'http',
      TOKEN_CHECK: 'strict',
      INVOKERS: 'bob',
    });
    expect(code).toBe(1);
    for (const name of ['PORT', 'TOKEN_CHECK', 'AUDIENCES', 'INVOKERS'])
      expect(stderr).toContain(`- ${name} `);
  });

  it('says which port is taken when it cannot listen', async () => {
    const holder = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => holder.once('listening', resolve));
    const port = String((holder.address() as { port: number }).port);
    try {
      const { code, stderr } = await startWith('receiving', { PORT: port, TOKEN_CHECK: 'none' });
      expect(code).toBe(1);
      expect(stderr).toContain(
        `port ${port} on 127.0.0.1 is already in use: stop what holds it or set PORT`,
      );
    } finally {
      holder.close();
    }
  });

  it('says HOST is not an address of this machine when it names another', async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never this machine's, and a bind to it sends nothing.
    const { code, stderr } = await startWith('receiving', {
      HOST: '192.0.2.1',
      PORT: String(await freePort()),
      TOKEN_CHECK: 'none',
    });
    expect(code).toBe(1);
    expect(stderr).toContain(
      'HOST 192.0.2.1 is not an address of this machine\nrefusing to start.',
    );
  });

  it.each(['calling', 'receiving', 'metadata-emulator'] as const)(
    '%s refuses an unknown LOG_LEVEL, naming it and the levels it takes, with no stack trace',
    async (name) => {
      const env = {
        PORT: String(await freePort()),
        LOG_LEVEL: 'verbose',
        URL: 'http://127.0.0.1:9',
        AUDIENCES: 'https://r.example',
      };
      const { code, stderr } = await startWith(name, env);
      expect(code).toBe(1);
      expect(stderr).toContain(
        'LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent, got "verbose"',
      );
      expect(stderr).toContain('refusing to start');
      expect(stderr).not.toMatch(/\n\s+at /);
    },
  );

  it.each([
    ['GCE_METADATA_HOST', 'http://127.0.0.1:8082'],
    ['GCE_METADATA_HOST', '127.0.0.1:8082/computeMetadata/v1'],
    ['GCE_METADATA_IP', 'garbage!'],
    ['GCE_METADATA_HOST', '256.1.1.1'],
  ])(
    'calling and receiving refuse %s=%s: host[:port], no scheme or path',
    async (variable, value) => {
      for (const name of ['calling', 'receiving'] as const) {
        const env = {
          PORT: String(await freePort()),
          URL: 'http://127.0.0.1:9',
          AUDIENCES: 'https://r.example',
          [variable]: value,
        };
        const { code, stderr } = await startWith(name, env);
        expect([name, code]).toEqual([name, 1]);
        expect(stderr).toContain(
          `${variable} must be host[:port] with no scheme or path (e.g. 127.0.0.1:8082), got "${value}"`,
        );
        expect(stderr).not.toMatch(/\n\s+at /);
      }
    },
  );

  it('the emulator refuses a SERVICE_ACCOUNT that is not an email', async () => {
    const { code, stderr } = await startWith('metadata-emulator', {
      PORT: String(await freePort()),
      SERVICE_ACCOUNT: 'me',
    });
    expect(code).toBe(1);
    expect(stderr).toContain('SERVICE_ACCOUNT must be a service account email');
  });

  it('the emulator refuses a SIGNING_KEY_FILE that is missing or not an RSA key, naming it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'key-'));
    try {
      const missing = join(dir, 'none.pem');
      const gone = await startWith('metadata-emulator', {
        PORT: String(await freePort()),
        SIGNING_KEY_FILE: missing,
      });
      expect(gone.code).toBe(1);
      expect(gone.stderr).toContain(`SIGNING_KEY_FILE ${missing}: no such file`);
      const ec = join(dir, 'ec.pem');
      writeFileSync(
        ec,
        generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
          type: 'pkcs8',
          format: 'pem',
        }),
      );
      const wrong = await startWith('metadata-emulator', {
        PORT: String(await freePort()),
        SIGNING_KEY_FILE: ec,
      });
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain(
        `SIGNING_KEY_FILE ${ec}: an RSA key is needed for RS256, not ec`,
      );
      expect(wrong.stderr).toContain('refusing to start');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('services stop on SIGTERM (real processes)', () => {
  it.each([
    ['receiving', { TOKEN_CHECK: 'none' }],
    ['calling', { URL: 'http://127.0.0.1:9' }],
  ] as const)('%s exits 0 after SIGTERM', async (name, env) => {
    const service = await startService(name, {
      env: { PATH: process.env.PATH, ...env },
      port: await freePort(),
    });
    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
  });

  it('exits on SIGTERM even when nobody reads its output any more (a launcher killed with -9)', async () => {
    const service = await startService('receiving', {
      env: { PATH: process.env.PATH, TOKEN_CHECK: 'none' },
      port: await freePort(),
    });
    service.child.stdout?.destroy();
    service.child.stderr?.destroy();
    service.child.kill('SIGTERM');
    const timer = setTimeout(() => service.child.kill('SIGKILL'), 5000);
    const code = await service.exited;
    clearTimeout(timer);
    expect(code).toBe(0);
  });
});

describe('receiving trusts an https key server through NODE_EXTRA_CA_CERTS (a real process)', () => {
  it('verifies a token against keys fetched over https from a server that certificate signs', async () => {
    const key = await createSigningKey();
    const fixtures = new URL('../fixtures/tls/', import.meta.url);
    const keyServer = https.createServer(
      {
        key: readFileSync(new URL('loopback.key', fixtures)),
        cert: readFileSync(new URL('loopback.crt', fixtures)),
      },
      (_req, res) => {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify(key.jwks));
      },
    );
    await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve));
    const audience = 'https://receiving.example';
    const receiving = await startService('receiving', {
      env: {
        PATH: process.env.PATH,
        AUDIENCES: audience,
        JWKS_URL: `https://127.0.0.1:${(keyServer.address() as { port: number }).port}/certs`,
        NODE_EXTRA_CA_CERTS: fileURLToPath(new URL('loopback.crt', fixtures)),
      },
      port: await freePort(),
    });
    try {
      const token = await key.sign({
        aud: audience,
        iss: 'https://accounts.google.com',
        sub: '1',
        iat: nowS(),
        exp: nowS() + 3600,
      });
      const answer = await fetch(receiving.url, { headers: { authorization: `Bearer ${token}` } });
      expect([answer.status, await answer.text()]).toEqual([200, 'Hello World!']);
    } finally {
      await receiving.stop();
      keyServer.closeAllConnections();
      keyServer.close();
    }
  });
});
