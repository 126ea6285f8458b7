/**
 * Mutation testing of the security- and fault-handling code (`npm run test:mutation`): Stryker
 * plants one deliberate bug at a time and checks that some test fails. Report: reports/mutation/.
 *
 * Left out: the main.ts files and services/shared/server.ts (listen, refuse to start, shutdown on a
 * signal) run only as processes (test/scripts), from bundles Stryker cannot plant a bug in. The
 * wiring lives in modules that are mutated (each service's app.ts). Static mutants (code run when
 * a module loads) are skipped: each needs the whole suite, which under ESM jest takes hours.
 */
export default {
  testRunner: 'jest',
  testRunnerNodeArgs: ['--experimental-vm-modules'],
  coverageAnalysis: 'perTest',
  mutate: [
    // Everything that ships.
    'services/**/*.ts',
    '!services/*/main.ts',
    '!services/shared/server.ts',
    // The local Cloud Run front door: it decides who gets through, like the code it stands in front of.
    'local/cloud-run-front/*.ts',
    // The local Admin API: it decides who may change who gets through.
    'local/cloud-run-admin/*.ts',
    // The metadata emulator: who gets tokens, and answers Google's clients take as the real server's.
    'local/metadata-emulator/*.ts',
    '!local/metadata-emulator/main.ts',
  ],
  jest: {
    configFile: 'jest.config.js',
    // Tests that spawn built processes, drive gcloud or check deploy files exercise no mutant.
    config: {
      testPathIgnorePatterns: ['/test/scripts/', '/test/interop/', '/test/deploy/'],
      reporters: ['default'],
    },
    enableFindRelatedTests: true,
  },
  ignorePatterns: ['dist', 'reports', '.stryker-tmp', 'test/containers'],
  ignoreStatic: true,
  concurrency: 2,
  // Jest with ESM grows by tens of MB per run and slows to a crawl past a few hundred runs: start afresh.
  maxTestRunnerReuse: 25,
  timeoutMS: 5000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  thresholds: { high: 95, low: 90, break: 90 },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
};
