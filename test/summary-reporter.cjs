/**
 * Ends the run with plain lines for CI to read: one per interop client (a describe titled
 * `client NAME`), `interop NAME: N passed, N failed[, N skipped]`, then `jest: N passed, N failed[, N skipped]`.
 */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const clients = new Map();
    for (const file of results.testResults) {
      for (const test of file.testResults) {
        const title = test.ancestorTitles.find((t) => t.startsWith('client '));
        if (title === undefined) continue;
        const counts = clients.get(title) ?? { passed: 0, failed: 0, skipped: 0 };
        counts[
          test.status === 'passed' ? 'passed' : test.status === 'failed' ? 'failed' : 'skipped'
        ] += 1;
        clients.set(title, counts);
      }
    }
    for (const [title, { passed, failed, skipped }] of clients) {
      process.stdout.write(
        `interop ${title.slice('client '.length)}: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`,
      );
    }
    const skipped = results.numPendingTests + results.numTodoTests;
    const suitesFailed = results.numRuntimeErrorTestSuites;
    const failed = results.numFailedTests + suitesFailed;
    process.stdout.write(
      `jest: ${results.numPassedTests} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`,
    );
  }
}
module.exports = SummaryReporter;
