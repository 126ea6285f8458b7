import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const sources = (dir: string): string[] =>
  readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sources(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  );

describe('what ships and what emulates', () => {
  it('no code in services/ imports local/ (the metadata emulator, the Cloud Run front door)', () => {
    const files = sources('services');
    expect(files.length).toBeGreaterThan(20);
    const offending = files.filter((file) =>
      /from '[^']*\/local\//.test(readFileSync(join(root, file), 'utf8')),
    );
    expect(offending).toEqual([]);
  });

  it('the check above sees an import of local/ when there is one', () => {
    expect(
      /from '[^']*\/local\//.test(
        "import { createCloudRunFront } from '../../local/cloud-run-front/front.js';",
      ),
    ).toBe(true);
  });
});
