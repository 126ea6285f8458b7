/**
 * Runs fn while watching the timers it sets for exactly ms, and answers how many were set and how
 * many of them were never cleared. Watching the calls, not the process's timers, keeps other test
 * files in the same worker out of the count.
 */
export async function timersOf(
  ms: number,
  fn: () => Promise<unknown>,
): Promise<{ set: number; uncleared: number }> {
  const [realSet, realClear] = [globalThis.setTimeout, globalThis.clearTimeout];
  const created: unknown[] = [];
  const cleared = new Set<unknown>();
  globalThis.setTimeout = ((handler: () => void, delay?: number) => {
    const timer = realSet(handler, delay);
    if (delay === ms) created.push(timer);
    return timer;
  }) as typeof setTimeout;
  globalThis.clearTimeout = (timer: Parameters<typeof clearTimeout>[0]) => {
    cleared.add(timer);
    realClear(timer);
  };
  try {
    await fn();
  } finally {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
  }
  return { set: created.length, uncleared: created.filter((timer) => !cleared.has(timer)).length };
}
