/**
 * IAM policies as the local chain keeps them: a service's own policy (the shape of
 * deploy/receiving-policy.yaml and of `gcloud run services get-iam-policy`), plus the project's,
 * where the roles that carry `run.routes.invoke` on every service live (Editor, Owner...). The
 * PolicyStore is the one place they change: the local Cloud Run Admin API writes it, the front
 * reads it.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { emailKey, iamMember } from '../../services/shared/iam.js';

export interface Binding {
  role: string;
  members: string[];
  condition?: unknown;
}

export interface Policy {
  bindings: Binding[];
  etag?: string;
  version?: number;
}

/**
 * Roles that carry run.routes.invoke, the permission Cloud Run IAM checks: roles/run.invoker and
 * roles/run.servicesInvoker (Cloud Run IAM roles), roles/run.admin ("can invoke services"), and the
 * basic roles Owner and Editor, which is why the tutorial's default compute identity (an Editor)
 * may call every service in its project.
 */
export const INVOKER_ROLES: readonly string[] = [
  'roles/run.invoker',
  'roles/run.servicesInvoker',
  'roles/run.admin',
  'roles/editor',
  'roles/owner',
];

/** The predefined roles a Cloud Run service's policy takes: the invoker roles and Cloud Run's others. */
export const SERVICE_ROLES: readonly string[] = [
  ...INVOKER_ROLES,
  'roles/viewer',
  'roles/run.developer',
  'roles/run.viewer',
  'roles/run.sourceViewer',
];

/** A status of Google's APIs (google.rpc.Code) with its message, as the Admin API answers it. */
export class IamError extends Error {
  constructor(
    readonly status: 'INVALID_ARGUMENT' | 'ABORTED' | 'FAILED_PRECONDITION',
    message: string,
  ) {
    super(message);
    this.name = 'IamError';
  }
}

/** IAM's answer to a set with a stale etag. */
export const CONCURRENT_CHANGE =
  'There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.';

const LOCAL = '[A-Za-z0-9!#$%&*+/=?^_`{|}~-]+(?:\\.[A-Za-z0-9!#$%&*+/=?^_`{|}~-]+)*';
const DOMAIN = '(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}';
const EMAIL = new RegExp(`^${LOCAL}@${DOMAIN}$`);
const DOMAIN_ONLY = new RegExp(`^${DOMAIN}$`);
/** Workforce and workload identity principals: an identifier of IAM's own, path segments of safe characters. */
const PRINCIPAL = /^principal(?:Set)?:\/\/iam\.googleapis\.com(?:\/[\w.@~%*:+=-]+)+$/;
const DELETED = /^deleted:(?:user|serviceAccount|group):([^?]+)\?uid=\d+$/;
const EMAIL_TYPES = new Set(['user', 'serviceAccount', 'group']);
/** IAM's limit on principals in one policy. */
export const MAX_MEMBERS = 1500;

/** Whether a text is an email IAM takes: RFC 5321's shape and lengths (64 before the @, 254 in all). */
const isEmail = (value: string) =>
  value.length <= 254 && value.indexOf('@') <= 64 && EMAIL.test(value);
const isServiceAccount = (email: string) => /\.gserviceaccount\.com$/i.test(email);

/** Why IAM would refuse a member, in IAM's words, or undefined when it takes it. */
export function memberProblem(member: string): string | undefined {
  if (member === 'allUsers' || member === 'allAuthenticatedUsers') return undefined;
  if (member.startsWith('principal://') || member.startsWith('principalSet://')) {
    return member.length <= 512 && PRINCIPAL.test(member)
      ? undefined
      : `Invalid principal identifier: ${member}.`;
  }
  const deleted = DELETED.exec(member);
  if (deleted) return isEmail(deleted[1]!) ? undefined : `Invalid member: ${member}.`;
  const colon = member.indexOf(':');
  if (colon <= 0) return 'Policy members must be of the form "<type>:<value>".';
  const type = member.slice(0, colon);
  const value = member.slice(colon + 1);
  if (EMAIL_TYPES.has(type)) {
    if (!isEmail(value)) return `Invalid member: ${member} (${value} is not an email address).`;
    if (type === 'serviceAccount' && !isServiceAccount(value)) {
      return `Invalid service account (${value}): service account emails end in .gserviceaccount.com.`;
    }
    if (type !== 'serviceAccount' && isServiceAccount(value))
      return `${value} is a service account: bind it as serviceAccount:${value}.`;
    return undefined;
  }
  if (type === 'domain')
    return DOMAIN_ONLY.test(value)
      ? undefined
      : `Invalid member: ${member} (${value} is not a domain).`;
  return `Invalid member type [${type}] in ${member}: use user:, serviceAccount:, group:, domain:, allUsers or allAuthenticatedUsers.`;
}

