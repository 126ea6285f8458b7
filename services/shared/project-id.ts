import http from 'node:http';
import { CLOUD_RUN_METADATA_HOST, type CommonConfig } from './env.js';
import { httpGet } from './http.js';
import type { Logger } from './logger.js';

/**
 * The project id for Cloud Logging's trace field: GOOGLE_CLOUD_PROJECT, else the metadata server's
 * (looked up once in the background, and only on Cloud Run or where GCE_METADATA_HOST/IP names a
 * metadata server, so nothing is sent off this machine elsewhere). Undefined until known.
 */
export function projectIdFrom(config: CommonConfig, logger: Logger): () => string | undefined {
  let projectId = config.projectId;
  const host = config.metadataHost ?? (config.onCloudRun ? CLOUD_RUN_METADATA_HOST : undefined);
  if (projectId === undefined && host !== undefined) {
    const url = new URL(`http://${host}/computeMetadata/v1/project/project-id`);
    const agent = new http.Agent();
    void (async () => {
      for (let attempt = 1; attempt <= 3 && projectId === undefined; attempt += 1) {
        try {
          const answer = await httpGet(url, {
            agent,
            headers: { 'Metadata-Flavor': 'Google' },
            timeoutMs: 2000,
            maxBytes: 1024,
          });
          const text = answer.body.trim();
          if (
            answer.status === 200 &&
            answer.headers['metadata-flavor'] === 'Google' &&
            text !== ''
          )
            projectId = text;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 500 * attempt).unref());
        }
      }
      if (projectId === undefined)
        logger.warn({ host }, 'no project id: log lines carry no trace field');
    })();
  }
  return () => projectId;
}
