/** The IAM member string for an email: service accounts and people are bound differently. */
export function iamMember(email: string): string {
  return /\.gserviceaccount\.com$/i.test(email) ? `serviceAccount:${email}` : `user:${email}`;
}

/**
 * An email as IAM matches it: without regard to case (IAM hands back policy emails in another case
 * than they were granted in, docs/security.md). Only ASCII letters fold: a Unicode-aware
 * toLowerCase() would fold U+212A KELVIN SIGN into "k", so a look-alike address could pass for an
 * invoker.
 */
export function emailKey(email: string): string {
  return email.replace(/[A-Z]/g, (letter) => String.fromCharCode(letter.charCodeAt(0) + 32));
}
