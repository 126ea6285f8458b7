/** Ends the run with one plain line, `jest: N passed, N failed[, N skipped]`, for CI to read. */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    const suitesFailed = results.numRuntimeErrorTestSuites;
    const failed = results.numFailedTests + suitesFailed;
    process.stdout.write(`jest: ${results.numPassedTests} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  }
}
module.exports = SummaryReporter;
