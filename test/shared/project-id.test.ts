import express from 'express';
import { projectIdFrom } from '../../services/shared/project-id.js';
import { capturingLogger } from '../helpers/logs.js';
import { serve, startEmulator, type Running, type RunningEmulator } from '../helpers/servers.js';

/** Resolves once get() returns something other than undefined, or after timeoutMs. */
async function settle(get: () => string | undefined, timeoutMs = 3000): Promise<string | undefined> {
  for (const deadline = Date.now() + timeoutMs; get() === undefined && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return get();
}

describe('projectIdFrom: the project id for the trace field', () => {
  let emulator: RunningEmulator;
  beforeAll(async () => {
    emulator = await startEmulator({ PROJECT_ID: 'project-from-metadata' });
  });
  afterAll(() => emulator.close());

  it('takes GOOGLE_CLOUD_PROJECT (trimmed), asking no metadata server', async () => {
    let asked = 0;
    const app = express();
    app.use((_req, res) => {
      asked += 1;
      res.set('Metadata-Flavor', 'Google').type('text/plain').send('project-from-metadata');
    });
    const metadata = await serve(app);
    try {
      const get = projectIdFrom({ GOOGLE_CLOUD_PROJECT: ' my-project ', GCE_METADATA_HOST: metadata.host }, capturingLogger().logger);
      expect(get()).toBe('my-project');
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(asked).toBe(0);
      // The same server is asked when GOOGLE_CLOUD_PROJECT is blank (so the count above can fail).
      expect(await settle(projectIdFrom({ GOOGLE_CLOUD_PROJECT: ' ', GCE_METADATA_HOST: metadata.host }, capturingLogger().logger))).toBe(
        'project-from-metadata',
      );
      expect(asked).toBe(1);
    } finally {
      await metadata.close();
    }
  });

  it("asks the metadata server GCE_METADATA_HOST names, in the background: undefined until it answers", async () => {
    const get = projectIdFrom({ GCE_METADATA_HOST: emulator.host }, capturingLogger().logger);
    expect(get()).toBeUndefined();
    expect(await settle(get)).toBe('project-from-metadata');
  });

  it('GCE_METADATA_IP wins over GCE_METADATA_HOST, as in Google\'s clients', async () => {
    const get = projectIdFrom({ GCE_METADATA_IP: emulator.host, GCE_METADATA_HOST: '127.0.0.1:9' }, capturingLogger().logger);
    expect(await settle(get)).toBe('project-from-metadata');
  });

  describe('a metadata server that lies or is down', () => {
    let liar: Running;
    let asked = 0;
    beforeAll(async () => {
      const app = express();
      app.get('/computeMetadata/v1/project/project-id', (req, res) => {
        asked += 1;
        // No Metadata-Flavor header: not a metadata server, whatever it says.
        res.type('text/plain').send(req.get('Metadata-Flavor') === 'Google' ? 'not-a-project' : '');
      });
      liar = await serve(app);
    });
    afterAll(() => liar.close());

    it('an answer without Metadata-Flavor: Google is not taken; three tries, then one warning naming the host', async () => {
      const { logger, lines } = capturingLogger();
      const get = projectIdFrom({ GCE_METADATA_HOST: liar.host }, logger);
      for (let i = 0; i < 100 && lines.length === 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(get()).toBeUndefined();
      expect(asked).toBe(3);
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0]!)).toMatchObject({ severity: 'WARNING', host: liar.host, message: 'no project id: log lines carry no trace field' });
    });

    it('nobody listening: retried with a pause, then the same warning; the service is not held up', async () => {
      const { logger, lines } = capturingLogger();
      const started = Date.now();
      const get = projectIdFrom({ GCE_METADATA_HOST: '127.0.0.1:9' }, logger);
      expect(Date.now() - started).toBeLessThan(100);
      for (let i = 0; i < 400 && lines.length === 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(get()).toBeUndefined();
      expect(JSON.parse(lines[0]!)).toMatchObject({ host: '127.0.0.1:9', message: 'no project id: log lines carry no trace field' });
    });
  });

  it('off Google Cloud with no metadata server named: undefined, and nothing is sent anywhere', async () => {
    const { logger, lines } = capturingLogger();
    const get = projectIdFrom({}, logger);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(get()).toBeUndefined();
    expect(lines).toEqual([]);
  });
});
