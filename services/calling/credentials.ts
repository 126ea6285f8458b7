import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/**
 * What GOOGLE_APPLICATION_CREDENTIALS names, checked at start: the two kinds of credentials
 * google-auth-library mints ID tokens for the receiving service's URL from. Nothing secret is kept.
 */
type Credentials =
  | { type: 'service_account'; file: string; account: string }
  | { type: 'impersonated_service_account'; file: string; account: string; delegates: string[] };

/** The credentials as checked, and the JSON they came from (secret: for google-auth-library only). */
export interface CheckedCredentials {
  credentials: Credentials;
  json: Record<string, unknown>;
}

/** The fix for credentials that cannot call Cloud Run, and for a missing or broken file. */
const IMPERSONATE =
  'run `gcloud auth application-default login --impersonate-service-account=SA` for a service account SA ' +
  'that may invoke the receiving service (you need roles/iam.serviceAccountTokenCreator on SA)';

const REFUSED: Readonly<Record<string, string>> = {
  authorized_user:
    "user credentials (type authorized_user): their ID tokens are for an OAuth client, not the receiving service's URL, " +
    'and Cloud Run refuses them',
  external_account:
    'workload identity federation credentials (type external_account), which google-auth-library mints no ID tokens from',
  external_account_authorized_user:
    'workforce identity federation credentials (type external_account_authorized_user), which google-auth-library mints no ID tokens from',
};

const MAX_BYTES = 64 * 1024;
// As gcloud writes it (…/serviceAccounts/TARGET:generateAccessToken), at most 256 characters, as
// google-auth-library takes no more; the source is the user's credentials or a key.
const IMPERSONATION_URL =
  /^https:\/\/iamcredentials\.[a-z0-9.-]+\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generate(?:Access|Id)Token$/;
const SOURCE_TYPES: readonly unknown[] = ['authorized_user', 'service_account'];

/**
 * Reads and checks a credentials file, once: google-auth-library is given what was checked, so a
 * file changed later changes nothing. Throws an Error saying what is wrong and the fix; it never
 * quotes the file.
 */
export function readCredentials(file: string): CheckedCredentials {
  const json = parse(file, readSmallFile(file));
  return { credentials: check(file, json), json };
}

function check(file: string, json: Record<string, unknown>): Credentials {
  const type = typeof json.type === 'string' ? json.type : undefined;
  if (type === 'service_account') {
    const account = json.client_email;
    if (!nonEmpty(account) || !nonEmpty(json.private_key)) {
      throw new Error(
        `${file} is a service-account key without client_email or private_key; download the key again, or ${IMPERSONATE}`,
      );
    }
    return { type, file, account };
  }
  if (type === 'impersonated_service_account') {
    const url =
      typeof json.service_account_impersonation_url === 'string'
        ? json.service_account_impersonation_url
        : '';
    const account = url.length <= 256 ? IMPERSONATION_URL.exec(url)?.[1] : undefined;
    const source = json.source_credentials as { type?: unknown } | null | undefined;
    const delegates = json.delegates ?? [];
    if (
      account === undefined ||
      typeof source !== 'object' ||
      source === null ||
      !SOURCE_TYPES.includes(source.type)
    ) {
      throw new Error(
        `${file} is impersonated credentials without an IAM Credentials service_account_impersonation_url ` +
          `or user or service-account source_credentials; ${IMPERSONATE}`,
      );
    }
    if (!Array.isArray(delegates) || !delegates.every(nonEmpty)) {
      throw new Error(
        `${file}: its delegates must be a list of service-account emails; ${IMPERSONATE}`,
      );
    }
    return { type, file, account, delegates };
  }
  if (type !== undefined && Object.hasOwn(REFUSED, type))
    throw new Error(`${file} holds ${REFUSED[type]}; ${IMPERSONATE}`);
  // A type is named only when it looks like one: the field could hold anything, a secret too.
  const named =
    type !== undefined && /^[a-z_]{1,40}$/.test(type)
      ? `of type ${type}`
      : 'of a type it does not know';
  const what =
    type === undefined
      ? 'has no "type"'
      : `holds credentials ${named}, which calling mints no ID tokens from`;
  throw new Error(`${file} ${what}; use a service-account key, or ${IMPERSONATE}`);
}

function nonEmpty(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}

function readSmallFile(file: string): string {
  let fd: number;
  try {
    // Without blocking: a FIFO is refused below instead of hanging the start.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      `${file}: ${code === 'ENOENT' ? 'no such file' : `cannot be read (${code ?? 'error'})`}; ${IMPERSONATE}`,
    );
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile())
      throw new Error(
        `${file} is not a regular file; name the credentials file itself, or ${IMPERSONATE}`,
      );
    if (stat.size > MAX_BYTES)
      throw new Error(
        `${file} is too large for a credentials file (${stat.size} bytes); ${IMPERSONATE}`,
      );
    const buffer = Buffer.alloc(stat.size);
    const read = readSync(fd, buffer, 0, stat.size, 0);
    return buffer.subarray(0, read).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function parse(file: string, text: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Not the parser's message: it quotes the file, which holds a secret.
    throw new Error(`${file} is not JSON; ${IMPERSONATE}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new Error(`${file} is not a JSON object; ${IMPERSONATE}`);
  return json as Record<string, unknown>;
}
