import express from 'express';
import { EnvReader, type Env } from '../../services/shared/env.js';
import type { Logger } from '../../services/shared/logger.js';
import { projectIdFrom as fromConfig } from '../../services/shared/project-id.js';
import { capturingLogger } from '../helpers/logs.js';
import { serve, type Running } from '../helpers/servers.js';

/** As a service reads it: its env through EnvReader (which trims), then the lookup. */
const projectIdFrom = (env: Env, logger: Logger) =>
  fromConfig(new EnvReader('test', env).common(), logger);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once get() returns something other than undefined, or after timeoutMs. */
async function settle(
  get: () => string | undefined,
  timeoutMs = 3000,
): Promise<string | undefined> {
  for (const deadline = Date.now() + timeoutMs; get() === undefined && Date.now() < deadline;)
    await sleep(10);
  return get();
}

/** Waits for the first log line (up to timeoutMs). */
async function firstLine(
  lines: string[],
  timeoutMs: number,
): Promise<Record<string, unknown> | undefined> {
  for (const deadline = Date.now() + timeoutMs; lines.length === 0 && Date.now() < deadline;)
    await sleep(10);
  return lines[0] === undefined ? undefined : (JSON.parse(lines[0]) as Record<string, unknown>);
}

/** A metadata server whose project-id answer is given: body, and whether it says Metadata-Flavor. */
async function metadataServer(
  body: string,
  flavor = true,
  status = 200,
): Promise<Running & { asked: () => number }> {
  let asked = 0;
  const app = express();
  app.get('/computeMetadata/v1/project/project-id', (req, res) => {
    asked += 1;
    if (flavor) res.set('Metadata-Flavor', 'Google');
    res
      .status(status)
      .type('text/plain')
      .send(req.get('Metadata-Flavor') === 'Google' ? body : 'no flavor asked');
  });
  const running = await serve(app);
  return { ...running, asked: () => asked };
}

const NO_ID = 'no project id: log lines carry no trace field';

describe('projectIdFrom: the project id for the trace field', () => {
  let metadata: Awaited<ReturnType<typeof metadataServer>>;
  beforeAll(async () => {
    // Google's metadata server answers the id followed by nothing; a newline is trimmed anyway.
    metadata = await metadataServer('project-from-metadata\n');
  });
  afterAll(() => metadata.close());

  it('takes GOOGLE_CLOUD_PROJECT (trimmed), asking no metadata server', async () => {
    const before = metadata.asked();
    const get = projectIdFrom(
      { GOOGLE_CLOUD_PROJECT: ' my-project ', GCE_METADATA_HOST: metadata.host },
      capturingLogger().logger,
    );
    expect(get()).toBe('my-project');
    await sleep(100);
    expect(metadata.asked()).toBe(before);
  });

  it('asks the metadata server GCE_METADATA_HOST names (trimmed), once, in the background: undefined until it answers, then no warning', async () => {
    const { logger, lines } = capturingLogger();
    const before = metadata.asked();
    const get = projectIdFrom(
      { GOOGLE_CLOUD_PROJECT: ' ', GCE_METADATA_HOST: ` ${metadata.host} ` },
      logger,
    );
    expect(get()).toBeUndefined();
    expect(await settle(get)).toBe('project-from-metadata');
    await sleep(50);
    expect(metadata.asked() - before).toBe(1); // once known, never asked again
    expect(lines).toEqual([]);
  });

  it("GCE_METADATA_IP (trimmed) wins over GCE_METADATA_HOST, as in Google's clients", async () => {
    const get = projectIdFrom(
      { GCE_METADATA_IP: ` ${metadata.host} `, GCE_METADATA_HOST: '127.0.0.1:9' },
      capturingLogger().logger,
    );
    expect(await settle(get)).toBe('project-from-metadata');
  });

  it.each([
    ['without Metadata-Flavor: Google', 'lying-project', false, 200],
    ['with an empty body', '  \n', true, 200],
    ['with a status other than 200', 'not-found-page', true, 404],
  ])(
    'an answer %s is not taken: three asks, then one warning naming the host',
    async (_what, body, flavor, status) => {
      const server = await metadataServer(body, flavor, status);
      try {
        const { logger, lines } = capturingLogger();
        const get = projectIdFrom({ GCE_METADATA_HOST: server.host }, logger);
        expect(await firstLine(lines, 1000)).toMatchObject({
          severity: 'WARNING',
          host: server.host,
          message: NO_ID,
        });
        expect(get()).toBeUndefined();
        expect(server.asked()).toBe(3);
        expect(lines).toHaveLength(1);
      } finally {
        await server.close();
      }
    },
  );

  it('nobody listening: three tries 0.5, 1 and 1.5 s apart, then the warning; with nothing named, nothing is tried or logged', async () => {
    const dead = capturingLogger();
    const none = capturingLogger();
    const started = Date.now();
    const get = projectIdFrom({ GCE_METADATA_HOST: '127.0.0.1:9' }, dead.logger);
    // Off Google Cloud (no GCE_METADATA_*, no K_SERVICE) nothing is sent anywhere: no tries, so no warning either.
    const getNone = projectIdFrom({}, none.logger);
    expect(Date.now() - started).toBeLessThan(100); // the service is not held up
    expect(await firstLine(dead.lines, 6000)).toMatchObject({
      host: '127.0.0.1:9',
      message: NO_ID,
    });
    // A lower bound only: a slow machine makes it later, never earlier.
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
    expect(get()).toBeUndefined();
    await sleep(300);
    expect(getNone()).toBeUndefined();
    expect(none.lines).toEqual([]);
  });
});
