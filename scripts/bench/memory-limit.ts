/**
 * Running a process under the memory limit its Cloud Run manifest sets, as Cloud Run runs its
 * container. Node sizes V8's heap from the memory it may use (libuv reads the cgroup's limit), so
 * a service on a machine with gigabytes free grows a heap it would never get in a 256 MiB instance.
 * The benchmark runs the chain under the deployed limit beside the unconstrained one, with and
 * without the NODE_OPTIONS the manifests set for it, where this machine lets it make a memory
 * cgroup (root, cgroup v1 or v2); elsewhere it says why it cannot.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

// scripts/bench/ in the sources, dist/scripts/bench/ when built.
const deployDir = fileURLToPath(
  new URL('../../', import.meta.url).href.replace(/\/dist\/$/, '/') + 'deploy/',
);

/** A Kubernetes memory quantity as Cloud Run takes it (`256Mi`, `1Gi`, `512M`) in MiB. */
export function quantityToMiB(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(quantity.trim());
  if (!match) throw new Error(`"${quantity}" is not a memory quantity such as 256Mi`);
  const bytes =
    Number(match[1]) *
    { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9, '': 1 }[match[2] ?? '']!;
  return Math.round(bytes / 1024 ** 2);
}

/** How deploy/SERVICE.yaml runs the service's container: its memory limit in MiB, and NODE_OPTIONS if it sets any. */
export function deployedRuntime(
  service: 'calling' | 'receiving',
  dir = deployDir,
): { memoryMiB: number; nodeOptions?: string } {
  const manifest = parse(readFileSync(join(dir, `${service}.yaml`), 'utf8')) as {
    spec?: {
      template?: {
        spec?: {
          containers?: {
            resources?: { limits?: { memory?: string } };
            env?: { name?: string; value?: string }[];
          }[];
        };
      };
    };
  };
  const container = manifest.spec?.template?.spec?.containers?.[0];
  const memory = container?.resources?.limits?.memory;
  if (memory === undefined)
    throw new Error(`deploy/${service}.yaml sets no memory limit (resources.limits.memory)`);
  const nodeOptions = container?.env?.find((e) => e.name === 'NODE_OPTIONS')?.value;
  return nodeOptions === undefined
    ? { memoryMiB: quantityToMiB(memory) }
    : { memoryMiB: quantityToMiB(memory), nodeOptions };
}

export type MemoryCgroup =
  | {
      /** Prefix for the command: the process joins the group, then becomes the command. */
      wrap: string[];
      /** Removes the group (once its process has ended). */
      remove: () => void;
    }
  | { unavailable: string };

/** A new memory cgroup limited to MIB, named NAME, or why this machine cannot make one. */
export function memoryCgroup(name: string, mib: number, root = '/sys/fs/cgroup'): MemoryCgroup {
  const v2 = existsSync(join(root, 'cgroup.controllers'));
  const base = v2 ? root : join(root, 'memory');
  if (v2 && !readFileSync(join(root, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('memory'))
    return { unavailable: 'the cgroup v2 hierarchy has no memory controller' };
  if (!v2 && !existsSync(base)) return { unavailable: 'no memory cgroup controller is mounted' };
  const group = join(base, `bench-${name}-${process.pid}`);
  try {
    if (v2) writeFileSync(join(root, 'cgroup.subtree_control'), '+memory');
    mkdirSync(group);
    writeFileSync(
      join(group, v2 ? 'memory.max' : 'memory.limit_in_bytes'),
      String(mib * 1024 * 1024),
    );
  } catch (err) {
    try {
      rmdirSync(group);
    } catch {
      // It was never made.
    }
    return {
      unavailable: `cannot make a memory cgroup here (${(err as NodeJS.ErrnoException).code ?? String(err)}; it needs root)`,
    };
  }
  return {
    wrap: ['sh', '-c', `echo $$ > '${join(group, 'cgroup.procs')}' && exec "$0" "$@"`],
    remove: () => {
      try {
        rmdirSync(group);
      } catch {
        // Still in use or already gone: the kernel keeps an empty group until it is removed.
      }
    },
  };
}
