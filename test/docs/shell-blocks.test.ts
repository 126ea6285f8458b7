/**
 * Every ```sh block of README.md, CONTRIBUTING.md and docs/ carries a mark right above it saying how
 * it is kept true, and this file holds each kind to it:
 *
 * - `<!-- runnable: expects "TEXT", ... -->` (or `runnable: exits N, expects ...`): run as written, in
 *   bash, against `npm start` (the built launcher), both in a loopback-only network namespace on
 *   the documented ports, with LOCAL_STATE_DIR a fresh folder. The block must exit 0 (or N) and
 *   print each text on stdout or stderr.
 * - `<!-- cloud -->`: needs a Google Cloud project, so it cannot run here. A page's cloud blocks run
 *   in order in one bash (as in one terminal) with `gcloud`, `docker`, `curl` and `npm` recording
 *   their arguments instead; then every recorded gcloud command is given to the real gcloud, with
 *   no account, and must get past gcloud's own argument parser to the point where it asks for
 *   credentials (a misspelled flag, a missing argument or an unreadable manifest stops it earlier),
 *   every `npm run deploy:render` runs for real and must succeed, and every `docker build -f FILE`
 *   must name a file that exists.
 * - `<!-- not run: REASON -->`: the reason says what runs it instead (CI, or by hand).
 *
 * Commands written inline in prose are held too: each `npm run NAME` must name a script, and each
 * `gcloud ...` must exist (its help page) or, shown with flags, pass gcloud's argument parser.
 */
