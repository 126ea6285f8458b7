import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const tutorial = fileURLToPath(new URL('../../dist/scripts/tutorial.js', import.meta.url));

/** CI runs `npm run tutorial` with gcloud installed (in .ci/run); this is the other way. */
describe('npm run tutorial where gcloud is not installed (the built script, as a process)', () => {
  it('ends all four stages as the tutorial does, stage 4 through npm run local, and says so', async () => {
    // A PATH without gcloud: the tutorial starts node by its own path.
    const { stdout } = await run(process.execPath, [tutorial], {
      env: { PATH: '/nonexistent', NO_COLOR: '1' },
      timeout: 120_000,
    });
    expect(stdout).toContain(
      '(gcloud is not installed: the same change through the local Admin API, no restart)',
    );
    expect(stdout).toMatch(
      /receiving's policy is now:\n\s+bindings:\n\s+- members:\n\s+- serviceAccount:cloudrun-authenticated-sa@/,
    );
    expect(stdout).toContain('tutorial: 4 passed, 0 failed');
  }, 150_000);
});
