import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Points google-auth-library in this process at a metadata server, as on Cloud Run, and hides any
 * developer credentials on the machine (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file) that
 * it would otherwise use first. Returns a function that undoes it.
 */
export function useMetadataServer(host: string, projectId = 'local-project'): () => void {
  const saved = { ...process.env };
  const gcloudConfig = mkdtempSync(join(tmpdir(), 'test-gcloud-'));
  process.env.GCE_METADATA_HOST = host;
  process.env.CLOUDSDK_CONFIG = gcloudConfig;
  // Else google-auth-library runs `gcloud config config-helper` (where gcloud is installed) to find one.
  process.env.GOOGLE_CLOUD_PROJECT = projectId;
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
  delete process.env.GCE_METADATA_IP;
  return () => {
    process.env = saved;
    rmSync(gcloudConfig, { recursive: true, force: true });
  };
}