import { execFile, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../scripts/lib/processes.js';
import { findGcloud } from '../helpers/gcloud.js';
import { docPages, root } from '../helpers/docs.js';
import { loopbackNamespace } from '../helpers/netns.js';

const run = promisify(execFile);
const launcher = join(root, 'dist/scripts/start-local.js');
const pages = docPages;

type Runnable = { kind: 'runnable'; exits: number; expects: string[] };
type Mark = Runnable | { kind: 'cloud' } | { kind: 'not run'; reason: string };

interface Block {
  page: string;
  where: string;
  script: string;
  mark: Mark | undefined;
}

function parseMark(line: string): Mark | undefined {
  const runnable = /^<!-- runnable: (?:exits (\d+), )?expects (.+) -->$/.exec(line);
  if (runnable)
    return {
      kind: 'runnable',
      exits: Number(runnable[1] ?? 0),
      expects: JSON.parse(`[${runnable[2]}]`) as string[],
    };
  if (line === '<!-- cloud -->') return { kind: 'cloud' };
  const notRun = /^<!-- not run: (.+) -->$/.exec(line);
  if (notRun) return { kind: 'not run', reason: notRun[1]! };
  return undefined;
}

/** Every ```sh block of every page, with the mark on the line above it (if any). */
function shellBlocks(): Block[] {
  return pages.flatMap((page) => {
    const lines = readFileSync(join(root, page), 'utf8').split('\n');
    return lines.flatMap((line, i) => {
      if (line !== '```sh') return [];
      const end = lines.indexOf('```', i + 1);
      return [
        {
          page,
          where: `${page}:${i + 1}`,
          script: lines.slice(i + 1, end).join('\n'),
          mark: parseMark(lines[i - 1] ?? ''),
        },
      ];
    });
  });
}

const blocks = shellBlocks();
const ofKind = (kind: Mark['kind']) => blocks.filter((b) => b.mark?.kind === kind);

describe('the shell blocks of README.md, CONTRIBUTING.md and docs/', () => {
  it('each carries a mark saying how it is kept true', () => {
    expect(blocks.filter((b) => b.mark === undefined).map((b) => b.where)).toEqual([]);
    expect(ofKind('runnable').length).toBeGreaterThanOrEqual(4);
    expect(ofKind('cloud').length).toBeGreaterThanOrEqual(5);
  });

  it('a mark stands only right above a ```sh block', () => {
    const stray = pages.flatMap((page) => {
      const lines = readFileSync(join(root, page), 'utf8').split('\n');
      return lines.flatMap((line, i) =>
        /^<!-- (runnable|cloud|not run)\b/.test(line) && lines[i + 1] !== '```sh'
          ? [`${page}:${i + 1}`]
          : [],
      );
    });
    expect(stray).toEqual([]);
  });
});

describe('the runnable blocks, against npm start', () => {
  it('each runs as written and prints what the page says', async () => {
    const runnable = ofKind('runnable').filter(
      (b): b is Block & { mark: Runnable } => b.mark?.kind === 'runnable',
    );
    const usesGcloud = (block: Block) => /\bgcloud\b/.test(block.script);
    const gcloud = runnable.some(usesGcloud)
      ? await findGcloud('the runnable blocks that use gcloud')
      : undefined;
    // In a loopback-only network namespace (gcloud runs there, and only there) npm start has its
    // documented ports, and /etc/hosts gives it the Admin API's regional host, as the docs tell a
    // developer to. Without one (not root, outside CI), the ports are moved and gcloud's blocks skipped.
    const ns = await loopbackNamespace(
      '127.0.0.1 localhost us-central1-localhost\n',
      'the runnable blocks that use gcloud',
    );
    const ports = ns
      ? { calling: 8080, receiving: 8081, metadata: 8082, admin: 8083 }
      : {
          calling: await freePort(),
          receiving: await freePort(),
          metadata: await freePort(),
          admin: await freePort(),
        };
    const stateDir = mkdtempSync(join(tmpdir(), 'runnable-'));
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      LOCAL_STATE_DIR: stateDir,
    };
    const chainEnv = {
      ...env,
      CALLING_PORT: String(ports.calling),
      RECEIVING_PORT: String(ports.receiving),
      METADATA_PORT: String(ports.metadata),
      ADMIN_PORT: String(ports.admin),
    };
    const chain = ns
      ? ns.spawn(process.execPath, [launcher], chainEnv)
      : spawn(process.execPath, [launcher], { env: chainEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    chain.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => chain.once('exit', resolve));
    try {
      for (
        const deadline = Date.now() + 20_000;
        !output.includes('Ctrl-C stops them all') && Date.now() < deadline;
      ) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(output).toContain('Ctrl-C stops them all');
      for (const block of runnable) {
        if (usesGcloud(block) && (gcloud === undefined || ns === undefined)) continue;
        const script = block.script
          .replace(/\b(localhost|127\.0\.0\.1):8080\b/g, `127.0.0.1:${ports.calling}`)
          .replace(/\b(localhost|127\.0\.0\.1):8081\b/g, `127.0.0.1:${ports.receiving}`)
          .replace(/\b(localhost|127\.0\.0\.1):8082\b/g, `127.0.0.1:${ports.metadata}`);
        const result = ns
          ? await ns
              .run('bash', ['-eo', 'pipefail', '-c', `cd '${root}'\n${script}`], {
                env,
                timeoutMs: 120_000,
              })
              .then((r) => ({
                code: r.code,
                printed: r.stdout + r.stderr,
              }))
          : await run('bash', ['-eo', 'pipefail', '-c', script], {
              cwd: root,
              env,
              timeout: 60_000,
            }).then(
              ({ stdout, stderr }) => ({ code: 0, printed: stdout + stderr }),
              (err: { code?: number; stdout?: string; stderr?: string }) => ({
                code: err.code ?? -1,
                printed: `${err.stdout ?? ''}${err.stderr ?? ''}`,
              }),
            );
        expect({ where: block.where, exit: result.code }).toEqual({
          where: block.where,
          exit: block.mark.exits,
        });
        for (const text of block.mark.expects)
          expect({ where: block.where, printed: result.printed.includes(text), text }).toEqual({
            where: block.where,
            printed: true,
            text,
          });
      }
    } finally {
      chain.kill('SIGINT');
      await exited;
      ns?.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
  }, 240_000);
});

/**
 * Stand-ins that record their arguments (one line per call, NUL between arguments) and answer the
 * few questions the blocks ask (the project, its number, a service's URL); `npm run deploy:render`
 * runs the real render into the working folder's dist/deploy/.
 */
const SHIM = `#!/usr/bin/env bash
name=$(basename "$0")
{ printf '%s\\0' "$name" "$@"; printf '\\n'; } >> "$SHIM_LOG"
case "$name $*" in
  "gcloud config get-value project") echo my-project ;;
  *"value(projectNumber)"*) echo 123456789012 ;;
  "gcloud run services describe "*) echo "https://$4-123456789012.us-central1.run.app" ;;
  "npm run deploy:render -- "*) shift 3; exec node "$RENDER" --out="$PWD/dist/deploy" "$@" ;;
  "npm run deploy:render"*) echo "npm run deploy:render without --" >&2; exit 1 ;;
esac
exit 0
`;

/**
 * FN over ITEMS, two at a time: each gcloud takes a second of CPU, and twenty at once on two cores
 * would starve the test files running beside this one.
 */
async function inTwos<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) results[i] = await fn(items[i]!);
  };
  await Promise.all([worker(), worker()]);
  return results;
}

const NO_ACCOUNT = 'You do not currently have an active account selected';
/** A login command past its parser: it asks for a browser sign-in (and, with no input, stops). */
const SIGN_IN = 'Go to the following link in your browser';

/**
 * What the real gcloud makes of ARGS with no account: 'accepted' when it gets past its argument
 * parser (it stops asking for credentials, or needs none), else its error.
 */
