/**
 * IAM policies as the local chain keeps them: a service's own policy (the shape of
 * deploy/receiving-policy.yaml and of `gcloud run services get-iam-policy`), plus the project's,
 * where the roles that carry `run.routes.invoke` on every service live (Editor, Owner...). The
 * PolicyStore is the one place they change: the local Cloud Run Admin API writes it, the front
 * reads it.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { emailKey } from '../../services/shared/iam.js';

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
export const CONCURRENT_CHANGE = 'There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.';

const LOCAL = '[A-Za-z0-9!#$%&*+/=?^_`{|}~-]+(?:\\.[A-Za-z0-9!#$%&*+/=?^_`{|}~-]+)*';
const DOMAIN = '(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}';
const EMAIL = new RegExp(`^${LOCAL}@${DOMAIN}$`);
const DOMAIN_ONLY = new RegExp(`^${DOMAIN}$`);
const EMAIL_TYPES = new Set(['user', 'serviceAccount', 'group']);

/** Why IAM would refuse a member, in IAM's words, or undefined when it takes it. */
export function memberProblem(member: string): string | undefined {
  if (member === 'allUsers' || member === 'allAuthenticatedUsers') return undefined;
  if (member.startsWith('principal://') || member.startsWith('principalSet://')) return undefined;
  const colon = member.indexOf(':');
  if (colon <= 0) return 'Policy members must be of the form "<type>:<value>".';
  const type = member.slice(0, colon);
  const value = member.slice(colon + 1);
  if (EMAIL_TYPES.has(type)) {
    if (!EMAIL.test(value)) return `Invalid member: ${member} (${value} is not an email address).`;
    if (type === 'serviceAccount' && !/\.gserviceaccount\.com$/i.test(value)) {
      return `Invalid service account (${value}): service account emails end in .gserviceaccount.com.`;
    }
    return undefined;
  }
  if (type === 'domain') return DOMAIN_ONLY.test(value) ? undefined : `Invalid member: ${member} (${value} is not a domain).`;
  return `Invalid member type [${type}] in ${member}: use user:, serviceAccount:, group:, domain:, allUsers or allAuthenticatedUsers.`;
}

/** Why IAM would refuse a role on a Cloud Run service, in IAM's words, or undefined. */
export function roleProblem(role: string): string | undefined {
  if (SERVICE_ROLES.includes(role)) return undefined;
  return `Role ${role} is not supported for this resource.`;
}

/**
 * The policy as IAM keeps it, or an IamError saying what IAM would refuse: every member and role
 * valid, no condition (the local front cannot evaluate one); a role named twice becomes one
 * binding, a member named twice one member, a role with no member goes.
 */
export function normalizePolicy(policy: Policy): Policy {
  const byRole = new Map<string, string[]>();
  for (const binding of policy.bindings) {
    if (binding.condition !== undefined && binding.condition !== null) {
      throw new IamError(
        'INVALID_ARGUMENT',
        `Binding for ${binding.role} has a condition: the local chain does not evaluate IAM conditions.`,
      );
    }
    const problem = roleProblem(binding.role) ?? binding.members.map(memberProblem).find((p) => p !== undefined);
    if (problem !== undefined) throw new IamError('INVALID_ARGUMENT', problem);
    const members = byRole.get(binding.role) ?? [];
    for (const member of binding.members) if (!members.includes(member)) members.push(member);
    byRole.set(binding.role, members);
  }
  const bindings = [...byRole].filter(([, members]) => members.length > 0).map(([role, members]) => ({ role, members }));
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
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`${source}: an IAM policy is a mapping with bindings`);
  const { bindings, etag, version } = doc as { bindings?: unknown; etag?: unknown; version?: unknown };
  const policy: Policy = { bindings: [] };
  if (etag !== undefined && etag !== null) {
    // gcloud sends etags in base64url, as apitools encodes bytes; IAM sends standard base64.
    if (typeof etag !== 'string' || !/^[\w+/-]+={0,2}$/.test(etag)) throw new Error(`${source}: etag must be base64`);
    policy.etag = etag;
  }
  if (typeof version === 'number') policy.version = version;
  if (bindings !== undefined && bindings !== null && !Array.isArray(bindings)) throw new Error(`${source}: bindings must be a list`);
  for (const [i, binding] of ((bindings as unknown[] | undefined) ?? []).entries()) {
    const { role, members, condition } = (binding ?? {}) as { role?: unknown; members?: unknown; condition?: unknown };
    if (typeof role !== 'string') throw new Error(`${source}: bindings[${i}] has no role`);
    if (!Array.isArray(members) || !members.every((m) => typeof m === 'string')) {
      throw new Error(`${source}: bindings[${i}].members must be a list of members`);
    }
    policy.bindings.push({ role, members: [...members], ...(condition == null ? {} : { condition }) });
  }
  return policy;
}

/**
 * Whether a caller may invoke: some binding of an invoker role names its email (as serviceAccount:
 * or user:, the email in any case, as IAM matches it), allUsers, or allAuthenticatedUsers (anyone
 * with a valid Google token). group: and domain: members cannot be resolved on one machine and
 * never match.
 */
