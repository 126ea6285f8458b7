/**
 * `npm run deploy:render -- NAME=VALUE ...`: resolves the placeholders of `deploy/*.yaml` into
 * `dist/deploy/` (or `--out=DIR`), ready for `gcloud run services replace` and
 * `gcloud run services set-iam-policy`. Cloud Build runs the same command. Never writes into deploy/.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../services/shared/env.js';
import { PLACEHOLDERS, readDeployDir, renderDeploy } from './lib/deploy-manifests.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const source = join(root, 'deploy');

const usage = `usage: npm run deploy:render -- [--out=DIR] NAME=VALUE ...   (default DIR: dist/deploy)
placeholders:
${Object.entries(PLACEHOLDERS)
  .map(([name, p]) => `  ${name.padEnd(16)} ${p.meaning}`)
  .join('\n')}
`;

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${usage}`);
  process.exit(2);
}

let out = join(root, 'dist/deploy');
const values: Record<string, string> = {};
for (const arg of process.argv.slice(2)) {
  if (arg === '--help' || arg === '-h') {
    process.stdout.write(usage);
    process.exit(0);
  }
  const option = /^--out=(.+)$/.exec(arg);
  const assignment = /^([A-Z][A-Z0-9_]*)=(.*)$/s.exec(arg);
  if (option) out = resolve(option[1]!);
  else if (assignment) {
    const [, name, value] = assignment as unknown as [string, string, string];
    if (name in values) fail(`render-deploy: ${name} is given twice`);
    values[name] = value;
  } else fail(`render-deploy: "${arg}" is neither --out=DIR nor NAME=VALUE`);
}
if (resolve(out) === resolve(source))
  fail(
    'render-deploy: --out must not be deploy/ itself: deploy/ holds the sources with their placeholders',
  );

let rendered;
try {
  rendered = renderDeploy(readDeployDir(source), values);
} catch (err) {
  if (err instanceof ConfigError) fail(err.message);
  throw err;
}
mkdirSync(out, { recursive: true });
for (const file of rendered) {
  writeFileSync(join(out, file.name), file.text);
  process.stdout.write(`wrote ${relative(process.cwd(), join(out, file.name)) || file.name}\n`);
}
