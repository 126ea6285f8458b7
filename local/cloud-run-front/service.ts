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
  containerPort: number;
  region: string | undefined;
}

interface RawService {
  kind?: unknown;
  metadata?: { name?: unknown; labels?: Record<string, unknown>; annotations?: Record<string, unknown> };
  spec?: {
    template?: {
      spec?: {
        serviceAccountName?: unknown;
        timeoutSeconds?: unknown;
        containers?: { env?: { name?: unknown; value?: unknown }[]; ports?: { containerPort?: unknown }[] }[];
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
  if (typeof audiences === 'string') {
    const parsed: unknown = JSON.parse(audiences);
    if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) {
      throw new Error(`${source}: run.googleapis.com/custom-audiences must be a JSON list of strings`);
    }
    customAudiences = parsed as string[];
  }
  const region = raw.metadata.labels?.['cloud.googleapis.com/location'];
  const port = container.ports?.[0]?.containerPort;
  return {
    name: raw.metadata.name,
    invokerIamDisabled: String(annotations['run.googleapis.com/invoker-iam-disabled'] ?? '').toLowerCase() === 'true',
    customAudiences,
    timeoutSeconds: typeof spec.timeoutSeconds === 'number' ? spec.timeoutSeconds : 300,
    serviceAccount: typeof spec.serviceAccountName === 'string' ? spec.serviceAccountName : undefined,
    env,
    containerPort: typeof port === 'number' ? port : 8080,
    region: typeof region === 'string' ? region : undefined,
  };
}
