/** The IAM member string for an email: service accounts and people are bound differently. */
export function iamMember(email: string): string {
  return /\.gserviceaccount\.com$/i.test(email) ? `serviceAccount:${email}` : `user:${email}`;
}
