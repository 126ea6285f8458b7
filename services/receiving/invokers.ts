import { emailKey } from '../shared/iam.js';

/**
 * The local stand-in for roles/run.invoker bindings: IAM member strings whose callers may invoke
 * the service, their emails matched as IAM matches them (shared/iam.ts).
 */
export type Invokers = ReadonlySet<string>;

const MEMBER = /^(serviceAccount|user):([^\s@:]+@[^\s@:]+\.[^\s@:]+)$/;

export function parseInvokers(members: readonly string[], problem: (message: string) => void): Invokers {
  const emails = new Set<string>();
  for (const member of members) {
    const match = MEMBER.exec(member);
    if (match === null) {
      problem(`INVOKERS entry "${member}" is not an IAM member: use serviceAccount:EMAIL or user:EMAIL`);
      continue;
    }
    emails.add(emailKey(match[2]!));
  }
  return emails;
}

export function isInvoker(invokers: Invokers, email: string): boolean {
  return invokers.has(emailKey(email));
}
