/**
 * The local stand-in for roles/run.invoker bindings: IAM member strings whose callers may invoke
 * the service. Emails compare case-insensitively, as IAM does, folding ASCII letters only: a
 * Unicode-aware toLowerCase() would fold U+212A KELVIN SIGN into "k", so a look-alike address could
 * pass for an invoker.
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
    emails.add(foldAscii(match[2]!));
  }
  return emails;
}

export function isInvoker(invokers: Invokers, email: string): boolean {
  return invokers.has(foldAscii(email));
}

function foldAscii(email: string): string {
  return email.replace(/[A-Z]/g, (letter) => String.fromCharCode(letter.charCodeAt(0) + 32));
}
