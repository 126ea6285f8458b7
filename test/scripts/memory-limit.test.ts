import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { deployedRuntime, memoryCgroup, quantityToMiB } from '../../scripts/bench/memory-limit.js';

const run = promisify(execFile);

describe('the benchmark under the deployed memory limit', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'memory-limit-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads memory quantities as Cloud Run writes them', () => {
    expect(quantityToMiB('256Mi')).toBe(256);
    expect(quantityToMiB('1Gi')).toBe(1024);
    expect(quantityToMiB('512M')).toBe(488);
    expect(quantityToMiB('2G')).toBe(1907);
    expect(quantityToMiB('524288Ki')).toBe(512);
    expect(quantityToMiB('268435456')).toBe(256);
    expect(() => quantityToMiB('256 MB')).toThrow(
      '"256 MB" is not a memory quantity such as 256Mi',
    );
    expect(() => quantityToMiB('')).toThrow('is not a memory quantity');
  });

  it("takes each service's limit and NODE_OPTIONS from its manifest in deploy/", () => {
    expect(deployedRuntime('calling')).toEqual({
      memoryMiB: 256,
      nodeOptions: '--max-semi-space-size=16',
    });
    expect(deployedRuntime('receiving')).toEqual({
      memoryMiB: 256,
      nodeOptions: '--max-semi-space-size=16',
    });
  });

  it('a manifest without NODE_OPTIONS has none; one without a memory limit is refused, naming the field', () => {
    const container = (extra: string) =>
      `kind: Service\nspec:\n  template:\n    spec:\n      containers:\n        - image: x\n${extra}`;
    writeFileSync(
      join(dir, 'calling.yaml'),
      container('          resources:\n            limits:\n              memory: 512Mi\n'),
    );
    expect(deployedRuntime('calling', dir)).toEqual({ memoryMiB: 512 });
    writeFileSync(
      join(dir, 'receiving.yaml'),
      container('          env:\n            - name: NODE_OPTIONS\n              value: --x\n'),
    );
    expect(() => deployedRuntime('receiving', dir)).toThrow(
      'deploy/receiving.yaml sets no memory limit (resources.limits.memory)',
    );
  });

  it('cgroup v1: a group under memory/ with the limit in bytes, and a command that joins it, then becomes the process', async () => {
    mkdirSync(join(dir, 'memory'));
    const group = memoryCgroup('calling', 256, dir);
    if (!('wrap' in group)) throw new Error(group.unavailable);
    const path = join(dir, 'memory', `bench-calling-${process.pid}`);
    expect(readFileSync(join(path, 'memory.limit_in_bytes'), 'utf8')).toBe(
      String(256 * 1024 * 1024),
    );
    // The process that writes its pid into the group is the one that then runs (exec): node prints its own pid.
    const { stdout } = await run(group.wrap[0]!, [
      ...group.wrap.slice(1),
      process.execPath,
      '-e',
      'console.log(process.pid)',
    ]);
    expect(readFileSync(join(path, 'cgroup.procs'), 'utf8').trim()).toBe(stdout.trim());
    expect(() => group.remove()).not.toThrow();
  });

  it('cgroup v2: the memory controller enabled for children, the limit in memory.max', () => {
    writeFileSync(join(dir, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    const group = memoryCgroup('receiving', 512, dir);
    expect('wrap' in group).toBe(true);
    expect(readFileSync(join(dir, 'cgroup.subtree_control'), 'utf8')).toBe('+memory');
    expect(readFileSync(join(dir, `bench-receiving-${process.pid}`, 'memory.max'), 'utf8')).toBe(
      String(512 * 1024 * 1024),
    );
  });

  it('says why it cannot, rather than running unlimited', () => {
    expect(memoryCgroup('calling', 256, dir)).toEqual({
      unavailable: 'no memory cgroup controller is mounted',
    });
    writeFileSync(join(dir, 'cgroup.controllers'), 'cpu io pids\n');
    expect(memoryCgroup('calling', 256, dir)).toEqual({
      unavailable: 'the cgroup v2 hierarchy has no memory controller',
    });
    rmSync(join(dir, 'cgroup.controllers'));
    writeFileSync(join(dir, 'memory'), 'a file where the controller should be');
    expect(memoryCgroup('calling', 256, dir)).toEqual({
      unavailable: 'cannot make a memory cgroup here (ENOTDIR; it needs root)',
    });
  });
});
