import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/**
 * What GOOGLE_APPLICATION_CREDENTIALS names, checked at start: the two kinds of credentials
 * google-auth-library mints ID tokens for the receiving service's URL from. Nothing secret is kept.
 */
export type Credentials =
  | { type: 'service_account'; file: string; account: string }
  | { type: 'impersonated_service_account'; file: string; account: string; delegates: string[] };

/** The fix for credentials that cannot call Cloud Run, and for a missing or broken file. */
export const IMPERSONATE =
  'run `gcloud auth application-default login --impersonate-service-account=SA` for a service account SA ' +
  'that may invoke the receiving service (you need roles/iam.serviceAccountTokenCreator on SA)';

const REFUSED: Readonly<Record<string, string>> = {
  authorized_user:
    "user credentials (type authorized_user): their ID tokens are for an OAuth client, not the receiving service's URL, " +
    'and Cloud Run refuses them',
  external_account: 'workload identity federation credentials (type external_account), which google-auth-library mints no ID tokens from',
  external_account_authorized_user:
    'workforce identity federation credentials (type external_account_authorized_user), which google-auth-library mints no ID tokens from',
};

const MAX_BYTES = 64 * 1024;

/** Reads and checks a credentials file; throws an Error whose message says what is wrong and the fix. */
export function readCredentials(file: string): Credentials {
  const json = parse(file, readSmallFile(file));
  const type = typeof json.type === 'string' ? json.type : undefined;
  if (type === 'service_account') {
    const account = json.client_email;
    if (typeof account !== 'string' || typeof json.private_key !== 'string') {
      throw new Error(`${file} is a service-account key without client_email or private_key; download the key again, or ${IMPERSONATE}`);
    }
    return { type, file, account };
  }
  if (type === 'impersonated_service_account') {
    // As gcloud writes it: .../serviceAccounts/TARGET:generateAccessToken, delegates as emails.
    const url = typeof json.service_account_impersonation_url === 'string' ? json.service_account_impersonation_url : '';
    const account = /\/serviceAccounts\/([^/:]+):generate(?:Access|Id)Token$/.exec(url)?.[1];
    const source = json.source_credentials as { type?: unknown } | undefined;
    const delegates = json.delegates ?? [];
    if (account === undefined || typeof source !== 'object' || source === null || typeof source.type !== 'string') {
      throw new Error(
        `${file} is impersonated credentials without service_account_impersonation_url or source_credentials; ${IMPERSONATE}`,
      );
    }
    if (!Array.isArray(delegates) || !delegates.every((d) => typeof d === 'string')) {
      throw new Error(`${file}: its delegates must be a list of service-account emails; ${IMPERSONATE}`);
    }
    return { type, file, account, delegates };
  }
  if (type !== undefined && Object.hasOwn(REFUSED, type)) throw new Error(`${file} holds ${REFUSED[type]}; ${IMPERSONATE}`);
  const what =
    type === undefined ? 'has no "type"' : `holds credentials of type ${type.slice(0, 60)}, which calling mints no ID tokens from`;
  throw new Error(`${file} ${what}; use a service-account key, or ${IMPERSONATE}`);
}

function readSmallFile(file: string): string {
  let fd: number;
  try {
    // Without blocking: a FIFO is refused below instead of hanging the start.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`${file}: ${code === 'ENOENT' ? 'no such file' : `cannot be read (${code ?? 'error'})`}; ${IMPERSONATE}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new Error(`${file} is not a file; name the credentials file itself`);
    if (stat.size > MAX_BYTES) throw new Error(`${file} is too large for a credentials file (${stat.size} bytes)`);
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
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${file} is not a JSON object; ${IMPERSONATE}`);
  return json as Record<string, unknown>;
}
