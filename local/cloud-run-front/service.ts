/**
 * What the local front and launcher need from a Cloud Run service manifest (deploy/*.yaml, with its
 * placeholders resolved): how the service is reached and guarded, and how its container runs.
 */
import { parse } from 'yaml';

export interface ServiceManifest {
  name: string;
  /** run.googleapis.com/invoker-iam-disabled: 'true': Cloud Run checks no token at all. */
  invokerIamDisabled: boolean;
  /** run.googleapis.com/custom-audiences, besides the service's own URLs. */
  customAudiences: string[];
  /** spec.template.spec.timeoutSeconds (Cloud Run's default is 300). */
  timeoutSeconds: number;
  serviceAccount: string | undefined;
  /** The container's env, as its manifest sets it. */
  env: Record<string, string>;
}

interface RawService {
  kind?: unknown;
  metadata?: { name?: unknown; annotations?: Record<string, unknown> };
  spec?: {
    template?: {
      spec?: {
        serviceAccountName?: unknown;
        timeoutSeconds?: unknown;
        containers?: { env?: { name?: unknown; value?: unknown }[] }[];
      };
    };
  };
}

export function parseServiceManifest(text: string, source: string): ServiceManifest {
  const raw = parse(text) as RawService | null;
  if (raw?.kind !== 'Service' || typeof raw.metadata?.name !== 'string') {
    throw new Error(`${source}: not a Cloud Run service manifest (kind: Service with metadata.name)`);
  }
  const annotations = raw.metadata.annotations ?? {};
  const spec = raw.spec?.template?.spec ?? {};
  const container = spec.containers?.[0] ?? {};
  const env: Record<string, string> = {};
  for (const entry of container.env ?? []) {
    if (typeof entry.name === 'string') env[entry.name] = String(entry.value ?? '');
  }
  const audiences = annotations['run.googleapis.com/custom-audiences'];
  let customAudiences: string[] = [];
  if (audiences !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(String(audiences));
    } catch {
      parsed = undefined;
    }
    if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) {
      throw new Error(`${source}: run.googleapis.com/custom-audiences must be a JSON list of strings`);
    }
    customAudiences = parsed;
  }
  return {
    name: raw.metadata.name,
    invokerIamDisabled: String(annotations['run.googleapis.com/invoker-iam-disabled'] ?? '').toLowerCase() === 'true',
    customAudiences,
    timeoutSeconds: typeof spec.timeoutSeconds === 'number' ? spec.timeoutSeconds : 300,
    serviceAccount: typeof spec.serviceAccountName === 'string' ? spec.serviceAccountName : undefined,
    env,
  };
}
