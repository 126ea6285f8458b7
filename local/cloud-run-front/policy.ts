/**
 * IAM policies as the local Cloud Run front reads them: a service's own policy (the shape of
 * deploy/receiving-policy.yaml and of `gcloud run services get-iam-policy`), plus the project's,
 * where the roles that carry `run.routes.invoke` on every service live (Editor, Owner...).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { emailKey } from '../../services/shared/iam.js';

export interface Binding {
  role: string;
  members: string[];
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

const MEMBER =
  /^(?:allUsers|allAuthenticatedUsers|(?:user|serviceAccount|group):[^\s@:]+@[^\s@:]+\.[^\s@:]+|domain:[a-z0-9.-]+\.[a-z]{2,})$/;
const ROLE = /^(?:roles\/[A-Za-z0-9_.]+|projects\/[a-z0-9-]+\/roles\/[A-Za-z0-9_.]+|organizations\/\d+\/roles\/[A-Za-z0-9_.]+)$/;

/** Why a member string is not one IAM takes, or undefined when it is. */
export function memberProblem(member: string): string | undefined {
  if (MEMBER.test(member)) return undefined;
  return (
    `"${member}" is not an IAM member: use serviceAccount:EMAIL, user:EMAIL, group:EMAIL, domain:DOMAIN, ` +
    'allUsers or allAuthenticatedUsers'
  );
}

export function roleProblem(role: string): string | undefined {
  return ROLE.test(role) ? undefined : `"${role}" is not a role: roles are named like roles/run.invoker`;
}

/** A policy from YAML or JSON text, with every member and role checked. */
export function parsePolicy(text: string, source: string): Policy {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new Error(`${source}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const problems: string[] = [];
  const policy: Policy = { bindings: [] };
  if (doc === null) return policy;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`${source}: an IAM policy is a mapping with bindings`);
  const { bindings, etag, version } = doc as { bindings?: unknown; etag?: unknown; version?: unknown };
  if (typeof etag === 'string') policy.etag = etag;
  if (typeof version === 'number') policy.version = version;
  if (bindings !== undefined && !Array.isArray(bindings)) throw new Error(`${source}: bindings must be a list`);
  for (const [i, binding] of ((bindings as unknown[] | undefined) ?? []).entries()) {
    const { role, members } = (binding ?? {}) as { role?: unknown; members?: unknown };
    if (typeof role !== 'string') problems.push(`bindings[${i}] has no role`);
    else if (roleProblem(role)) problems.push(`bindings[${i}]: ${roleProblem(role)}`);
    if (!Array.isArray(members) || !members.every((m) => typeof m === 'string')) {
      problems.push(`bindings[${i}].members must be a list of members`);
      continue;
    }
    for (const member of members) {
      const problem = memberProblem(member);
      if (problem) problems.push(`bindings[${i}]: ${problem}`);
    }
    policy.bindings.push({ role: role as string, members: [...members] }); // kept only if no problem
  }
  if (problems.length > 0) throw new Error(`${source}: ${problems.join('; ')}`);
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

/** The policy with member added to role, and a new etag; unchanged (same object) if already there. */
export function addBinding(policy: Policy, role: string, member: string): Policy {
  const existing = policy.bindings.find((b) => b.role === role);
  if (existing?.members.includes(member)) return policy;
  const bindings = existing
    ? policy.bindings.map((b) => (b === existing ? { role, members: [...b.members, member] } : b))
    : [...policy.bindings, { role, members: [member] }];
  return { ...policy, bindings, etag: newEtag(), version: policy.version ?? 1 };
}

/** The policy without member in role (a role left with no member goes), or undefined if it was not there. */
export function removeBinding(policy: Policy, role: string, member: string): Policy | undefined {
  const existing = policy.bindings.find((b) => b.role === role);
  if (!existing?.members.includes(member)) return undefined;
  const members = existing.members.filter((m) => m !== member);
  const bindings = policy.bindings.flatMap((b) => (b !== existing ? [b] : members.length > 0 ? [{ role, members }] : []));
  return { ...policy, bindings, etag: newEtag(), version: policy.version ?? 1 };
}

/** As gcloud prints a policy: bindings, etag, version. */
export function formatPolicy(policy: Policy): string {
  return stringify({ bindings: policy.bindings, etag: policy.etag ?? newEtag(), version: policy.version ?? 1 });
}

const newEtag = () => randomBytes(8).toString('base64');

/** Writes a policy file whole (a reader never sees half of it). */
export function writePolicyFile(path: string, policy: Policy): void {
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, formatPolicy(policy));
  renameSync(temp, path);
}

/**
 * A policy file that may change while the front runs (`npm run local -- run services
 * add-iam-policy-binding ...` rewrites it): looked at (one stat) on every request, and re-read when
 * its modification time, size or inode changed, so a change holds from the next request.
 */
export class PolicyFile {
  private seen: string | undefined;
  private policy: Policy | undefined;
  private problem: string | undefined;

  constructor(readonly path: string) {}

  /** The current policy; throws naming the file and its problem if it cannot be read or parsed. */
  current(): Policy {
    let version: string;
    try {
      const stat = statSync(this.path);
      version = `${stat.mtimeMs}:${stat.size}:${stat.ino}`;
    } catch (err) {
      this.seen = undefined;
      throw new Error(`${this.path}: ${(err as Error).message}`);
    }
    if (version !== this.seen) {
      this.seen = version;
      try {
        this.policy = parsePolicy(readFileSync(this.path, 'utf8'), this.path);
        this.problem = undefined;
      } catch (err) {
        this.problem = (err as Error).message;
      }
    }
    if (this.problem !== undefined) throw new Error(this.problem);
    return this.policy!;
  }
}
