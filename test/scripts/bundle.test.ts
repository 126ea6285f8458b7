/**
 * The bundles the images ship (dist/bundle/NAME/, made by `npm run build`), run as processes from
 * a copy outside the repository, where no node_modules can be found: what an image holds.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { isBuiltin, SourceMap } from 'node:module';
import { tmpdir } from 'node:os';
import { SourceTextModule } from 'node:vm';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import {
  entryOf,
  freePort,
  nodeArgsOf,
  SERVICE_NODE_FLAGS,
  startProcess,
  type ServiceProcess,
} from '../../scripts/lib/processes.js';
import { startGoogleApis } from '../helpers/google-apis.js';
import { startEmulator, type RunningEmulator } from '../helpers/servers.js';

const repo = new URL('../../', import.meta.url);
const bundleDir = (service: 'calling' | 'receiving') => join(entryOf(service), '..');

describe('the bundles, run where no node_modules can be found (as in the images)', () => {
  let outside: string;
  let emulator: RunningEmulator;
  const started: ServiceProcess[] = [];

  beforeAll(async () => {
    outside = mkdtempSync(join(tmpdir(), 'bundle-'));
    for (const service of ['calling', 'receiving'] as const)
      cpSync(bundleDir(service), join(outside, service), { recursive: true });
    emulator = await startEmulator();
  });
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.stop()));
  });
  afterAll(async () => {
    await emulator.close();
    rmSync(outside, { recursive: true, force: true });
  });

  const start = async (name: string, file: string, env: Record<string, string>, port?: number) => {
    const lines: string[] = [];
    const service = await startProcess(name, [...SERVICE_NODE_FLAGS, file], {
      env: { PATH: process.env.PATH, ...env },
      port: port ?? (await freePort()),
      onLine: (_name, line) => lines.push(line),
    });
    started.push(service);
    return { service, lines };
  };

  /** receiving from its copied bundle, verifying the emulator's tokens for its own URL. */
  const startReceiving = async (invoker = emulator.config.serviceAccount) => {
    const port = await freePort();
    const env = {
      TOKEN_CHECK: 'verify',
      AUDIENCES: `http://127.0.0.1:${port}`,
      JWKS_URL: emulator.jwksUrl.href,
      INVOKERS: `serviceAccount:${invoker}`,
    };
    return (await start('receiving', join(outside, 'receiving', 'main.mjs'), env, port)).service;
  };

  it('the metadata path: the chain answers, and never loads the lazy google-auth-library file (removed here)', async () => {
    const copy = mkdtempSync(join(tmpdir(), 'bundle-calling-'));
    try {
      cpSync(join(outside, 'calling'), copy, { recursive: true });
      rmSync(join(copy, 'google-auth-library.mjs'));
      const receiving = await startReceiving();
      const { service: calling, lines } = await start('calling', join(copy, 'main.mjs'), {
        URL: receiving.url,
        GCE_METADATA_HOST: emulator.host,
      });
      const response = await fetch(`${calling.url}/`);
      expect([response.status, await response.text()]).toEqual([
        200,
        'Second service says: Hello World!',
      ]);
      // Not a terminal: one JSON object per line, for Cloud Logging.
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(() => JSON.parse(line) as unknown).not.toThrow();
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('the key-file path: google-auth-library, loaded from its own file on first use, signs with the key and its token gets through', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'key-file-'));
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const account = 'key-file-caller@demo-project.iam.gserviceaccount.com';
    writeFileSync(
      join(dir, 'key.json'),
      JSON.stringify({
        type: 'service_account',
        project_id: 'demo-project',
        private_key_id: 'test-key-1',
        private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
        client_email: account,
        client_id: '1234567890',
        token_uri: 'https://oauth2.googleapis.com/token',
      }),
    );
    const receiving = await startReceiving(account);
    const google = await startGoogleApis({ key: emulator.key, keys: { [account]: publicKey } });
    try {
      const { service: calling } = await start('calling', join(outside, 'calling', 'main.mjs'), {
        URL: receiving.url,
        GOOGLE_APPLICATION_CREDENTIALS: join(dir, 'key.json'),
        ...google.env,
      });
      const response = await fetch(`${calling.url}/`);
      expect([response.status, await response.text()]).toEqual([
        200,
        'Second service says: Hello World!',
      ]);
      expect(google.requests).toHaveLength(1);
      expect(google.requests[0]).toMatchObject({ host: 'oauth2.googleapis.com', path: '/token' });
      expect(decodeJwt(String(google.requests[0]!.body.assertion))).toMatchObject({
        iss: account,
        aud: 'https://oauth2.googleapis.com/token',
        target_audience: receiving.url,
      });
    } finally {
      await google.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on a terminal, logs are human-readable where pino-pretty is installed, and JSON where it is not (the images)', async () => {
    // `script` gives the service a terminal.
    const check = async (file: string) => {
      const child = spawn(
        'script',
        ['-qefc', `'${process.execPath}' ${SERVICE_NODE_FLAGS.join(' ')} '${file}'`, '/dev/null'],
        {
          env: {
            PATH: process.env.PATH ?? '',
            HOST: '127.0.0.1',
            PORT: String(await freePort()),
            TOKEN_CHECK: 'none',
            TERM: 'dumb',
          },
        },
      );
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      for (let i = 0; i < 200 && !output.includes('TOKEN_CHECK=none'); i += 1)
        await new Promise((resolve) => setTimeout(resolve, 25));
      // script's own SIGTERM handling waits seconds; killed, it closes the terminal and the service gets SIGHUP.
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      return output;
    };
    const inRepo = await check(entryOf('receiving'));
    expect(inRepo).toMatch(/INFO.*receiving listening on 127\.0\.0\.1:\d+/);
    expect(inRepo).not.toContain('{"severity"');
    // Cloud Logging's severities by their names, WARNING included (pino-pretty's stream mode printed USERLVL).
    expect(inRepo).toMatch(/WARNING: TOKEN_CHECK=none: every request is answered/);
    const inImage = await check(join(outside, 'receiving', 'main.mjs'));
    expect(inImage).toMatch(
      /\{"severity":"INFO".*"message":"receiving listening on 127\.0\.0\.1:\d+"\}/,
    );
  });
});

