/**
 * The files in `deploy/` (Cloud Run service manifests and IAM policies) hold `${NAME}` placeholders
 * for what differs per project: project id and number, region, images. This resolves them and
 * checks what gcloud would not: every value well-formed (a value is pasted into YAML, so a stray
 * `:` or newline could change the document), no service on the default compute identity, custom
 * audiences a JSON list, and calling asking for an audience its target accepts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import {
  CUSTOM_AUDIENCES,
  serviceFrom,
  type ServiceManifest,
} from '../../local/cloud-run-front/service.js';
import { ConfigError } from '../../services/shared/env.js';

interface Placeholder {
  readonly pattern: RegExp;
  readonly meaning: string;
}

const IMAGE =
  /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+(?::\w[\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

/** Every placeholder `deploy/` may use, what it is and what a value must look like. */
export const PLACEHOLDERS: Readonly<Record<string, Placeholder>> = {
  PROJECT_ID: {
    pattern: /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/,
    meaning:
      'the project id: 6 to 30 lowercase letters, digits or hyphens (gcloud config get-value project)',
  },
  PROJECT_NUMBER: {
    pattern: /^[1-9]\d{0,18}$/,
    meaning:
      "the project's number (gcloud projects describe PROJECT_ID --format='value(projectNumber)')",
  },
  REGION: {
    pattern: /^[a-z]+(?:-[a-z]+)+\d+$/,
    meaning: 'a Cloud Run region such as us-central1',
  },
  RECEIVING_IMAGE: {
    pattern: IMAGE,
    meaning:
      "receiving's image, e.g. us-central1-docker.pkg.dev/PROJECT_ID/cloudrun-auth/receiving:TAG",
  },
  CALLING_IMAGE: {
    pattern: IMAGE,
    meaning:
      "calling's image, e.g. us-central1-docker.pkg.dev/PROJECT_ID/cloudrun-auth/calling:TAG",
  },
};

export interface DeployFile {
  /** File name inside deploy/, e.g. `receiving.yaml`. */
  readonly name: string;
  readonly text: string;
}

/** The YAML files of a deploy directory, by name. */
export function readDeployDir(dir: string): DeployFile[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.yaml'))
    .sort()
    .map((name) => ({ name, text: readFileSync(join(dir, name), 'utf8') }));
}

const PLACEHOLDER = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** The placeholder names a text uses, each once, in order of first use. */
export function placeholdersIn(text: string): string[] {
  return [...new Set([...text.matchAll(PLACEHOLDER)].map((m) => m[1]!))];
}

const DEFAULT_IDENTITY =
  /-compute@developer\.gserviceaccount\.com$|@appspot\.gserviceaccount\.com$/;

/**
 * Resolves every placeholder in `files` with `values` and checks the result. Throws a ConfigError
 * naming every problem at once: a placeholder without a value, a value for no placeholder, a
 * malformed value, and the checks on the resolved services.
 */
export function renderDeploy(
  files: readonly DeployFile[],
  values: Readonly<Record<string, string>>,
): DeployFile[] {
  const problems: string[] = [];
  const found = new Set(files.flatMap((f) => placeholdersIn(f.text)));
  // In the table's order, so messages and usage read alike; unknown names last.
  const used = new Set([...Object.keys(PLACEHOLDERS).filter((name) => found.has(name)), ...found]);
  for (const name of used) {
    const placeholder = PLACEHOLDERS[name];
    const value = values[name];
    if (placeholder === undefined)
      problems.push(`\${${name}} in deploy/ is not a known placeholder`);
    else if (value === undefined) problems.push(`${name} is required: ${placeholder.meaning}`);
    else if (!placeholder.pattern.test(value))
      problems.push(`${name} must be ${placeholder.meaning}; got "${value}"`);
  }
  for (const name of Object.keys(values)) {
    if (!used.has(name))
      problems.push(`${name} is not a placeholder in deploy/ (they are: ${[...used].join(', ')})`);
  }
  if (problems.length > 0) throw new ConfigError('render-deploy', problems);

  const rendered = files.map((f) => ({
    name: f.name,
    text: f.text.replace(PLACEHOLDER, (_m, name: string) => values[name]!),
  }));
  checkServices(rendered, values, problems);
  if (problems.length > 0) throw new ConfigError('render-deploy', problems);
  return rendered;
}

function checkServices(
  files: readonly DeployFile[],
  values: Readonly<Record<string, string>>,
  problems: string[],
): void {
  /** Each service's own URLs and custom audiences: the audiences Cloud Run accepts for it. */
  const accepted = new Map<string, { name: string; audiences: string[] }>();
  const callers: { file: string; url: string; audience: string | undefined }[] = [];

  for (const file of files) {
    for (const doc of parseAllDocuments(file.text)) {
      if (doc.errors.length > 0) {
        problems.push(`${file.name}: not valid YAML: ${doc.errors[0]!.message}`);
        continue;
      }
      const content: unknown = doc.toJS();
      if ((content as { kind?: unknown } | null)?.kind !== 'Service') continue;
      let service: ServiceManifest;
      try {
        service = serviceFrom(content, file.name);
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
      const { name, serviceAccount: account } = service;
      if (account === undefined || account === '') {
        problems.push(
          `${file.name}: ${name} has no serviceAccountName; it would run as the default compute identity, a project Editor`,
        );
      } else if (DEFAULT_IDENTITY.test(account)) {
        problems.push(
          `${file.name}: ${name} runs as ${account}, a default identity (a project Editor); give it its own service account`,
        );
      }
      if (service.region !== undefined && values.PROJECT_NUMBER !== undefined) {
        const url = `https://${name}-${values.PROJECT_NUMBER}.${service.region}.run.app`;
        accepted.set(url, { name, audiences: [url, ...service.customAudiences] });
      }
      const url = service.env.URL;
      if (url !== undefined) callers.push({ file: file.name, url, audience: service.env.AUDIENCE });
    }
  }

  // calling asks the metadata server for AUDIENCE, or the origin of URL; Cloud Run refuses
  // (401) a token whose audience is neither the target's URL nor one of its custom audiences.
  for (const caller of callers) {
    let origin: string;
    try {
      origin = new URL(caller.url).origin;
    } catch {
      problems.push(`${caller.file}: URL must be an absolute URL, got "${caller.url}"`);
      continue;
    }
    const target = accepted.get(origin);
    const audience = caller.audience ?? origin;
    if (target !== undefined && !target.audiences.includes(audience)) {
      problems.push(
        `${caller.file}: AUDIENCE "${audience}" is not one ${target.name} accepts (${target.audiences.join(', ')}); ` +
          `add it to ${target.name}'s ${CUSTOM_AUDIENCES} or change AUDIENCE`,
      );
    }
  }
}
