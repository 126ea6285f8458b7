import { EnvReader, type CommonConfig, type Env } from '../shared/env.js';
import { GOOGLE_ISSUERS } from '../shared/google-id-token.js';
import { emailKey } from '../shared/iam.js';

const TOKEN_CHECKS = ['verify', 'platform', 'none'] as const;
type TokenCheck = (typeof TOKEN_CHECKS)[number];

const GOOGLE_JWKS_URL = 'https://www.googleapis.com/oauth2/v3/certs';

/**
 * INVOKERS, the local stand-in for roles/run.invoker bindings: the emails of the IAM members it
 * names, as IAM matches them (shared/iam.ts).
 */
export type Invokers = ReadonlySet<string>;

export interface ReceivingConfig extends CommonConfig {
  /**
   * verify: check every token here; platform: trust tokens whose signature Cloud Run removed after
   * checking them, verify the others; none: trust Cloud Run IAM alone (the tutorial's service).
   */
  tokenCheck: TokenCheck;
  audiences: string[];
  jwksUrl: URL;
  issuers: string[];
  /** null: any caller with a valid token. */
  invokers: Invokers | null;
}

export function loadReceivingConfig(env: Env): ReceivingConfig {
  const read = new EnvReader('receiving', env);
  const tokenCheck = read.oneOf('TOKEN_CHECK', TOKEN_CHECKS, 'verify');
  const audiences = read.list('AUDIENCES');
  if (tokenCheck === 'verify' && audiences.length === 0) {
    read.problem(
      'AUDIENCES is required with TOKEN_CHECK=verify: the audiences tokens must be minted for, ' +
        "comma-separated; usually this service's own URL, e.g. https://receiving-abc123-uc.a.run.app",
    );
  }
  const jwksUrl = read.httpUrl('JWKS_URL', read.raw('JWKS_URL') ?? GOOGLE_JWKS_URL);
  const issuers = read.list('ISSUERS', GOOGLE_ISSUERS);
  if (issuers.length === 0) read.problem('ISSUERS must name at least one issuer');
  const invokerList = read.list('INVOKERS');
  const invokers =
    invokerList.length > 0 ? parseInvokers(invokerList, (p) => read.problem(p)) : null;
  if (invokers !== null && tokenCheck === 'none') {
    read.problem(
      'INVOKERS needs TOKEN_CHECK=verify or platform: without reading tokens there is no caller to match',
    );
  }
  return read.done({
    ...read.common(),
    tokenCheck,
    audiences,
    jwksUrl: jwksUrl ?? new URL(GOOGLE_JWKS_URL),
    issuers,
    invokers,
  });
}

const MEMBER = /^(serviceAccount|user):([^\s@:]+@[^\s@:]+\.[^\s@:]+)$/;

function parseInvokers(members: readonly string[], problem: (message: string) => void): Invokers {
  const emails = new Set<string>();
  for (const member of members) {
    const match = MEMBER.exec(member);
    if (match === null) {
      problem(
        `INVOKERS entry "${member}" is not an IAM member: use serviceAccount:EMAIL or user:EMAIL`,
      );
      continue;
    }
    emails.add(emailKey(match[2]!));
  }
  return emails;
}