/** A member as IAM keeps it: the email after its type folded to lower case (ASCII only, as emailKey). */
export function memberKey(member: string): string {
  return member.replace(
    /^((?:deleted:)?(?:user|serviceAccount|group|domain):)([^?]*)/,
    (_all, type: string, email: string) => type + emailKey(email),
  );
}

/** Why IAM would refuse a role on a Cloud Run service, in IAM's words, or undefined. */
export function roleProblem(role: string): string | undefined {
  if (SERVICE_ROLES.includes(role)) return undefined;
  return `Role ${role} is not supported for this resource.`;
}

/**
 * The policy as IAM keeps it, or an IamError saying what IAM would refuse: every member and role
 * valid, at most MAX_MEMBERS members, version 1 to 3, no condition (the local front cannot evaluate
 * one); emails in lower case (memberKey); a role named twice becomes one binding, a member named
 * twice one member, a role with no member goes.
 */
export function normalizePolicy(policy: Policy): Policy {
  const count = policy.bindings.reduce((sum, b) => sum + b.members.length, 0);
  if (count > MAX_MEMBERS) {
    throw new IamError(
      'INVALID_ARGUMENT',
      `The number of members in the policy (${count}) is larger than the maximum allowed size ${MAX_MEMBERS}.`,
    );
  }
  if (policy.version !== undefined && ![1, 2, 3].includes(policy.version)) {
    throw new IamError(
      'INVALID_ARGUMENT',
      `Invalid policy version ${policy.version}: a policy's version is 1, 2 or 3.`,
    );
  }
  const byRole = new Map<string, Set<string>>();
  for (const binding of policy.bindings) {
    if (binding.condition !== undefined && binding.condition !== null) {
      throw new IamError(
        'INVALID_ARGUMENT',
        `Binding for ${binding.role} has a condition: the local chain does not evaluate IAM conditions.`,
      );
    }
    const problem =
      roleProblem(binding.role) ?? binding.members.map(memberProblem).find((p) => p !== undefined);
    if (problem !== undefined) throw new IamError('INVALID_ARGUMENT', problem);
    const members = byRole.get(binding.role) ?? new Set<string>();
    for (const member of binding.members) members.add(memberKey(member));
    byRole.set(binding.role, members);
  }
  const bindings = [...byRole]
    .filter(([, members]) => members.size > 0)
    .map(([role, members]) => ({ role, members: [...members] }));
  return { bindings, ...(policy.etag === undefined ? {} : { etag: policy.etag }), version: 1 };
}

/**
 * A policy from YAML or JSON text (a file of set-iam-policy, the store's files, deploy/): its shape
 * checked here, its members and roles by normalizePolicy.
 */
