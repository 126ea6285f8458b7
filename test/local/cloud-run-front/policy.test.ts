import { execFileSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  INVOKER_ROLES,
  PolicyStore,
  SERVICE_ROLES,
  addBinding,
  formatPolicy,
  isPublic,
  mayInvoke,
  memberProblem,
  normalizePolicy,
  parsePolicy,
  policyFrom,
  removeBinding,
  roleProblem,
  type IamError,
  type Policy,
} from '../../../local/cloud-run-front/policy.js';

const EMAIL = 'caller@p-123456.iam.gserviceaccount.com';
const binding = (role: string, ...members: string[]): Policy => ({ bindings: [{ role, members }] });

describe('IAM policies as the front reads them', () => {
  it.each([
    'roles/run.invoker',
    'roles/run.servicesInvoker',
    'roles/run.admin',
    'roles/editor',
    'roles/owner',
  ])('%s carries run.routes.invoke', (role) => {
    expect(INVOKER_ROLES).toContain(role);
    expect(mayInvoke([binding(role, `serviceAccount:${EMAIL}`)], EMAIL)).toBe(true);
  });

  it('no other role does, and neither does another member', () => {
    for (const role of [
      'roles/viewer',
      'roles/run.developer',
      'roles/run.viewer',
      'roles/run.invoker2',
    ]) {
      expect({ role, may: mayInvoke([binding(role, `serviceAccount:${EMAIL}`)], EMAIL) }).toEqual({
        role,
        may: false,
      });
    }
    for (const member of [
      `serviceAccount:x${EMAIL}`,
      `group:${EMAIL}`,
      'domain:p-123456.iam.gserviceaccount.com',
      EMAIL,
      `SERVICEACCOUNT:${EMAIL}`,
    ]) {
      expect({ member, may: mayInvoke([binding('roles/run.invoker', member)], EMAIL) }).toEqual({
        member,
        may: false,
      });
    }
    expect(mayInvoke([], EMAIL)).toBe(false);
  });

  it('matches the email in any ASCII case, as receiving’s INVOKERS does, on both sides', () => {
    const upper = EMAIL.toUpperCase();
    expect(mayInvoke([binding('roles/run.invoker', `serviceAccount:${upper}`)], EMAIL)).toBe(true);
    expect(
      mayInvoke(
        [binding('roles/run.invoker', `serviceAccount:${EMAIL}`)],
        'Caller@P-123456.iam.gserviceaccount.com',
      ),
    ).toBe(true);
    // U+212A KELVIN SIGN, which a Unicode-aware lower-casing folds into "k": not the same address.
    expect(
      mayInvoke([binding('roles/run.invoker', 'user:kate@example.com')], 'KATE@example.com'),
    ).toBe(true);
    expect(
      mayInvoke([binding('roles/run.invoker', 'user:kate@example.com')], '\u212aate@example.com'),
    ).toBe(false);
    expect(
      mayInvoke([binding('roles/run.invoker', 'user:\u212aate@example.com')], 'kate@example.com'),
    ).toBe(false);
  });

  it('matches a service account as serviceAccount:, anyone else as user:, and allUsers and allAuthenticatedUsers, in any policy given', () => {
    for (const member of [`serviceAccount:${EMAIL}`, 'allUsers', 'allAuthenticatedUsers']) {
      const policies = [
        { bindings: [] },
        binding('roles/run.invoker', 'user:other@example.com', member),
      ];
      expect({ member, may: mayInvoke(policies, EMAIL) }).toEqual({ member, may: true });
    }
    expect(mayInvoke([binding('roles/run.invoker', `user:${EMAIL}`)], EMAIL)).toBe(false);
    expect(
      mayInvoke([binding('roles/run.invoker', 'user:dev@example.com')], 'dev@example.com'),
    ).toBe(true);
    expect(
      mayInvoke(
        [binding('roles/run.invoker', 'serviceAccount:dev@example.com')],
        'dev@example.com',
      ),
    ).toBe(false);
  });

  it('is public when allUsers, and only allUsers, holds an invoker role', () => {
    expect(isPublic(binding('roles/run.invoker', 'allUsers'))).toBe(true);
    expect(isPublic(binding('roles/owner', 'user:a@b.co', 'allUsers'))).toBe(true);
    expect(isPublic(binding('roles/viewer', 'allUsers'))).toBe(false);
    expect(isPublic(binding('roles/run.invoker', 'allAuthenticatedUsers'))).toBe(false);
    expect(isPublic({ bindings: [] })).toBe(false);
  });

  it('takes the members IAM takes, and refuses the others in IAM’s kind of words', () => {
    for (const member of [
      'allUsers',
      'allAuthenticatedUsers',
      `serviceAccount:${EMAIL}`,
      'serviceAccount:123456789012-compute@developer.gserviceaccount.com',
      'user:dev@example.com',
      'user:first.last+tag@sub.example.co.uk',
      'group:team@example.com',
      'domain:example.com',
      'principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s',
      'principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*',
      'deleted:user:gone@example.com?uid=123456789012345678901',
      `user:${'a'.repeat(64)}@example.com`,
    ]) {
      expect({ member, problem: memberProblem(member) }).toEqual({ member, problem: undefined });
    }
    const refused: [string, string][] = [
      [EMAIL, 'Policy members must be of the form "<type>:<value>".'],
      [' allUsers', 'Policy members must be of the form "<type>:<value>".'],
      ['allusers', 'Policy members must be of the form "<type>:<value>".'],
      [':dev@example.com', 'Policy members must be of the form "<type>:<value>".'],
      ["user:a'@b.co", "Invalid member: user:a'@b.co (a'@b.co is not an email address)."],
      [
        'user:dev@example.com ',
        'Invalid member: user:dev@example.com  (dev@example.com  is not an email address).',
      ],
      [
        'user:dev@example',
        'Invalid member: user:dev@example (dev@example is not an email address).',
      ],
      ['user:dev', 'Invalid member: user:dev (dev is not an email address).'],
      [
        'user:a b@example.com',
        'Invalid member: user:a b@example.com (a b@example.com is not an email address).',
      ],
      [
        'user:a@@example.com',
        'Invalid member: user:a@@example.com (a@@example.com is not an email address).',
      ],
      [
        'user:.a@example.com',
        'Invalid member: user:.a@example.com (.a@example.com is not an email address).',
      ],
      ['group:a@-x.com', 'Invalid member: group:a@-x.com (a@-x.com is not an email address).'],
      ['serviceAccount:', 'Invalid member: serviceAccount: ( is not an email address).'],
      [
        'serviceAccount:dev@example.com',
        'Invalid service account (dev@example.com): service account emails end in .gserviceaccount.com.',
      ],
      ['domain:localhost', 'Invalid member: domain:localhost (localhost is not a domain).'],
      [`user:${EMAIL}`, `${EMAIL} is a service account: bind it as serviceAccount:${EMAIL}.`],
      [`group:${EMAIL}`, `${EMAIL} is a service account: bind it as serviceAccount:${EMAIL}.`],
      [
        `user:${'a'.repeat(65)}@example.com`,
        `Invalid member: user:${'a'.repeat(65)}@example.com (${'a'.repeat(65)}@example.com is not an email address).`,
      ],
      [
        `user:a@${'b.'.repeat(125)}com`,
        `Invalid member: user:a@${'b.'.repeat(125)}com (a@${'b.'.repeat(125)}com is not an email address).`,
      ],
      ['principal://', 'Invalid principal identifier: principal://.'],
      ['principal://x y', 'Invalid principal identifier: principal://x y.'],
      [
        'principalSet://iam.googleapis.com/../"x"',
        'Invalid principal identifier: principalSet://iam.googleapis.com/../"x".',
      ],
      [
        `principal://iam.googleapis.com/${'a'.repeat(500)}`,
        `Invalid principal identifier: principal://iam.googleapis.com/${'a'.repeat(500)}.`,
      ],
      [
        'deleted:user:gone@example.com',
        'Invalid member type [deleted] in deleted:user:gone@example.com: use user:, serviceAccount:, group:, domain:, allUsers or allAuthenticatedUsers.',
      ],
      ["deleted:user:a'b@example.com?uid=1", "Invalid member: deleted:user:a'b@example.com?uid=1."],
      [
        'xuser:dev@example.com',
        'Invalid member type [xuser] in xuser:dev@example.com: use user:, serviceAccount:, group:, domain:, allUsers or allAuthenticatedUsers.',
      ],
    ];
    for (const [member, problem] of refused)
      expect({ member, problem: memberProblem(member) }).toEqual({ member, problem });
  });

  it('takes the roles a Cloud Run service takes, and no other', () => {
    for (const role of SERVICE_ROLES)
      expect({ role, problem: roleProblem(role) }).toEqual({ role, problem: undefined });
    expect(SERVICE_ROLES).toEqual(
      expect.arrayContaining([
        ...INVOKER_ROLES,
        'roles/viewer',
        'roles/run.developer',
        'roles/run.viewer',
      ]),
    );
    for (const role of [
      'roles/run.invokr',
      'run.invoker',
      'roles/',
      'roles/run.invoker ',
      'roles/compute.admin',
      'projects/p/roles/x',
    ]) {
      expect({ role, problem: roleProblem(role) }).toEqual({
        role,
        problem: `Role ${role} is not supported for this resource.`,
      });
    }
  });

  it('normalizes a policy as IAM keeps it, and refuses what IAM refuses', () => {
    expect(
      normalizePolicy({
        bindings: [
          { role: 'roles/run.invoker', members: ['user:a@example.com', 'user:a@example.com'] },
          { role: 'roles/viewer', members: [] },
          { role: 'roles/run.invoker', members: ['user:b@example.com', 'user:a@example.com'] },
        ],
        etag: 'BwX=',
        version: 3,
      }),
    ).toEqual({
      bindings: [
        { role: 'roles/run.invoker', members: ['user:a@example.com', 'user:b@example.com'] },
      ],
      etag: 'BwX=',
      version: 1,
    });
    // Emails as IAM keeps them, in lower case: a member in another case is the same member.
    expect(
      normalizePolicy(
        binding(
          'roles/run.invoker',
          `serviceAccount:${EMAIL.toUpperCase()}`,
          `serviceAccount:${EMAIL}`,
          'allUsers',
        ),
      ),
    ).toEqual({
      bindings: [{ role: 'roles/run.invoker', members: [`serviceAccount:${EMAIL}`, 'allUsers'] }],
      version: 1,
    });
    const refusal = (policy: Policy) => {
      try {
        normalizePolicy(policy);
      } catch (err) {
        return [(err as IamError).status, (err as Error).message];
      }
      return undefined;
    };
    expect(refusal(binding('roles/run.invokr', 'allUsers'))).toEqual([
      'INVALID_ARGUMENT',
      'Role roles/run.invokr is not supported for this resource.',
    ]);
    expect(refusal(binding('roles/run.invoker', 'allUsers', 'nobody'))).toEqual([
      'INVALID_ARGUMENT',
      'Policy members must be of the form "<type>:<value>".',
    ]);
    expect(
      refusal({
        bindings: [
          { role: 'roles/run.invoker', members: ['allUsers'], condition: { expression: 'true' } },
        ],
      }),
    ).toEqual([
      'INVALID_ARGUMENT',
      'Binding for roles/run.invoker has a condition: the local chain does not evaluate IAM conditions.',
    ]);
    expect(
      refusal({
        bindings: [{ role: 'roles/run.invoker', members: ['allUsers'], condition: null }],
      }),
    ).toBeUndefined();
    const many = (n: number) =>
      binding(
        'roles/run.invoker',
        ...Array.from({ length: n }, (_, i) => `user:u${i}@example.com`),
      );
    expect(refusal(many(1500))).toBeUndefined();
    expect(refusal(many(1501))).toEqual([
      'INVALID_ARGUMENT',
      'The number of members in the policy (1501) is larger than the maximum allowed size 1500.',
    ]);
    for (const version of [1, 2, 3]) expect(refusal({ bindings: [], version })).toBeUndefined();
    for (const version of [0, 4, -1, 1.5]) {
      expect(refusal({ bindings: [], version })).toEqual([
        'INVALID_ARGUMENT',
        `Invalid policy version ${version}: a policy's version is 1, 2 or 3.`,
      ]);
    }
  });

  it('parses a policy file or body, keeping a base64 etag (either alphabet) and a version', () => {
    const text = `bindings:\n  - role: roles/run.invoker\n    members: ["serviceAccount:${EMAIL}", allUsers]\netag: BwX+/w==\nversion: 3\n`;
    expect(parsePolicy(text, 'p.yaml')).toEqual({
      bindings: [{ role: 'roles/run.invoker', members: [`serviceAccount:${EMAIL}`, 'allUsers'] }],
      etag: 'BwX+/w==',
      version: 3,
    });
    expect(parsePolicy('{"etag": "BwX-_w=="}', 'p.json')).toEqual({
      bindings: [],
      etag: 'BwX-_w==',
    });
    expect(parsePolicy('version: "3"\n', 'p.yaml')).toEqual({ bindings: [] });
    expect(parsePolicy('', 'p.yaml')).toEqual({ bindings: [] });
    expect(parsePolicy('~', 'p.yaml')).toEqual({ bindings: [] });
    expect(parsePolicy('bindings: []', 'p.yaml')).toEqual({ bindings: [] });
    expect(parsePolicy('bindings: ~\netag: ~', 'p.yaml')).toEqual({ bindings: [] });
    expect(policyFrom(undefined, 'policy')).toEqual({ bindings: [] });
  });

  it('refuses a file that is no policy, naming the file and the problem', () => {
    const cases: [string, string | RegExp][] = [
      ['- a\n- b', 'p.yaml: an IAM policy is a mapping with bindings'],
      ['hello', 'p.yaml: an IAM policy is a mapping with bindings'],
      ['bindings: {}', 'p.yaml: bindings must be a list'],
      ['bindings: [', /^p\.yaml: not valid YAML or JSON: \S.*[^\n]$/],
      ['etag: 12', 'p.yaml: etag must be base64'],
      ['etag: "not base64!"', 'p.yaml: etag must be base64'],
      ['bindings:\n  - members: [allUsers]', 'p.yaml: bindings[0] has no role'],
      ['bindings:\n  -', 'p.yaml: bindings[0] has no role'],
      [
        'bindings:\n  - role: roles/run.invoker\n    members: allUsers',
        'p.yaml: bindings[0].members must be a list of members',
      ],
      [
        'bindings:\n  - role: roles/run.invoker\n    members: [allUsers, 3]',
        'p.yaml: bindings[0].members must be a list of members',
      ],
    ];
    for (const [text, message] of cases) expect(() => parsePolicy(text, 'p.yaml')).toThrow(message);
  });

  it('adds a binding: to its role if there, else as a new one; the same object when already there', () => {
    const start: Policy = {
      bindings: [{ role: 'roles/viewer', members: ['user:v@example.com'] }],
      etag: 'old',
      version: 3,
    };
    const added = addBinding(start, 'roles/run.invoker', `serviceAccount:${EMAIL}`);
    expect(added).toEqual({
      ...start,
      bindings: [
        ...start.bindings,
        { role: 'roles/run.invoker', members: [`serviceAccount:${EMAIL}`] },
      ],
    });
    const twice = addBinding(added, 'roles/run.invoker', 'user:dev@example.com');
    expect(twice.bindings).toEqual([
      start.bindings[0],
      { role: 'roles/run.invoker', members: [`serviceAccount:${EMAIL}`, 'user:dev@example.com'] },
    ]);
    expect(addBinding(twice, 'roles/run.invoker', 'user:dev@example.com')).toBe(twice);
    expect(start.bindings).toHaveLength(1);
  });

  it('removes a binding: the member from its role, the role when it is left empty; undefined if it was not there', () => {
    const start: Policy = {
      bindings: [
        { role: 'roles/viewer', members: ['user:v@example.com'] },
        { role: 'roles/run.invoker', members: ['user:a@example.com', 'user:b@example.com'] },
      ],
      etag: 'old',
    };
    const one = removeBinding(start, 'roles/run.invoker', 'user:a@example.com')!;
    expect(one).toEqual({
      bindings: [start.bindings[0], { role: 'roles/run.invoker', members: ['user:b@example.com'] }],
      etag: 'old',
    });
    expect(removeBinding(one, 'roles/run.invoker', 'user:b@example.com')!.bindings).toEqual([
      start.bindings[0],
    ]);
    expect(removeBinding(start, 'roles/run.invoker', 'user:c@example.com')).toBeUndefined();
    expect(removeBinding(start, 'roles/owner', 'user:a@example.com')).toBeUndefined();
    expect(removeBinding(start, 'roles/run.invoker', 'user:v@example.com')).toBeUndefined();
    // A member in another case is the same member, as IAM compares them.
    expect(
      removeBinding(start, 'roles/run.invoker', 'user:A@Example.com')!.bindings[1]!.members,
    ).toEqual(['user:b@example.com']);
    expect(addBinding(start, 'roles/run.invoker', 'user:B@example.COM')).toBe(start);
    expect(
      removeBinding(
        { bindings: [{ role: 'roles/owner', members: ['allUsers'] }] },
        'roles/owner',
        'allUsers',
      ),
    ).toEqual({
      bindings: [],
    });
  });

  it('prints a policy as gcloud does: bindings (members, then role), etag, version', () => {
    expect(
      formatPolicy({ ...binding('roles/run.invoker', 'allUsers', 'user:a@b.co'), etag: 'BwX=' }),
    ).toBe(
      'bindings:\n- members:\n  - allUsers\n  - user:a@b.co\n  role: roles/run.invoker\netag: BwX=\nversion: 1\n',
    );
    expect(formatPolicy({ bindings: [], etag: 'ACAB', version: 3 })).toBe(
      'etag: ACAB\nversion: 3\n',
    );
  });
});

