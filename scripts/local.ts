/**
 * `npm run local -- run services VERB SERVICE [flags]`: gcloud's IAM policy commands for the local
 * chain, with gcloud's arguments. They change the policy the running local Cloud Run front
 * enforces (within a second, no restart); they never touch deploy/ or any tracked file.
 *
 *   npm run local -- run services get-iam-policy receiving
 *   npm run local -- run services add-iam-policy-binding receiving --member=serviceAccount:EMAIL --role=roles/run.invoker
 *   npm run local -- run services remove-iam-policy-binding receiving --member=serviceAccount:EMAIL --role=roles/run.invoker
 *
 * --region, --project, --platform and --quiet are accepted and ignored, so a gcloud command line
 * pastes as is. LOCAL_STATE_DIR says where the running chain keeps its policies.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  addBinding,
  formatPolicy,
  memberProblem,
  parsePolicy,
  removeBinding,
  roleProblem,
  writePolicyFile,
} from '../local/cloud-run-front/policy.js';
import { policyPath } from './lib/local-chain.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const stateDir = process.env.LOCAL_STATE_DIR?.trim() || join(root, '.local-state');
const VERBS = ['get-iam-policy', 'add-iam-policy-binding', 'remove-iam-policy-binding'] as const;
type Verb = (typeof VERBS)[number];
const IGNORED = new Set(['region', 'project', 'platform', 'format', 'quiet', 'condition']);

const usage = `usage: npm run local -- run services ${VERBS.join('|')} SERVICE [--member=MEMBER --role=ROLE]`;

function fail(command: string, message: string): never {
  process.stderr.write(`ERROR: (${command}) ${message}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
const [group, resource, verb, ...rest] = args;
if (group !== 'run' || resource !== 'services' || !VERBS.includes(verb as Verb)) {
  process.stderr.write(`${usage}\n`);
  process.exit(2);
}
const command = `local.run.services.${verb}`;
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
  if (value === undefined) fail(command, `argument --${name}: expected one argument`);
  if (!IGNORED.has(name) && name !== 'member' && name !== 'role') fail(command, `unrecognized arguments: --${name}`);
  flags[name] = value;
}
if (positional.length !== 1) fail(command, `expected one SERVICE, got ${positional.length === 0 ? 'none' : positional.join(' ')}`);
const service = positional[0]!;
const path = policyPath(stateDir, service);
if (!existsSync(path)) {
  fail(
    command,
    `no local policy for service [${service}] in ${stateDir}: start the chain with npm start first` +
      (service === 'calling' ? ' (calling is public: its invoker IAM check is disabled, so no policy is checked)' : ''),
  );
}
const policy = parsePolicy(readFileSync(path, 'utf8'), path);

if (verb === 'get-iam-policy') {
  process.stdout.write(formatPolicy(policy));
  process.exit(0);
}
const member = flags.member;
const role = flags.role;
if (member === undefined) fail(command, 'argument --member: Must be specified.');
if (role === undefined) fail(command, 'argument --role: Must be specified.');
const problem = memberProblem(member) ?? roleProblem(role);
if (problem) fail(command, problem);

const updated = verb === 'add-iam-policy-binding' ? addBinding(policy, role, member) : removeBinding(policy, role, member);
if (updated === undefined) fail(command, 'Policy binding with the specified principal, role, and condition not found!');
if (updated !== policy) writePolicyFile(path, updated);
process.stderr.write(`Updated IAM policy for service [${service}].\n`);
process.stdout.write(formatPolicy(updated));