export function parsePolicy(text: string, source: string): Policy {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new Error(`${source}: not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  return policyFrom(doc, source);
}

/** A policy from a parsed document (a JSON body, a YAML file), its shape checked. */
export function policyFrom(doc: unknown, source: string): Policy {
  if (doc === null || doc === undefined) return { bindings: [] };
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new Error(`${source}: an IAM policy is a mapping with bindings`);
  const unknown = (fields: object, known: readonly string[], where: string) => {
    const name = Object.keys(fields).find((key) => !known.includes(key));
    if (name !== undefined)
      throw new Error(
        `${source}: unknown field "${name}" in ${where} (it has ${known.join(', ')})`,
      );
  };
  unknown(doc, ['bindings', 'etag', 'version', 'auditConfigs'], 'the policy');
  const { bindings, etag, version } = doc as {
    bindings?: unknown;
    etag?: unknown;
    version?: unknown;
  };
  const policy: Policy = { bindings: [] };
  if (etag !== undefined && etag !== null) {
    // gcloud sends etags in base64url, as apitools encodes bytes; IAM sends standard base64.
    if (typeof etag !== 'string' || !/^[\w+/-]+={0,2}$/.test(etag))
      throw new Error(`${source}: etag must be base64`);
    policy.etag = etag;
  }
  if (typeof version === 'number') policy.version = version;
  if (bindings !== undefined && bindings !== null && !Array.isArray(bindings))
    throw new Error(`${source}: bindings must be a list`);
  for (const [i, binding] of ((bindings as unknown[] | undefined) ?? []).entries()) {
    if (typeof binding === 'object' && binding !== null)
      unknown(binding, ['role', 'members', 'condition'], `bindings[${i}]`);
    const { role, members, condition } = (binding ?? {}) as {
      role?: unknown;
      members?: unknown;
      condition?: unknown;
    };
    if (typeof role !== 'string') throw new Error(`${source}: bindings[${i}] has no role`);
    if (!Array.isArray(members) || !members.every((m) => typeof m === 'string')) {
      throw new Error(`${source}: bindings[${i}].members must be a list of members`);
    }
    policy.bindings.push({
      role,
      members: [...members],
      ...(condition == null ? {} : { condition }),
    });
  }
  return policy;
}

/**
 * Whether a caller may invoke: some binding of an invoker role names it (serviceAccount: for a
 * service account's email, user: for anyone else's, the email in any case, as IAM matches it),
 * allUsers, or allAuthenticatedUsers (anyone with a valid Google token). group: and domain:
 * members cannot be resolved on one machine and never match.
 */
export function mayInvoke(policies: readonly Policy[], email: string): boolean {
  const accepted = new Set([memberKey(iamMember(email)), 'allUsers', 'allAuthenticatedUsers']);
  return policies.some((p) =>
    p.bindings.some(
      (b) => INVOKER_ROLES.includes(b.role) && b.members.some((m) => accepted.has(memberKey(m))),
    ),
  );
}

/** Whether anyone at all may invoke, without a token (allUsers holds an invoker role). */
export function isPublic(policy: Policy): boolean {
  return policy.bindings.some(
    (b) => INVOKER_ROLES.includes(b.role) && b.members.includes('allUsers'),
  );
}

/** Whether a binding names a member, as IAM compares members (memberKey). */
const names = (binding: Binding | undefined, member: string) =>
  binding?.members.some((m) => memberKey(m) === memberKey(member)) ?? false;

/** The policy with member added to role; the same object if it is already there. */
export function addBinding(policy: Policy, role: string, member: string): Policy {
  const existing = policy.bindings.find((b) => b.role === role);
  if (names(existing, member)) return policy;
  const bindings = existing
    ? policy.bindings.map((b) => (b === existing ? { role, members: [...b.members, member] } : b))
    : [...policy.bindings, { role, members: [member] }];
  return { ...policy, bindings };
}

/** The policy without member in role (a role left with no member goes), or undefined if it was not there. */
export function removeBinding(policy: Policy, role: string, member: string): Policy | undefined {
  const existing = policy.bindings.find((b) => b.role === role);
  if (existing === undefined || !names(existing, member)) return undefined;
  const members = existing.members.filter((m) => memberKey(m) !== memberKey(member));
  const bindings = policy.bindings.flatMap((b) =>
    b !== existing ? [b] : members.length > 0 ? [{ role, members }] : [],
  );
  return { ...policy, bindings };
}

/** As gcloud prints a policy: bindings, etag, version. */
export function formatPolicy(policy: Policy): string {
  const bindings = policy.bindings.map(({ role, members }) => ({ members, role }));
  return stringify(
    {
      ...(bindings.length > 0 ? { bindings } : {}),
      etag: policy.etag,
      version: policy.version ?? 1,
    },
    { indentSeq: false },
  );
}

/** Whether two etags are the same bytes, whichever base64 alphabet each is written in. */
const sameEtag = (a: string, b: string) =>
  Buffer.from(a, 'base64').equals(Buffer.from(b, 'base64'));

/**
 * A policy's etag: 8 bytes of base64, as IAM's, derived from its bindings, so that any change,
 * through the API or by hand, gives a new one. Two reads of the same bindings share an etag; a set
 * made from either loses nothing, since nothing changed in between.
 */
const etagOf = (bindings: readonly Binding[]) =>
  createHash('sha256').update(JSON.stringify(bindings)).digest().subarray(0, 8).toString('base64');

/** The largest store file read (a policy of MAX_MEMBERS members is well under it). */
const MAX_FILE_BYTES = 256 * 1024;

/** What tells a file's rewrite: times (the change time too, which a hand edit cannot set back), size, inode. */
const versionOf = (stat: Stats) => `${stat.mtimeMs}:${stat.ctimeMs}:${stat.size}:${stat.ino}`;

/**
 * A store file's text, read so that nothing in its place can block or flood this process: opened
 * without blocking (a FIFO would wait for a writer), refused unless a regular file once open (what
 * is checked is what is read, whatever was swapped in before), and read to at most MAX_FILE_BYTES
 * (a /proc file says it has none).
 */
function readPolicyFile(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`${path}: not a regular file`);
    const buffer = Buffer.alloc(MAX_FILE_BYTES + 1);
    let size = 0;
    for (let read = -1; read !== 0 && size < buffer.length; size += read)
      read = readSync(fd, buffer, size, buffer.length - size, null);
    if (size > MAX_FILE_BYTES) throw new Error(`${path}: larger than ${MAX_FILE_BYTES} bytes`);
    return buffer.toString('utf8', 0, size);
  } finally {
    closeSync(fd);
  }
}

/**
 * The services' IAM policies, one YAML file each in `dir`: the local Cloud Run Admin API changes
 * them (set, with IAM's etag check), the front reads them on every request. Every read, check and
 * write of a set runs synchronously in the one process that owns the store (npm start holds its
 * state directory alone), so two sets can never interleave: the second one carries a stale etag and
 * is refused. A file edited by hand is read again when its modification time, size or inode
 * changes; one that is not a regular file, is too large, or cannot be read or parsed gives an error
 * naming it and the way out, and the store serves on.
 */
export class PolicyStore {
  private readonly cache = new Map<string, { seen: string; policy?: Policy; problem?: string }>();

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  file(service: string): string {
    return join(this.dir, `${service}.yaml`);
  }

  /** Starts a service's policy afresh (npm start, from deploy/). */
  reset(service: string, policy: Policy): Policy {
    return this.write(service, normalizePolicy({ bindings: policy.bindings }));
  }

  /** The policy as it is now; an IamError (FAILED_PRECONDITION) naming the file when it cannot be read. */
  current(service: string): Policy {
    const path = this.file(service);
    let seen: string;
    try {
      seen = versionOf(statSync(path));
    } catch (err) {
      this.cache.delete(service);
      throw this.unreadable(
        service,
        (err as NodeJS.ErrnoException).code === 'ENOENT'
          ? `${path}: no such file`
          : (err as Error).message,
      );
    }
    let entry = this.cache.get(service);
    if (entry?.seen !== seen) {
      try {
        const { bindings } = normalizePolicy(parsePolicy(readPolicyFile(path), path));
        entry = { seen, policy: { bindings, etag: etagOf(bindings), version: 1 } };
      } catch (err) {
        // parsePolicy's and readPolicyFile's messages name the file; normalizePolicy's do not.
        const message = (err as Error).message;
        entry = { seen, problem: err instanceof IamError ? `${path}: ${message}` : message };
      }
      this.cache.set(service, entry);
    }
    if (entry.problem !== undefined) throw this.unreadable(service, entry.problem);
    return entry.policy!;
  }

  /**
   * setIamPolicy: replaces the policy, if `policy.etag` (when given) is the current one's; without
   * an etag, replaces whatever is there, a policy that cannot be read included. Returns the policy
   * kept, with its etag.
   */
  set(service: string, policy: Policy): Policy {
    const kept = normalizePolicy({
      bindings: policy.bindings,
      ...(policy.version === undefined ? {} : { version: policy.version }),
    });
    if (policy.etag !== undefined && !sameEtag(this.current(service).etag!, policy.etag))
      throw new IamError('ABORTED', CONCURRENT_CHANGE);
    return this.write(service, kept);
  }

  private write(service: string, { bindings }: Policy): Policy {
    const path = this.file(service);
    const temp = `${path}.${process.pid}.tmp`;
    writeFileSync(temp, formatPolicy({ bindings }).replace(/^etag: .*\n/m, ''));
    // Whatever stood in its place (a directory, a FIFO) is not a policy: a set without an etag replaces it.
    if (statSync(path, { throwIfNoEntry: false })?.isFile() === false)
      rmSync(path, { recursive: true, force: true });
    renameSync(temp, path);
    const policy = { bindings, etag: etagOf(bindings), version: 1 };
    this.cache.set(service, { seen: versionOf(statSync(path)), policy });
    return policy;
  }

  private unreadable(service: string, problem: string): IamError {
    return new IamError(
      'FAILED_PRECONDITION',
      `The IAM policy of ${service} cannot be read: ${problem}. Restart npm start to rewrite it ` +
        `from deploy/, or replace it whole: gcloud run services set-iam-policy ${service} POLICY_FILE (a file without an etag).`,
    );
  }
}
