import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import {
  INVOKER_ROLES,
  PolicyFile,
  addBinding,
  formatPolicy,
  isPublic,
  mayInvoke,
  memberProblem,
  parsePolicy,
  removeBinding,
  roleProblem,
  writePolicyFile,
  type Policy,
} from '../../../local/cloud-run-front/policy.js';

const EMAIL = 'caller@p-123456.iam.gserviceaccount.com';
const binding = (role: string, ...members: string[]): Policy => ({ bindings: [{ role, members }] });

describe('IAM policies as the front reads them', () => {
  it.each(['roles/run.invoker', 'roles/run.servicesInvoker', 'roles/run.admin', 'roles/editor', 'roles/owner'])(
    '%s carries run.routes.invoke',
    (role) => {
      expect(INVOKER_ROLES).toContain(role);
      expect(mayInvoke([binding(role, `serviceAccount:${EMAIL}`)], EMAIL)).toBe(true);
    },
  );

  it('no other role does, and neither does another member', () => {
    for (const role of ['roles/viewer', 'roles/run.developer', 'roles/run.viewer', 'roles/run.invoker2']) {
      expect({ role, may: mayInvoke([binding(role, `serviceAccount:${EMAIL}`)], EMAIL) }).toEqual({ role, may: false });
    }
    for (const member of [
      `serviceAccount:x${EMAIL}`,
      `group:${EMAIL}`,
      'domain:p-123456.iam.gserviceaccount.com',
      EMAIL,
      `SERVICEACCOUNT:${EMAIL}`,
    ]) {
      expect({ member, may: mayInvoke([binding('roles/run.invoker', member)], EMAIL) }).toEqual({ member, may: false });
    }
    expect(mayInvoke([], EMAIL)).toBe(false);
  });

  it('matches the email in any ASCII case, as receiving’s INVOKERS does, on both sides', () => {
    const upper = EMAIL.toUpperCase();
    expect(mayInvoke([binding('roles/run.invoker', `serviceAccount:${upper}`)], EMAIL)).toBe(true);
    expect(mayInvoke([binding('roles/run.invoker', `user:${EMAIL}`)], 'Caller@P-123456.iam.gserviceaccount.com')).toBe(true);
    // U+212A KELVIN SIGN, which a Unicode-aware lower-casing folds into "k": not the same address.
    expect(mayInvoke([binding('roles/run.invoker', 'user:kate@example.com')], 'KATE@example.com')).toBe(true);
    expect(mayInvoke([binding('roles/run.invoker', 'user:kate@example.com')], '\u212aate@example.com')).toBe(false);
    expect(mayInvoke([binding('roles/run.invoker', 'user:\u212aate@example.com')], 'kate@example.com')).toBe(false);
  });

  it('matches serviceAccount:, user:, allUsers and allAuthenticatedUsers, in any of the policies given', () => {
    for (const member of [`serviceAccount:${EMAIL}`, `user:${EMAIL}`, 'allUsers', 'allAuthenticatedUsers']) {
      expect({ member, may: mayInvoke([{ bindings: [] }, binding('roles/run.invoker', 'user:other@example.com', member)], EMAIL) }).toEqual(
        { member, may: true },
      );
    }
  });

  it('is public when allUsers, and only allUsers, holds an invoker role', () => {
    expect(isPublic(binding('roles/run.invoker', 'allUsers'))).toBe(true);
    expect(isPublic(binding('roles/owner', 'user:a@b.co', 'allUsers'))).toBe(true);
    expect(isPublic(binding('roles/viewer', 'allUsers'))).toBe(false);
    expect(isPublic(binding('roles/run.invoker', 'allAuthenticatedUsers'))).toBe(false);
    expect(isPublic({ bindings: [] })).toBe(false);
  });

  it('knows an IAM member and a role when it sees one', () => {
    for (const member of [
      'allUsers',
      'allAuthenticatedUsers',
      `serviceAccount:${EMAIL}`,
      'user:dev@example.com',
      'group:team@example.com',
      'domain:example.com',
    ]) {
      expect({ member, problem: memberProblem(member) }).toEqual({ member, problem: undefined });
    }
    for (const member of [
      ' allUsers',
      'allUsers ',
      'allusers',
      'xuser:dev@example.com',
      'user:dev@example.com ',
      'user:dev@example',
      'user:dev',
      'serviceAccount:',
      EMAIL,
      'domain:Example.com',
      'domain:localhost',
      'user:a b@example.com',
    ]) {
      expect({ member, problem: memberProblem(member) }).toEqual({
        member,
        problem: `"${member}" is not an IAM member: use serviceAccount:EMAIL, user:EMAIL, group:EMAIL, domain:DOMAIN, allUsers or allAuthenticatedUsers`,
      });
    }
    for (const role of ['roles/run.invoker', 'roles/Custom_1.x', 'projects/my-project-1/roles/myRole', 'organizations/123/roles/myRole']) {
      expect({ role, problem: roleProblem(role) }).toEqual({ role, problem: undefined });
    }
    for (const role of [
      'run.invoker',
      'roles/',
      'xroles/run.invoker',
      'roles/run.invoker ',
      'roles/run invoker',
      'projects/My/roles/x',
      'projects//roles/x',
      'projects/p/roles/',
      'organizations/abc/roles/x',
      'organizations/1/roles/',
    ]) {
      expect({ role, problem: roleProblem(role) }).toEqual({
        role,
        problem: `"${role}" is not a role: roles are named like roles/run.invoker`,
      });
    }
  });

  it('parses a policy file, keeping a typed etag and version', () => {
    const text = `bindings:\n  - role: roles/run.invoker\n    members: ["serviceAccount:${EMAIL}", allUsers]\netag: BwX=\nversion: 3\n`;
    expect(parsePolicy(text, 'p.yaml')).toEqual({
      bindings: [{ role: 'roles/run.invoker', members: [`serviceAccount:${EMAIL}`, 'allUsers'] }],
      etag: 'BwX=',
      version: 3,
    });
    expect(parsePolicy('etag: 12\nversion: "3"\n', 'p.yaml')).toEqual({ bindings: [] });
    expect(parsePolicy('', 'p.yaml')).toEqual({ bindings: [] });
    expect(parsePolicy('~', 'p.yaml')).toEqual({ bindings: [] });
    expect(parsePolicy('bindings: []', 'p.yaml')).toEqual({ bindings: [] });
  });

  it('refuses a file that is no policy, naming the file and every problem', () => {
    expect(() => parsePolicy('- a\n- b', 'p.yaml')).toThrow('p.yaml: an IAM policy is a mapping with bindings');
    expect(() => parsePolicy('hello', 'p.yaml')).toThrow('p.yaml: an IAM policy is a mapping with bindings');
    expect(() => parsePolicy('bindings: {}', 'p.yaml')).toThrow('p.yaml: bindings must be a list');
    expect(() => parsePolicy('bindings: [', 'p.yaml')).toThrow(/^p\.yaml: not valid YAML: \S.*[^\n]$/);
    const bad = [
      'bindings:',
      '  - members: [allUsers]',
      '  - role: run.invoker',
      '    members: [allUsers]',
      '  - role: roles/run.invoker',
      '    members: allUsers',
      '  - role: roles/run.invoker',
      '    members: [allUsers, 3]',
      '  - role: roles/run.invoker',
      '    members: [everyone, allUsers, "user:x"]',
      '  -',
    ].join('\n');
    expect(() => parsePolicy(bad, 'p.yaml')).toThrow(
      [
        'p.yaml: bindings[0] has no role',
        'bindings[1]: "run.invoker" is not a role: roles are named like roles/run.invoker',
        'bindings[2].members must be a list of members',
        'bindings[3].members must be a list of members',
        'bindings[4]: "everyone" is not an IAM member: use serviceAccount:EMAIL, user:EMAIL, group:EMAIL, domain:DOMAIN, allUsers or allAuthenticatedUsers',
        'bindings[4]: "user:x" is not an IAM member: use serviceAccount:EMAIL, user:EMAIL, group:EMAIL, domain:DOMAIN, allUsers or allAuthenticatedUsers',
        'bindings[5] has no role',
      ].join('; ') + '; bindings[5].members must be a list of members',
    );
  });

  it('adds a binding: to its role if there, else as a new one; a new etag; nothing when already there', () => {
    const start: Policy = { bindings: [{ role: 'roles/viewer', members: ['user:v@example.com'] }], etag: 'old', version: 3 };
    const added = addBinding(start, 'roles/run.invoker', `serviceAccount:${EMAIL}`);
    expect(added.bindings).toEqual([...start.bindings, { role: 'roles/run.invoker', members: [`serviceAccount:${EMAIL}`] }]);
    expect(added.version).toBe(3);
    expect(added.etag).toMatch(/^[A-Za-z0-9+/]{11}=$/);
    const twice = addBinding(added, 'roles/run.invoker', 'user:dev@example.com');
    expect(twice.bindings).toEqual([
      start.bindings[0],
      { role: 'roles/run.invoker', members: [`serviceAccount:${EMAIL}`, 'user:dev@example.com'] },
    ]);
    expect(twice.etag).not.toBe(added.etag);
    expect(addBinding(twice, 'roles/run.invoker', 'user:dev@example.com')).toBe(twice);
    expect(addBinding({ bindings: [] }, 'roles/run.invoker', 'allUsers').version).toBe(1);
    expect(start.bindings).toHaveLength(1);
  });

  it('removes a binding: the member from its role, the role when it is left empty; undefined if it was not there', () => {
    const start: Policy = {
      bindings: [
        { role: 'roles/viewer', members: ['user:v@example.com'] },
        { role: 'roles/run.invoker', members: ['user:a@example.com', 'user:b@example.com'] },
      ],
      etag: 'old',
      version: 3,
    };
    const one = removeBinding(start, 'roles/run.invoker', 'user:a@example.com')!;
    expect(one).toEqual({
      bindings: [start.bindings[0], { role: 'roles/run.invoker', members: ['user:b@example.com'] }],
      etag: one.etag,
      version: 3,
    });
    expect(one.etag).not.toBe('old');
    expect(one.etag).toMatch(/^[A-Za-z0-9+/]{11}=$/);
    expect(removeBinding(one, 'roles/run.invoker', 'user:b@example.com')!.bindings).toEqual([start.bindings[0]]);
    expect(removeBinding(start, 'roles/run.invoker', 'user:c@example.com')).toBeUndefined();
    expect(removeBinding(start, 'roles/owner', 'user:a@example.com')).toBeUndefined();
    expect(removeBinding(start, 'roles/run.invoker', 'user:v@example.com')).toBeUndefined();
    expect(removeBinding({ bindings: [{ role: 'roles/owner', members: ['allUsers'] }] }, 'roles/owner', 'allUsers')).toMatchObject({
      bindings: [],
      version: 1,
    });
  });

  it('prints a policy as gcloud does, with an etag and a version', () => {
    const printed = parse(formatPolicy(binding('roles/run.invoker', 'allUsers'))) as Policy;
    expect(printed).toEqual({ bindings: [{ role: 'roles/run.invoker', members: ['allUsers'] }], etag: printed.etag, version: 1 });
    expect(printed.etag).toMatch(/^[A-Za-z0-9+/]{11}=$/);
    expect(parse(formatPolicy({ bindings: [], etag: 'BwX=', version: 3 }))).toEqual({ bindings: [], etag: 'BwX=', version: 3 });
  });
});

