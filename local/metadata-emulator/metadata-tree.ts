import type { EmulatorConfig } from './config.js';
import { INSTANCE_NAME, instanceIdFor, REGION, ZONE } from './identity.js';

/**
 * The static part of the metadata server, as a tree. Leaves are what a plain GET returns; the
 * dynamic `token` and `identity` endpoints are served beside it, as the real server leaves them out
 * of recursive listings.
 */
export type MetadataLeaf = string | number | readonly string[];
export interface MetadataDir {
  readonly [name: string]: MetadataNode;
}
export type MetadataNode = MetadataLeaf | MetadataDir;

export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

export function buildMetadataTree(config: EmulatorConfig): MetadataDir {
  const account = (aliases: string[]): MetadataDir => ({
    aliases,
    email: config.serviceAccount,
    scopes: [CLOUD_PLATFORM_SCOPE],
  });
  return {
    instance: {
      attributes: {},
      hostname: `${INSTANCE_NAME}.${ZONE}.c.${config.projectId}.internal`,
      id: Number(instanceIdFor(config)),
      name: INSTANCE_NAME,
      region: `projects/${config.projectNumber}/regions/${REGION}`,
      zone: `projects/${config.projectNumber}/zones/${ZONE}`,
      'service-accounts': {
        default: account(['default']),
        [config.serviceAccount]: account(['default']),
      },
    },
    project: {
      attributes: {},
      'numeric-project-id': Number(config.projectNumber),
      'project-id': config.projectId,
    },
    universe: {
      'universe-domain': 'googleapis.com',
    },
  };
}

export function isDir(node: MetadataNode): node is MetadataDir {
  return typeof node === 'object' && !Array.isArray(node);
}

export function lookup(root: MetadataDir, segments: readonly string[]): MetadataNode | undefined {
  let node: MetadataNode = root;
  for (const segment of segments) {
    if (!isDir(node) || !Object.hasOwn(node, segment)) return undefined;
    node = node[segment]!;
  }
  return node;
}

/** A plain GET: a leaf's text, or a directory's entries, sub-directories ending in `/`. */
export function renderText(node: MetadataNode): string {
  if (isDir(node))
    return (
      Object.entries(node)
        .map(([name, child]) => (isDir(child) ? `${name}/` : name))
        .join('\n') + (Object.keys(node).length ? '\n' : '')
    );
  if (Array.isArray(node)) return node.map((item) => `${item}\n`).join('');
  return String(node);
}

/** `?recursive=true`: the subtree as JSON, hyphenated names in camelCase as the real server does. */
export function renderJson(node: MetadataNode): unknown {
  if (!isDir(node)) return node;
  return Object.fromEntries(
    Object.entries(node).map(([name, child]) => [camelCase(name), renderJson(child)]),
  );
}

function camelCase(name: string): string {
  // Keys holding emails or other data (anything but a plain hyphenated word) are kept as they are.
  return /^[a-z][a-z0-9-]*$/.test(name)
    ? name.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase())
    : name;
}
