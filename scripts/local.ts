/**
 * `npm run local -- run services VERB SERVICE [flags]`: gcloud's IAM policy commands for machines
 * without gcloud, with gcloud's arguments, as a client of the running chain's local Cloud Run Admin
 * API (the one place the rules live). The change holds from the front's next request; deploy/ and
 * tracked files are never touched.
 *
 *   npm run local -- run services get-iam-policy receiving
 *   npm run local -- run services add-iam-policy-binding receiving --member=serviceAccount:EMAIL --role=roles/run.invoker
 *   npm run local -- run services remove-iam-policy-binding receiving --member=serviceAccount:EMAIL --role=roles/run.invoker
 *   npm run local -- run services set-iam-policy receiving POLICY_FILE
 *
 * Unlike gcloud, add and remove retry their read-modify-write with backoff when another change came
 * between their read and their write, until theirs is kept. --region, --project, --platform,
 * --format and --quiet are accepted and ignored, so a gcloud command line pastes as is; --condition
 * only as None (no condition), since the local front evaluates none.
 */
import { readFileSync } from 'node:fs';
import {
  addBinding,
  formatPolicy,
  parsePolicy,
  removeBinding,
  type Policy,
} from '../local/cloud-run-front/policy.js';
import { readChainFile, type ChainFile } from './lib/chain-file.js';

const VERBS = [
  'get-iam-policy',
  'add-iam-policy-binding',
  'remove-iam-policy-binding',
  'set-iam-policy',
] as const;
type Verb = (typeof VERBS)[number];
const IGNORED = new Set(['region', 'project', 'platform', 'format', 'quiet']);
/** How long add and remove keep retrying a read-modify-write that met a concurrent change. */
const RETRY_FOR_MS = 60_000;

const usage = `usage: npm run local -- run services ${VERBS.join('|')} SERVICE [--member=MEMBER --role=ROLE | POLICY_FILE]`;

class Failure extends Error {}
/** An ABORTED answer: another change came between this command's read and its write. */
class Concurrent extends Failure {}

const args = process.argv.slice(2);
const [group, resource, verb, ...rest] = args;
if (group !== 'run' || resource !== 'services' || !VERBS.includes(verb as Verb)) {
  process.stderr.write(`${usage}\n`);
  process.exit(2);
}
const command = `local.run.services.${verb}`;

try {
  await main(verb as Verb);
} catch (err) {
  process.stderr.write(`ERROR: (${command}) ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

async function main(verb: Verb): Promise<void> {
  const flags: Record<string, string> = {};
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i += 1) {
    const arg = rest[i]!;
    const flag = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    if (!flag) {
      positional.push(arg);
      continue;
    }
    const [, name, inline] = flag as unknown as [string, string, string | undefined];
    const value = inline ?? (name === 'quiet' ? '' : rest[++i]);
    if (value === undefined) throw new Failure(`argument --${name}: expected one argument`);
    // gcloud's --condition=None says "no condition"; the local front evaluates none, so takes no other.
    if (name === 'condition' && value !== 'None')
      throw new Failure(
        '--condition: the local chain does not evaluate IAM conditions; use --condition=None or leave it out',
      );
    if (!IGNORED.has(name) && !['member', 'role', 'condition'].includes(name))
      throw new Failure(`unrecognized arguments: --${name}`);
    flags[name] = value;
  }
  const wanted = verb === 'set-iam-policy' ? 2 : 1;
  if (positional.length !== wanted) {
    throw new Failure(
      `expected ${wanted === 2 ? 'SERVICE POLICY_FILE' : 'one SERVICE'}, got ${positional.length === 0 ? 'none' : positional.join(' ')}`,
    );
  }
  const [service, policyFile] = positional as [string, string | undefined];
  const api = await adminApi(readChainFile(), service);

  if (verb === 'get-iam-policy') return void process.stdout.write(formatPolicy(await api.get()));
  if (verb === 'set-iam-policy') {
    let policy: Policy;
    try {
      policy = parsePolicy(readFileSync(policyFile!, 'utf8'), policyFile!);
    } catch (err) {
      throw new Failure((err as Error).message);
    }
    return updated(service, await api.set(policy));
  }
  const { member, role } = flags;
  if (member === undefined) throw new Failure('argument --member: Must be specified.');
  if (role === undefined) throw new Failure('argument --role: Must be specified.');
  const deadline = Date.now() + RETRY_FOR_MS;
  for (let attempt = 0; ; attempt += 1) {
    const policy = await api.get();
    const changed =
      verb === 'add-iam-policy-binding'
        ? addBinding(policy, role, member)
        : removeBinding(policy, role, member);
    if (changed === undefined)
      throw new Failure(
        'Policy binding with the specified principal, role, and condition not found!',
      );
    if (changed === policy) return updated(service, policy); // already there: nothing to write
    try {
      return updated(service, await api.set(changed));
    } catch (err) {
      if (!(err instanceof Concurrent) || Date.now() > deadline) throw err;
      // Exponential backoff with full jitter, as IAM asks: 20 ms, 40 ms... up to 1 s.
      await new Promise((resolve) =>
        setTimeout(resolve, Math.random() * Math.min(1000, 20 * 2 ** attempt)),
      );
    }
  }
}

function updated(service: string, policy: Policy): void {
  process.stderr.write(`Updated IAM policy for service [${service}].\n`);
  process.stdout.write(formatPolicy(policy));
}

/** getIamPolicy and setIamPolicy on one service, with an access token of the chain's metadata server. */
async function adminApi(chain: ChainFile, service: string) {
  const token = await accessToken(chain);
  const resource = `${chain.admin}v1/projects/${chain.projectId}/locations/${chain.region}/services/${encodeURIComponent(service)}`;
  const call = async (method: string, body?: unknown): Promise<Policy> => {
    let response: Response;
    try {
      response = await fetch(`${resource}:${method}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new Failure(
        `the local Admin API at ${chain.admin} did not answer (${causeOf(err)}): is npm start still running?`,
      );
    }
    const json = (await response.json().catch(() => ({}))) as {
      error?: { status?: string; message?: string };
    } & Policy;
    if (response.ok)
      return {
        bindings: json.bindings ?? [],
        ...(json.etag ? { etag: json.etag } : {}),
        version: json.version ?? 1,
      };
    const message = `${json.error?.status ?? response.status}: ${json.error?.message ?? response.statusText}`;
    throw json.error?.status === 'ABORTED' ? new Concurrent(message) : new Failure(message);
  };
  return {
    get: () => call('getIamPolicy'),
    set: (policy: Policy) => call('setIamPolicy', { policy }),
  };
}

async function accessToken(chain: ChainFile): Promise<string> {
  const url = `http://${chain.metadataHost}/computeMetadata/v1/instance/service-accounts/default/token`;
  try {
    const response = await fetch(url, {
      headers: { 'Metadata-Flavor': 'Google' },
      signal: AbortSignal.timeout(5000),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return ((await response.json()) as { access_token: string }).access_token;
  } catch (err) {
    throw new Failure(
      `no access token from the chain's metadata server at ${chain.metadataHost} (${causeOf(err)}): is npm start still running?`,
    );
  }
}

function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string } }).cause;
  return cause?.code ?? (err instanceof Error ? err.message : String(err));
}