describe('PolicyFile: a policy file read as it changes', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'policyfile-'));
    path = join(dir, 'receiving.yaml');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the file, and reads it again whenever it is rewritten', () => {
    writePolicyFile(path, binding('roles/run.invoker', 'allUsers'));
    const file = new PolicyFile(path);
    expect(file.current().bindings).toEqual([{ role: 'roles/run.invoker', members: ['allUsers'] }]);
    writePolicyFile(path, binding('roles/run.invoker', 'allAuthenticatedUsers'));
    expect(file.current().bindings).toEqual([{ role: 'roles/run.invoker', members: ['allAuthenticatedUsers'] }]);
    expect(readFileSync(path, 'utf8')).toContain('allAuthenticatedUsers');
    expect(readdirSync(dir)).toEqual(['receiving.yaml']); // no temporary file left behind
  });

  it('does not parse an unchanged file again (same time, size and inode)', () => {
    writeFileSync(path, 'bindings: [{role: roles/run.invoker, members: [allUsers]}]\n');
    utimesSync(path, 1_000_000, 1_000_000);
    const file = new PolicyFile(path);
    expect(isPublic(file.current())).toBe(true);
    writeFileSync(path, 'bindings: [{role: roles/run.invoker, members: [allFolks]}]\n'); // same size, same inode
    utimesSync(path, 1_000_000, 1_000_000);
    expect(isPublic(file.current())).toBe(true);
    // A rewrite it can see (here: a later time) is read, and this one is refused.
    utimesSync(path, 1_000_001, 1_000_001);
    expect(() => file.current()).toThrow('"allFolks" is not an IAM member');
  });

  it('throws naming the file when it is gone or broken, and recovers when it is fixed', () => {
    const file = new PolicyFile(path);
    expect(() => file.current()).toThrow(`${path}: ENOENT`);
    writeFileSync(path, 'bindings: {}');
    expect(() => file.current()).toThrow(`${path}: bindings must be a list`);
    expect(() => file.current()).toThrow(`${path}: bindings must be a list`);
    writePolicyFile(path, binding('roles/run.invoker', 'allUsers'));
    expect(isPublic(file.current())).toBe(true);
    rmSync(path);
    expect(() => file.current()).toThrow(`${path}: ENOENT`);
    writePolicyFile(path, binding('roles/run.invoker', 'allUsers'));
    expect(isPublic(file.current())).toBe(true);
  });
});
