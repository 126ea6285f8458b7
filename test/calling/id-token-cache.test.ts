import { jest } from '@jest/globals';
import { createCachingIdTokenSource } from '../../services/calling/id-token-cache.js';
import { IdTokenFetchError, type FetchIdToken } from '../../services/calling/id-token-fetchers.js';
import { IdTokenUnavailableError } from '../../services/shared/errors.js';
import { fakeClock } from '../helpers/timers.js';
import { b64url } from '../helpers/tokens.js';

const HOUR_MS = 3600_000;

/** A fake metadata server: tokens that expire an hour after the fake clock's now. */
function fakeFetcher(clock: { now: number }) {
  const calls: { audience: string; timeoutMs: number }[] = [];
  let failures: IdTokenFetchError[] = [];
  let gate: Promise<void> = Promise.resolve();
  const fetcher: FetchIdToken = async (audience, timeoutMs) => {
    calls.push({ audience, timeoutMs });
    await gate;
    const failure = failures.shift();
    if (failure) throw failure;
    const exp = Math.floor((clock.now + HOUR_MS) / 1000);
    return `${b64url({ alg: 'RS256' })}.${b64url({ aud: audience, exp, n: calls.length })}.sig`;
  };
  return {
    fetcher,
    calls,
    failWith: (...errors: IdTokenFetchError[]) => (failures = errors),
    /** Holds fetches until the returned function is called. */
    hold: () => {
      let release!: () => void;
      gate = new Promise((resolve) => (release = resolve));
      return () => {
        gate = Promise.resolve();
        release();
      };
    },
  };
}

const serial = (token: string): number =>
  JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).n;

const ignore = (): void => undefined;