describe('what the bundles are made of', () => {
  it('each service is one main.mjs that imports nothing but Node built-ins and, for calling, its lazy google-auth-library file', () => {
    for (const service of ['calling', 'receiving'] as const) {
      const code = readFileSync(entryOf(service), 'utf8');
      // V8's own reading of the module's static imports (jest runs with --experimental-vm-modules).
      const staticImports = new SourceTextModule(code).dependencySpecifiers;
      expect(staticImports.filter((name) => !name.startsWith('node:'))).toEqual([]);
      const requires = [...code.matchAll(/\brequire\(["']([^"']+)["']\)/g)].map((m) => m[1]!);
      // Node built-ins only (esbuild keeps them as require calls), never a package.
      expect(requires.filter((name) => !isBuiltin(name))).toEqual([]);
      const lazy = [...code.matchAll(/\bimport\(["']([^"']+)["']\)/g)].map((m) => m[1]);
      expect(lazy).toEqual(service === 'calling' ? ['./google-auth-library.mjs'] : []);
      expect(readdirSync(bundleDir(service)).sort()).toEqual(
        service === 'calling'
          ? ['google-auth-library.mjs', 'google-auth-library.mjs.map', 'main.mjs', 'main.mjs.map']
          : ['main.mjs', 'main.mjs.map'],
      );
    }
  });

  it("holds no require of Node's deprecated punycode (Node 22+ reports it on stderr for code outside node_modules)", () => {
    for (const service of ['calling', 'receiving'] as const) {
      expect(readFileSync(entryOf(service), 'utf8')).not.toMatch(
        /require\(["'](?:node:)?punycode["']\)/,
      );
    }
  });

  it('its source map points stack-trace positions at the .ts lines they came from', () => {
    const file = entryOf('receiving');
    const lines = readFileSync(file, 'utf8').split('\n');
    const map = new SourceMap(
      JSON.parse(readFileSync(`${file}.map`, 'utf8')) as ConstructorParameters<typeof SourceMap>[0],
    );
    const line = lines.findIndex((text) => text.includes('refusing to start.'));
    const column = lines[line]!.indexOf('refusing to start.');
    const entry = map.findEntry(line, column) as { originalSource?: string; originalLine?: number };
    expect(entry.originalSource).toMatch(/services\/shared\/server\.ts$/);
    const source = readFileSync(
      new URL(entry.originalSource!.replace(/^(\.\.\/)+/, ''), repo),
      'utf8',
    ).split('\n');
    expect(source[entry.originalLine!]).toContain('refusing to start');
  });

  it('starts with the same node flags in the Dockerfiles, package.json and every local way of running it', () => {
    const scripts = (
      JSON.parse(readFileSync(new URL('package.json', repo), 'utf8')) as {
        scripts: Record<string, string>;
      }
    ).scripts;
    for (const service of ['calling', 'receiving'] as const) {
      const dockerfile = readFileSync(new URL(`Dockerfile.${service}`, repo), 'utf8');
      const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1];
      expect(JSON.parse(cmd!)).toEqual(['node', ...SERVICE_NODE_FLAGS, 'main.mjs']);
      // The compile cache is keyed by V8's flags: it is made with the CMD's.
      expect(dockerfile).toContain(`RUN PORT=none node ${SERVICE_NODE_FLAGS.join(' ')} main.mjs `);
      expect(scripts[`start:${service}`]).toBe(
        `node ${SERVICE_NODE_FLAGS.join(' ')} dist/bundle/${service}/main.mjs`,
      );
      expect(nodeArgsOf(service)).toEqual([...SERVICE_NODE_FLAGS, entryOf(service)]);
    }
  });
});
