import { jest } from '@jest/globals';

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

const TIMER_APIS = [
  'hrtime',
  'nextTick',
  'performance',
  'queueMicrotask',
  'requestAnimationFrame',
  'cancelAnimationFrame',
  'requestIdleCallback',
  'cancelIdleCallback',
  'setImmediate',
  'clearImmediate',
  'setInterval',
  'clearInterval',
] as const;

/**
 * Fakes Date, and setTimeout and clearTimeout when timeouts is set, and nothing else: I/O,
 * setImmediate and the rest stay real. Move the clock with jest.setSystemTime, or with
 * jest.advanceTimersByTime to fire the faked timeouts that fall due; undo with jest.useRealTimers.
 */
export function fakeClock(now: number, { timeouts = false } = {}): void {
  jest.useFakeTimers({
    now,
    doNotFake: timeouts ? [...TIMER_APIS] : [...TIMER_APIS, 'setTimeout', 'clearTimeout'],
  });
}