async function gcloudVerdict(args: string[], cwd: string): Promise<string> {
  const home = mkdtempSync(join(tmpdir(), 'gcloud-home-'));
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: home,
    CLOUDSDK_CONFIG: join(home, 'config'),
    CLOUDSDK_CORE_PROJECT: 'my-project',
    // As for a user who set a default region (`gcloud config set run/region`); without it gcloud asks for one.
    CLOUDSDK_RUN_REGION: 'us-central1',
    CLOUDSDK_CORE_DISABLE_PROMPTS: '1',
    CLOUDSDK_CORE_CHECK_GCE_METADATA: 'false',
    CLOUDSDK_CORE_DISABLE_USAGE_REPORTING: 'true',
    CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK: 'true',
    // Never off this machine: were gcloud to look for a metadata server, it finds none on loopback.
    GCE_METADATA_ROOT: '127.0.0.1:1',
    GCE_METADATA_IP: '127.0.0.1:1',
  };
  try {
    const pending = run('gcloud', args, { cwd, env, timeout: 60_000 });
    // Nothing to read: a command that prompts (a login's sign-in code) stops at once.
    pending.child.stdin?.end();
    return await pending.then(
      () => 'accepted',
      (err: { stderr?: string }) =>
        err.stderr?.includes(NO_ACCOUNT) || err.stderr?.includes(SIGN_IN)
          ? 'accepted'
          : (err.stderr ?? String(err)).trim(),
    );
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

describe('the cloud blocks: what gcloud, npm and docker are given', () => {
  const cloudPages = [...new Set(ofKind('cloud').map((b) => b.page))];

  it.each(cloudPages)(
    '%s',
    async (page) => {
      const sdk = await findGcloud('the gcloud commands of the docs');
      const work = mkdtempSync(join(tmpdir(), 'cloud-blocks-'));
      try {
        for (const entry of readdirSync(root))
          if (!['dist', 'node_modules', '.git', '.local-state', 'reports'].includes(entry))
            symlinkSync(join(root, entry), join(work, entry));
        const bin = join(work, '.shims');
        mkdirSync(bin);
        for (const name of ['gcloud', 'docker', 'curl', 'npm']) {
          writeFileSync(join(bin, name), SHIM);
          chmodSync(join(bin, name), 0o755);
        }
        const log = join(work, '.shims.log');
        writeFileSync(log, '');
        const script = ofKind('cloud')
          .filter((b) => b.page === page)
          .map((b) => b.script)
          .join('\n');
        await run('bash', ['-eo', 'pipefail', '-c', script], {
          cwd: work,
          env: {
            PATH: `${bin}:${process.env.PATH ?? ''}`,
            HOME: work,
            SHIM_LOG: log,
            RENDER: join(root, 'dist/scripts/render-deploy.js'),
          },
          timeout: 60_000,
        });
        const calls = readFileSync(log, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => line.split('\0').slice(0, -1));
        expect(calls.filter(([name]) => name === 'gcloud').length).toBeGreaterThan(0);

        const problems = calls
          .filter((call) => call[0] === 'docker' && call[1] === 'build')
          .map((call) => call[call.indexOf('-f') + 1] ?? '(no -f)')
          .filter((file) => !existsSync(join(work, file)))
          .map((file) => ({ command: `docker build -f ${file}`, verdict: 'no such Dockerfile' }));

        const verdicts =
          sdk === undefined
            ? []
            : await inTwos(
                calls.filter(([name]) => name === 'gcloud'),
                async ([, ...args]) => ({
                  command: `gcloud ${args.join(' ')}`,
                  verdict: await gcloudVerdict(args, work),
                }),
              );
        expect([...problems, ...verdicts.filter((v) => v.verdict !== 'accepted')]).toEqual([]);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    180_000,
  );
});

/** The commands written inline in the pages' prose, `like this`. */
const inline = (prefix: string) =>
  pages.flatMap((page) =>
    [
      ...readFileSync(join(root, page), 'utf8').matchAll(new RegExp(`\`(${prefix} [^\`]*)\``, 'g')),
    ].map((m) => ({ page, command: m[1]! })),
  );

describe('the commands written inline', () => {
  it('each `npm run NAME` names a script of package.json', () => {
    const scripts = Object.keys(
      (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: object }).scripts,
    );
    const named = inline('npm run').flatMap(({ page, command }) =>
      command
        .split(/\s+/)[2]!
        .split('|')
        .map((name) => ({ page, name })),
    );
    expect(named.length).toBeGreaterThan(20);
    const unknown = named.filter(
      ({ name }) =>
        !scripts.some((script) => new RegExp(`^${name.replace('*', '.*')}$`).test(script)),
    );
    expect(unknown).toEqual([]);
  });

  it("each gcloud command exists, and one given with flags passes gcloud's argument parser", async () => {
    const sdk = await findGcloud('the inline gcloud commands of the docs');
    if (sdk === undefined) return;
    const commands = [...new Set(inline('gcloud').map(({ command }) => command))];
    expect(commands.length).toBeGreaterThan(5);
    const verdicts = await inTwos(commands, async (command) => {
      const words = command.split(/\s+/).slice(1);
      // A command shown with its flags is checked whole; one named without (`gcloud run deploy`) by its help page.
      const args = words.some((w) => w.startsWith('--'))
        ? words
        : [...words.filter((w) => /^[a-z-]+$/.test(w)), '--help'];
      return { command, verdict: await gcloudVerdict(args, root) };
    });
    expect(verdicts.filter((v) => v.verdict !== 'accepted')).toEqual([]);
  }, 120_000);
});