describe('createCachingIdTokenSource', () => {
  /** Date.now, which the cache reads, faked and moved by hand; timers stay real. */
  const clock = {
    get now() {
      return Date.now();
    },
    set now(ms: number) {
      jest.setSystemTime(ms);
    },
  };
  beforeEach(() => {
    fakeClock(Date.UTC(2026, 0, 1));
    jest.spyOn(Math, 'random').mockReturnValue(0); // no backoff wait, unless a test says otherwise
  });
  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });
  const sourceWith = (
    fetcher: FetchIdToken,
    onBackgroundRefreshError: (a: string, e: Error) => void = () => undefined,
  ) =>
    createCachingIdTokenSource(fetcher, {
      hint: 'Check the metadata server.',
      onBackgroundRefreshError,
    });

  it('makes one fetch for 200 concurrent requests on a cold cache', async () => {
    const fake = fakeFetcher(clock);
    const source = sourceWith(fake.fetcher);
    const release = fake.hold();
    const tokens = Promise.all(
      Array.from({ length: 200 }, () => source.getIdToken('https://r.example')),
    );
    release();
    const all = await tokens;
    expect(new Set(all).size).toBe(1);
    expect(fake.calls).toHaveLength(1);
  });

  it('keeps one token per audience', async () => {
    const fake = fakeFetcher(clock);
    const source = sourceWith(fake.fetcher);
    await Promise.all([source.getIdToken('a'), source.getIdToken('b'), source.getIdToken('a')]);
    expect(fake.calls.map((c) => c.audience).sort()).toEqual(['a', 'b']);
  });

  it('reuses the token for its lifetime, then refreshes in the background while serving the old one', async () => {
    const fake = fakeFetcher(clock);
    const source = sourceWith(fake.fetcher);
    const first = await source.getIdToken('a');
    clock.now += 50 * 60_000;
    expect(await source.getIdToken('a')).toBe(first);
    expect(fake.calls).toHaveLength(1);

    // 56 minutes in: under 5 minutes left, so a refresh starts, and this request does not wait for it.
    clock.now += 6 * 60_000;
    const release = fake.hold();
    expect(await source.getIdToken('a')).toBe(first);
    expect(await source.getIdToken('a')).toBe(first);
    expect(fake.calls).toHaveLength(2);
    release();
    await new Promise((resolve) => setImmediate(resolve));
    const second = await source.getIdToken('a');
    expect(serial(second)).toBe(2);
    expect(fake.calls).toHaveLength(2);
  });

  it('never hands out a token within 30 s of its expiry: such a request waits for a fresh one', async () => {
    const fake = fakeFetcher(clock);
    const source = sourceWith(fake.fetcher);
    await source.getIdToken('a');
    clock.now += HOUR_MS - 20_000;
    const requests = await Promise.all(Array.from({ length: 20 }, () => source.getIdToken('a')));
    expect(requests.every((token) => serial(token) === 2)).toBe(true);
    expect(fake.calls).toHaveLength(2);
  });

  it('retries transient failures and succeeds', async () => {
    const fake = fakeFetcher(clock);
    fake.failWith(
      new IdTokenFetchError('answered 500', true),
      new IdTokenFetchError('refused', true),
    );
    const source = sourceWith(fake.fetcher);
    expect(serial(await source.getIdToken('a'))).toBe(3);
  });

  it('gives up after three attempts with a 503 naming the last reason and the hint', async () => {
    const fake = fakeFetcher(clock);
    fake.failWith(
      ...Array.from(
        { length: 5 },
        () => new IdTokenFetchError('the metadata server at h refused the connection', true),
      ),
    );
    const error = await sourceWith(fake.fetcher)
      .getIdToken('https://r.example')
      .catch((err: unknown) => err);
    expect(fake.calls).toHaveLength(3);
    expect(error).toBeInstanceOf(IdTokenUnavailableError);
    expect((error as IdTokenUnavailableError).status).toBe(503);
    expect((error as Error).message).toBe(
      'could not get an identity token for audience https://r.example: the metadata server at h refused the connection. Check the metadata server.',
    );
  });

  it('does not retry what retrying cannot fix', async () => {
    const fake = fakeFetcher(clock);
    fake.failWith(new IdTokenFetchError('h answered without Metadata-Flavor: Google', false));
    await expect(sourceWith(fake.fetcher).getIdToken('a')).rejects.toThrow(
      /without Metadata-Flavor/,
    );
    expect(fake.calls).toHaveLength(1);
  });

  it('bounds all attempts together by the 5 s deadline: the last attempt gets what is left', async () => {
    const calls: number[] = [];
    const source = createCachingIdTokenSource(
      async (_audience, timeoutMs) => {
        calls.push(timeoutMs);
        clock.now += timeoutMs; // each attempt times out
        throw new IdTokenFetchError('did not answer', true);
      },
      { hint: '', onBackgroundRefreshError: ignore },
    );
    await expect(source.getIdToken('a')).rejects.toThrow(IdTokenUnavailableError);
    expect(calls).toEqual([2000, 2000, 1000]);
  });

  it('names the whole wait when every attempt timed out, not the last attempt’s timeout', async () => {
    const source = createCachingIdTokenSource(
      async (_audience, timeoutMs) => {
        clock.now += timeoutMs;
        throw new IdTokenFetchError(
          `the metadata server at h did not answer within ${timeoutMs} ms`,
          true,
          { silent: 'the metadata server at h' },
        );
      },
      { hint: 'Check it.', onBackgroundRefreshError: ignore },
    );
    const error = (await source
      .getIdToken('https://r.example')
      .catch((err: unknown) => err)) as Error;
    expect(error.message).toBe(
      'could not get an identity token for audience https://r.example: the metadata server at h did not answer ' +
        'within 5000 ms (3 attempts). Check it.',
    );
  });

  it('names a single timed-out attempt as one attempt', async () => {
    const source = createCachingIdTokenSource(
      async () => {
        clock.now += 5000; // the whole deadline: no time left for a second attempt
        throw new IdTokenFetchError('slow', true, { silent: 'google-auth-library' });
      },
      { hint: '', onBackgroundRefreshError: ignore },
    );
    await expect(source.getIdToken('a')).rejects.toThrow(
      'google-auth-library did not answer within 5000 ms (1 attempt)',
    );
  });

  it('recovers: after a failed fetch the next request fetches again', async () => {
    const fake = fakeFetcher(clock);
    fake.failWith(new IdTokenFetchError('no', false));
    const source = sourceWith(fake.fetcher);
    await expect(source.getIdToken('a')).rejects.toThrow(IdTokenUnavailableError);
    await expect(source.getIdToken('a')).resolves.toMatch(/\./);
  });

  it('keeps serving the valid token when a background refresh fails, and does not retry on every request', async () => {
    const fake = fakeFetcher(clock);
    const errors: string[] = [];
    const source = sourceWith(fake.fetcher, (_audience, error) => errors.push(error.message));
    const first = await source.getIdToken('a');
    clock.now += 57 * 60_000;
    fake.failWith(new IdTokenFetchError('answered 404', false));
    expect(await source.getIdToken('a')).toBe(first);
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).toEqual([expect.stringContaining('answered 404')]);
    for (let i = 0; i < 10; i += 1) expect(await source.getIdToken('a')).toBe(first);
    expect(fake.calls).toHaveLength(2);
    clock.now += 10_000;
    await source.getIdToken('a');
    await new Promise((resolve) => setImmediate(resolve));
    expect(fake.calls).toHaveLength(3);
    expect(serial(await source.getIdToken('a'))).toBe(3);
  });

  it('refreshes in the background from exactly 5 minutes before expiry, not a millisecond earlier', async () => {
    const fake = fakeFetcher(clock);
    const source = sourceWith(fake.fetcher);
    const first = await source.getIdToken('a');
    const expiresAt = clock.now + HOUR_MS;
    clock.now = expiresAt - 5 * 60_000 - 1;
    await source.getIdToken('a');
    expect(fake.calls).toHaveLength(1);
    clock.now = expiresAt - 5 * 60_000;
    expect(await source.getIdToken('a')).toBe(first);
    expect(fake.calls).toHaveLength(2);
  });

  it('hands out a token until exactly 30 s before its expiry, and waits for a fresh one from then', async () => {
    const fake = fakeFetcher(clock);
    const source = sourceWith(fake.fetcher);
    const first = await source.getIdToken('a');
    const expiresAt = clock.now + HOUR_MS;
    const release = fake.hold(); // the background refresh started below stays pending
    clock.now = expiresAt - 30_000 - 1;
    expect(await source.getIdToken('a')).toBe(first);
    clock.now = expiresAt - 30_000;
    const waiting = source.getIdToken('a');
    release();
    expect(serial(await waiting)).toBe(2);
  });

  it('after a failed background refresh, tries again exactly 5 s later', async () => {
    const fake = fakeFetcher(clock);
    const source = sourceWith(fake.fetcher, () => undefined);
    await source.getIdToken('a');
    clock.now += 57 * 60_000;
    fake.failWith(new IdTokenFetchError('answered 404', false));
    await source.getIdToken('a');
    await new Promise((resolve) => setImmediate(resolve));
    expect(fake.calls).toHaveLength(2);
    clock.now += 4999;
    await source.getIdToken('a');
    expect(fake.calls).toHaveLength(2);
    clock.now += 1;
    await source.getIdToken('a');
    expect(fake.calls).toHaveLength(3);
  });

  it('a failed background refresh with nobody listening for it rejects nothing unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const fake = fakeFetcher(clock);
      const source = createCachingIdTokenSource(fake.fetcher, {
        hint: '',
        onBackgroundRefreshError: ignore,
      });
      const first = await source.getIdToken('a');
      clock.now += 57 * 60_000;
      fake.failWith(new IdTokenFetchError('answered 404', false));
      expect(await source.getIdToken('a')).toBe(first);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(fake.calls).toHaveLength(2);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('keeps a token without exp (opaque, or a JWT without the claim) for one minute', async () => {
    for (const shape of [
      (n: number) => `opaque-${n}`,
      (n: number) => `${b64url({ alg: 'RS256' })}.${b64url({ n })}.sig`,
    ]) {
      let fetches = 0;
      const source = createCachingIdTokenSource(
        async () => {
          fetches += 1;
          return shape(fetches);
        },
        { hint: '', onBackgroundRefreshError: ignore },
      );
      expect(await source.getIdToken('a')).toBe(shape(1));
      clock.now += 60_000 - 30_000 - 1;
      expect(await source.getIdToken('a')).toBe(shape(1));
      clock.now += 1;
      expect(await source.getIdToken('a')).toBe(shape(2));
    }
  });

  it('keeps the last attempt’s error as the cause of the 503', async () => {
    const fake = fakeFetcher(clock);
    const last = new IdTokenFetchError('answered 403', false);
    fake.failWith(last);
    const error = (await sourceWith(fake.fetcher)
      .getIdToken('a')
      .catch((err: unknown) => err)) as Error;
    expect(error.cause).toBe(last);
  });

  describe('backoff between attempts (full jitter; Math.random and the waits stood in for)', () => {
    let waits: number[];
    beforeEach(() => {
      waits = [];
      jest.spyOn(Math, 'random').mockReturnValue(0.5);
      jest.spyOn(globalThis, 'setTimeout').mockImplementation((fn: () => void, ms?: number) => {
        waits.push(ms ?? 0);
        fn();
        return 0 as unknown as NodeJS.Timeout;
      });
    });
    afterEach(() => jest.restoreAllMocks());

    const failing = (times: number) => {
      const fake = fakeFetcher(clock);
      fake.failWith(
        ...Array.from({ length: times }, () => new IdTokenFetchError('answered 500', true)),
      );
      return fake;
    };

    it('waits up to 100 ms, then up to 200 ms, and makes no fourth attempt', async () => {
      const fake = failing(5);
      const source = createCachingIdTokenSource(fake.fetcher, {
        hint: '',
        onBackgroundRefreshError: ignore,
      });
      await expect(source.getIdToken('a')).rejects.toThrow('answered 500');
      expect(waits).toEqual([50, 100]);
      expect(fake.calls).toHaveLength(3);
    });

    it('gives up when the wait would end exactly at the deadline', async () => {
      const fake = fakeFetcher(clock);
      const start = clock.now;
      const source = createCachingIdTokenSource(
        async (audience, timeoutMs) => {
          clock.now = start + 4950; // the attempt took 4950 ms; the next wait is 50 ms
          return fake.fetcher(audience, timeoutMs);
        },
        { hint: '', onBackgroundRefreshError: ignore },
      );
      fake.failWith(new IdTokenFetchError('answered 500', true));
      await expect(source.getIdToken('a')).rejects.toThrow('answered 500');
      expect(fake.calls).toHaveLength(1);
    });
  });
});
