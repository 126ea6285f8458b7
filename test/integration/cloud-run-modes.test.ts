import type { Server } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import type { TokenHeader } from '../../services/calling/config.js';
import { freePort } from '../../scripts/lib/processes.js';
import { createCloudRunFront } from '../../local/cloud-run-front/front.js';
import { parseServiceManifest } from '../../local/cloud-run-front/service.js';
import { readDeployDir, renderDeploy } from '../../scripts/lib/deploy-manifests.js';
import { SAMPLE_VALUES } from '../helpers/deploy-values.js';
import { silentLogger } from '../helpers/logs.js';
import {
  startCalling,
  startEmulator,
  startReceiving,
  type Running,
  type RunningEmulator,
} from '../helpers/servers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
/** receiving's manifest as deployed (its timeout, its custom audiences: none). */
const renderedReceiving = renderDeploy(readDeployDir(join(root, 'deploy')), SAMPLE_VALUES).find(
  (f) => f.name === 'receiving.yaml',
)!.text;

/** calling → the local Cloud Run front door → receiving, in each token mode. */
describe('token modes behind Cloud Run IAM (the local front door)', () => {
  const fronts: Server[] = [];
  let emulator: RunningEmulator;
  const running: Running[] = [];
  beforeAll(async () => {
    emulator = await startEmulator();
  });
  afterAll(async () => {
    await Promise.all(running.map((r) => r.close()));
    for (const front of fronts) {
      front.closeAllConnections();
      front.close();
    }
    await emulator.close();
  });

  const chain = async (tokenCheck: 'verify' | 'platform', tokenHeader: TokenHeader) => {
    const frontPort = await freePort();
    const audience = `http://127.0.0.1:${frontPort}`;
    const receiving = await startReceiving({
      TOKEN_CHECK: tokenCheck,
      AUDIENCES: audience,
      JWKS_URL: emulator.jwksUrl.href,
    });
    // The real local Cloud Run front door, with calling's account as receiving's only invoker.
    const manifest = parseServiceManifest(renderedReceiving, 'deploy/receiving.yaml');
    const front = createCloudRunFront({
      service: () => manifest,
      url: audience,
      target: receiving.url,
      jwksUrl: emulator.jwksUrl,
      policies: () => [
        {
          bindings: [
            {
              role: 'roles/run.invoker',
              members: [`serviceAccount:${emulator.config.serviceAccount}`],
            },
          ],
        },
      ],
      logger: silentLogger(),
    });
    await new Promise<void>((resolve) => front.listen(frontPort, '127.0.0.1', resolve));
    fronts.push(front);
    const calling = await startCalling({
      URL: audience,
      TOKEN_HEADER: tokenHeader,
      GCE_METADATA_HOST: emulator.host,
    });
    running.push(receiving, calling);
    return calling.url;
  };

  it('platform + Authorization: receiving trusts the token Cloud Run checked and stripped', async () => {
    const res = await request(await chain('platform', 'authorization')).get('/');
    expect([res.status, res.text]).toEqual([200, 'Second service says: Hello World!']);
  });

  it('verify + Authorization fails behind IAM: the signature is gone by the time receiving sees it', async () => {
    const res = await request(await chain('verify', 'authorization')).get('/');
    expect(res.status).toBe(502);
    expect(res.text).toContain('answered 401');
    expect(res.text).toContain('Receiving said: token signature does not verify.');
    expect(res.text).toContain('run receiving with TOKEN_CHECK=platform, or set TOKEN_HEADER=both');
  });

  it('verify + TOKEN_HEADER=both: IAM reads X-Serverless-Authorization, receiving verifies Authorization (defense in depth)', async () => {
    const res = await request(await chain('verify', 'both')).get('/');
    expect([res.status, res.text]).toEqual([200, 'Second service says: Hello World!']);
  });

  it('platform + TOKEN_HEADER=x-serverless-authorization works too', async () => {
    const res = await request(await chain('platform', 'x-serverless-authorization')).get('/');
    expect(res.status).toBe(200);
  });
});
