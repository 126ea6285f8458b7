import fetch from 'node-fetch';
import type { Env } from './env.js';
import type { Logger } from './logger.js';

/**
 * The project id for Cloud Logging's trace field: GOOGLE_CLOUD_PROJECT, else the metadata server's
 * (looked up once in the background, and only on Cloud Run or where GCE_METADATA_HOST/IP names a
 * metadata server, so nothing is sent off this machine elsewhere). Undefined until known.
 * node-fetch, as everywhere else in the services: Node's own fetch would load undici (~15 ms)
 * during start-up, before the server listens.
 */
export function projectIdFrom(env: Env, logger: Logger): () => string | undefined {
  let projectId = env.GOOGLE_CLOUD_PROJECT?.trim() || undefined;
  const host = env.GCE_METADATA_IP?.trim() || env.GCE_METADATA_HOST?.trim() || (env.K_SERVICE ? '169.254.169.254' : '');
  if (projectId === undefined && host !== '') {
    void (async () => {
      for (let attempt = 1; attempt <= 3 && projectId === undefined; attempt += 1) {
        try {
          const response = await fetch(`http://${host}/computeMetadata/v1/project/project-id`, {
            headers: { 'Metadata-Flavor': 'Google' },
            signal: AbortSignal.timeout(2000),
          });
          const text = (await response.text()).trim();
          if (response.ok && response.headers.get('metadata-flavor') === 'Google' && text !== '') projectId = text;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 500 * attempt).unref());
        }
      }
      if (projectId === undefined) logger.warn({ host }, 'no project id: log lines carry no trace field');
    })();
  }
  return () => projectId;
}