describe('PolicyStore: the policies the Admin API changes and the front reads', () => {
  let dir: string;
  let store: PolicyStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'policystore-'));
    store = new PolicyStore(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const aborted = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      return `${(err as IamError).status}: ${(err as Error).message}`;
    }
    return 'kept';
  };

  it('keeps a set whose etag is the current one, with a new etag, and refuses a stale etag as IAM does', () => {
    const first = store.reset('receiving', binding('roles/run.invoker', 'allUsers'));
    expect(first.etag).toMatch(/^[A-Za-z0-9+/]{11}=$/);
    expect(store.current('receiving')).toEqual(first);
    const second = store.set('receiving', {
      ...binding('roles/run.invoker', 'user:a@example.com'),
      etag: first.etag!,
    });
    expect(second.etag).not.toBe(first.etag);
    expect(store.current('receiving').bindings).toEqual([
      { role: 'roles/run.invoker', members: ['user:a@example.com'] },
    ]);
    expect(
      aborted(() =>
        store.set('receiving', {
          ...binding('roles/run.invoker', 'user:b@example.com'),
          etag: first.etag!,
        }),
      ),
    ).toBe(
      'ABORTED: There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.',
    );
    expect(store.current('receiving')).toEqual(second);
    // The same etag in base64url, as gcloud sends it, is the same etag.
    const url = Buffer.from(second.etag!, 'base64').toString('base64url');
    expect(aborted(() => store.set('receiving', { bindings: [], etag: url }))).toBe('kept');
    // No etag: replaces whatever is there.
    expect(aborted(() => store.set('receiving', binding('roles/run.invoker', 'allUsers')))).toBe(
      'kept',
    );
    expect(isPublic(store.current('receiving'))).toBe(true);
  });

  it('of many read-modify-writes from one read, exactly one is kept', () => {
    const read = store.reset('receiving', { bindings: [] });
    const outcomes = Array.from({ length: 20 }, (_, i) =>
      aborted(() =>
        store.set('receiving', addBinding(read, 'roles/run.invoker', `user:u${i}@example.com`)),
      ),
    );
    expect(outcomes.filter((o) => o === 'kept')).toHaveLength(1);
    expect(store.current('receiving').bindings).toEqual([
      { role: 'roles/run.invoker', members: ['user:u0@example.com'] },
    ]);
  });

  it('refuses an invalid policy and keeps the one it has', () => {
    const kept = store.reset('receiving', binding('roles/run.invoker', 'allUsers'));
    expect(aborted(() => store.set('receiving', binding('roles/run.invokr', 'allUsers')))).toBe(
      'INVALID_ARGUMENT: Role roles/run.invokr is not supported for this resource.',
    );
    expect(store.current('receiving')).toEqual(kept);
    expect(() => store.reset('receiving', binding('roles/run.invoker', "user:a'@b.co"))).toThrow(
      'Invalid member',
    );
  });

  it('writes a file whole, leaving no temporary file behind', () => {
    store.reset('receiving', binding('roles/run.invoker', 'allAuthenticatedUsers'));
    expect(readFileSync(store.file('receiving'), 'utf8')).toContain('allAuthenticatedUsers');
    expect(readdirSync(dir)).toEqual(['receiving.yaml']);
  });

  it('reads a file edited by hand when it changes, even in place at the same size with its time set back', () => {
    store.reset('receiving', { bindings: [] });
    const path = store.file('receiving');
    writeFileSync(path, 'bindings: [{role: roles/run.invoker, members: [allUsers]}]\n');
    utimesSync(path, 1_000_000, 1_000_000);
    expect(isPublic(store.current('receiving'))).toBe(true);
    writeFileSync(path, 'bindings: [{role: roles/run.invoker, members: [allFolks]}]\n'); // same size, same inode
    utimesSync(path, 1_000_000, 1_000_000); // the change time moved on all the same
    expect(() => store.current('receiving')).toThrow('Policy members must be of the form');
  });

  it('refuses a field a policy or a binding does not have, as IAM does (a misspelt condition would grant without one)', () => {
    const path = store.file('receiving');
    for (const [text, problem] of [
      [
        'bindings: [{role: roles/run.invoker, members: [allUsers], condtion: {expression: "false"}}]',
        'unknown field "condtion" in bindings[0] (it has role, members, condition)',
      ],
      [
        'bindings: []\nbogus: 1',
        'unknown field "bogus" in the policy (it has bindings, etag, version, auditConfigs)',
      ],
    ] as const) {
      writeFileSync(path, text);
      expect(aborted(() => store.current('receiving'))).toContain(
        `cannot be read: ${path}: ${problem}`,
      );
    }
    expect(() =>
      parsePolicy('bindings: []\nauditConfigs: []\netag: BwX=\nversion: 3', 'p'),
    ).not.toThrow();
  });

  it('keeps a deleted: member as IAM writes it, its email folded but not its type', () => {
    const member = 'deleted:serviceAccount:Old@p.iam.gserviceaccount.com?uid=123';
    const kept = store.reset('receiving', binding('roles/run.invoker', member));
    expect(kept.bindings[0]!.members).toEqual([
      'deleted:serviceAccount:old@p.iam.gserviceaccount.com?uid=123',
    ]);
    writeFileSync(store.file('receiving'), formatPolicy(kept) + '\n'); // read again from the file
    expect(store.current('receiving').bindings).toEqual(kept.bindings);
    expect(mayInvoke([kept], 'old@p.iam.gserviceaccount.com')).toBe(false);
  });

  it('reads at most 256 KiB of a file, whatever size it reports (a /proc file reports none)', () => {
    rmSync(store.file('receiving'), { force: true });
    symlinkSync('/proc/kallsyms', store.file('receiving'));
    expect(aborted(() => store.current('receiving'))).toContain(
      `${store.file('receiving')}: larger than 262144 bytes`,
    );
  });

  it('names the file, the problem and the way out when a policy cannot be read; a set without an etag repairs it', () => {
    const path = store.file('receiving');
    const way =
      'Restart npm start to rewrite it from deploy/, or replace it whole: gcloud run services set-iam-policy receiving POLICY_FILE (a file without an etag).';
    expect(aborted(() => store.current('receiving'))).toBe(
      `FAILED_PRECONDITION: The IAM policy of receiving cannot be read: ${path}: no such file. ${way}`,
    );
    for (const [text, problem] of [
      ['bindings: {}', `${path}: bindings must be a list`],
      ['bindings: [', `${path}: not valid YAML or JSON:`],
      [
        'bindings: [{role: roles/x, members: [allUsers]}]\netag: BwX=',
        `${path}: Role roles/x is not supported for this resource.`,
      ],
    ]) {
      writeFileSync(path, text!);
      const said = aborted(() => store.current('receiving'));
      expect(said).toContain(
        `FAILED_PRECONDITION: The IAM policy of receiving cannot be read: ${problem}`,
      );
      expect(said).toContain(way);
      // A set with an etag cannot be checked against it, and is refused the same way.
      expect(aborted(() => store.set('receiving', { bindings: [], etag: 'BwX=' }))).toBe(said);
    }
    expect(aborted(() => store.set('receiving', binding('roles/run.invoker', 'allUsers')))).toBe(
      'kept',
    );
    expect(isPublic(store.current('receiving'))).toBe(true);
  });

  it('never opens what is not a regular file, nor reads a huge one; a set without an etag replaces either', () => {
    const path = store.file('receiving');
    const makers: [() => void, string][] = [
      [() => execFileSync('mkfifo', [path]), 'not a regular file'],
      [() => mkdirSync(path), 'not a regular file'],
      [
        () => writeFileSync(path, `# ${'x'.repeat(256 * 1024)}\nbindings: []\n`),
        'larger than 262144 bytes',
      ],
    ];
    for (const [make, problem] of makers) {
      rmSync(path, { recursive: true, force: true });
      make();
      // A FIFO opened for reading would block this process until a writer came: the call returns.
      expect(aborted(() => store.current('receiving'))).toContain(
        `The IAM policy of receiving cannot be read: ${path}: ${problem}. Restart npm start`,
      );
      expect(aborted(() => store.set('receiving', binding('roles/run.invoker', 'allUsers')))).toBe(
        'kept',
      );
      expect(isPublic(store.current('receiving'))).toBe(true);
    }
  });

  it('gives a policy a new etag whenever its bindings change, by hand too, so a set read before a hand edit is refused', () => {
    const read = store.reset('receiving', binding('roles/run.invoker', 'allUsers'));
    expect(store.reset('receiving', binding('roles/run.invoker', 'allUsers')).etag).toBe(read.etag);
    writeFileSync(
      store.file('receiving'),
      'bindings: [{role: roles/run.invoker, members: [allUsers, "user:hand@example.com"]}]\n',
    );
    expect(aborted(() => store.set('receiving', { bindings: [], etag: read.etag! }))).toMatch(
      /^ABORTED: /,
    );
    expect(store.current('receiving').bindings[0]!.members).toContain('user:hand@example.com');
  });
});