export function mayInvoke(policies: readonly Policy[], email: string): boolean {
  const key = emailKey(email);
  const accepted = new Set([`serviceAccount:${key}`, `user:${key}`, 'allUsers', 'allAuthenticatedUsers']);
  // The member with its email folded as the caller's is: "serviceAccount:A@B.C" -> "serviceAccount:a@b.c".
  const folded = (member: string) => member.replace(/:.*/, (email) => emailKey(email));
  return policies.some((p) => p.bindings.some((b) => INVOKER_ROLES.includes(b.role) && b.members.some((m) => accepted.has(folded(m)))));
}

/** Whether anyone at all may invoke, without a token (allUsers holds an invoker role). */
export function isPublic(policy: Policy): boolean {
  return policy.bindings.some((b) => INVOKER_ROLES.includes(b.role) && b.members.includes('allUsers'));
}

/** The policy with member added to role; the same object if it is already there. */
export function addBinding(policy: Policy, role: string, member: string): Policy {
  const existing = policy.bindings.find((b) => b.role === role);
  if (existing?.members.includes(member)) return policy;
  const bindings = existing
    ? policy.bindings.map((b) => (b === existing ? { role, members: [...b.members, member] } : b))
    : [...policy.bindings, { role, members: [member] }];
  return { ...policy, bindings };
}

/** The policy without member in role (a role left with no member goes), or undefined if it was not there. */
export function removeBinding(policy: Policy, role: string, member: string): Policy | undefined {
  const existing = policy.bindings.find((b) => b.role === role);
  if (!existing?.members.includes(member)) return undefined;
  const members = existing.members.filter((m) => m !== member);
  const bindings = policy.bindings.flatMap((b) => (b !== existing ? [b] : members.length > 0 ? [{ role, members }] : []));
  return { ...policy, bindings };
}

/** As gcloud prints a policy: bindings, etag, version. */
export function formatPolicy(policy: Policy): string {
  const bindings = policy.bindings.map(({ role, members }) => ({ members, role }));
  return stringify({ ...(bindings.length > 0 ? { bindings } : {}), etag: policy.etag, version: policy.version ?? 1 }, { indentSeq: false });
}

/** Whether two etags are the same bytes, whichever base64 alphabet each is written in. */
const sameEtag = (a: string, b: string) => Buffer.from(a, 'base64').equals(Buffer.from(b, 'base64'));

/** A fresh etag: 8 bytes of base64, as IAM's. */
const newEtag = () => randomBytes(8).toString('base64');

/**
 * The services' IAM policies, one YAML file each in `dir`: the local Cloud Run Admin API changes
 * them (set, with IAM's etag check), the front reads them on every request. Every read, check and
 * write of a set runs synchronously in the one process that owns the store, so two sets can never
 * interleave: the second one carries a stale etag and is refused. A file edited by hand is read
 * again when its modification time, size or inode changes; one that cannot be read or parsed gives
 * an error naming it and the way out, and the store serves on.
 */
export class PolicyStore {
  private readonly cache = new Map<string, { seen: string; policy?: Policy; problem?: string }>();

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  file(service: string): string {
    return join(this.dir, `${service}.yaml`);
  }

  /** Starts a service's policy afresh (npm start, from deploy/), with a new etag. */
  reset(service: string, policy: Policy): Policy {
    const kept = { ...normalizePolicy({ bindings: policy.bindings }), etag: newEtag() };
    this.write(service, kept);
    return kept;
  }

  /** The policy as it is now; an IamError (FAILED_PRECONDITION) naming the file when it cannot be read. */
  current(service: string): Policy {
    const path = this.file(service);
    let seen: string;
    try {
      const stat = statSync(path);
      seen = `${stat.mtimeMs}:${stat.size}:${stat.ino}`;
    } catch (err) {
      this.cache.delete(service);
      throw this.unreadable(service, (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${path}: no such file` : (err as Error).message);
    }
    let entry = this.cache.get(service);
    if (entry?.seen !== seen) {
      try {
        const policy = normalizePolicy(parsePolicy(readFileSync(path, 'utf8'), path));
        if (policy.etag === undefined) throw new IamError('FAILED_PRECONDITION', 'it has no etag');
        entry = { seen, policy };
      } catch (err) {
        // parsePolicy's messages name the file; normalizePolicy's do not.
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
   * kept, with its new etag.
   */
  set(service: string, policy: Policy): Policy {
    const kept = { ...normalizePolicy({ bindings: policy.bindings }), etag: newEtag() };
    if (policy.etag !== undefined && !sameEtag(this.current(service).etag!, policy.etag)) throw new IamError('ABORTED', CONCURRENT_CHANGE);
    this.write(service, kept);
    return kept;
  }

  private write(service: string, policy: Policy): void {
    const path = this.file(service);
    const temp = `${path}.${process.pid}.tmp`;
    writeFileSync(temp, formatPolicy(policy));
    renameSync(temp, path);
    const stat = statSync(path);
    this.cache.set(service, { seen: `${stat.mtimeMs}:${stat.size}:${stat.ino}`, policy });
  }

  private unreadable(service: string, problem: string): IamError {
    return new IamError(
      'FAILED_PRECONDITION',
      `The IAM policy of ${service} cannot be read: ${problem}. Restart npm start to rewrite it ` +
        `from deploy/, or replace it whole: gcloud run services set-iam-policy ${service} POLICY_FILE (a file without an etag).`,
    );
  }
}
