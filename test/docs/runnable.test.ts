/**
 * The shell blocks of README.md and docs/ marked `<!-- runnable: expects "TEXT", ... -->` run here
 * as written, in bash, against `npm start` (the built launcher) on free ports: the documented
 * ports 8080, 8081 and 8082 are replaced by those, and LOCAL_STATE_DIR is a fresh folder. Each
 * block must exit 0 and print each expected text. Blocks that need a cloud project are not marked.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from '../../scripts/lib/processes.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const launcher = join(root, 'dist/scripts/start-local.js');
const pages = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

interface Block {
  where: string;
  script: string;
  expects: string[];
}

const MARK = /^<!-- runnable: expects (.+) -->$/;

function runnableBlocks(): Block[] {
  return pages.flatMap((page) => {
    const lines = readFileSync(join(root, page), 'utf8').split('\n');
    return lines.flatMap((line, i) => {
      const mark = MARK.exec(line);
      if (!mark) return [];
      if (lines[i + 1] !== '```sh') throw new Error(`${page}:${i + 1}: a runnable mark must stand right above a \`\`\`sh block`);
      const end = lines.indexOf('```', i + 2);
      return [{ where: `${page}:${i + 1}`, script: lines.slice(i + 2, end).join('\n'), expects: JSON.parse(`[${mark[1]}]`) as string[] }];
    });
  });
}

describe('the runnable shell blocks of README.md and docs/, against npm start', () => {
  const blocks = runnableBlocks();

  it("finds the marked blocks (README's first steps, the live policy change)", () => {
    expect(blocks.map((b) => b.where.split(':')[0])).toEqual(['README.md', 'docs/cloud-run.md']);
  });

  it('each runs as written and prints what the page says', async () => {
    const ports = { calling: await freePort(), receiving: await freePort(), metadata: await freePort() };
    const stateDir = mkdtempSync(join(tmpdir(), 'runnable-'));
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOCAL_STATE_DIR: stateDir };
    const chain = spawn(process.execPath, [launcher], {
      env: { ...env, CALLING_PORT: String(ports.calling), RECEIVING_PORT: String(ports.receiving), METADATA_PORT: String(ports.metadata) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    chain.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => chain.once('exit', resolve));
    try {
      for (const deadline = Date.now() + 20_000; !output.includes('Ctrl-C stops them all') && Date.now() < deadline;) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(output).toContain('Ctrl-C stops them all');
      for (const block of blocks) {
        const script = block.script
          .replace(/\b(localhost|127\.0\.0\.1):8080\b/g, `127.0.0.1:${ports.calling}`)
          .replace(/\b(localhost|127\.0\.0\.1):8081\b/g, `127.0.0.1:${ports.receiving}`)
          .replace(/\b(localhost|127\.0\.0\.1):8082\b/g, `127.0.0.1:${ports.metadata}`);
        const { stdout } = await run('bash', ['-eo', 'pipefail', '-c', script], { cwd: root, env, timeout: 30_000 });
        for (const text of block.expects)
          expect({ where: block.where, printed: stdout.includes(text), text }).toEqual({ where: block.where, printed: true, text });
      }
    } finally {
      chain.kill('SIGINT');
      await exited;
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
