/**
 * `npm run tutorial`: replays the four stages of the Cloud Run tutorial "Service to service
 * authentication" on this machine in the production topology: each
 * service started from deploy/, behind a local Cloud Run front door that checks tokens and IAM as
 * Cloud Run does and says why it refused. Exits non-zero if any stage ends differently.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gcloudEnv, readChainFile } from './lib/chain-file.js';
import { freePort } from './lib/processes.js';
import { startLocalChain, type LocalChain } from './lib/local-chain.js';

const run = promisify(execFile);
const PROJECT_ID = 'local-project';
const PROJECT_NUMBER = '123456789012';
const DEFAULT_SA = `${PROJECT_NUMBER}-compute@developer.gserviceaccount.com`;
const OWN_SA = `cloudrun-authenticated-sa@${PROJECT_ID}.iam.gserviceaccount.com`;
const GRANT = [
  'run',
  'services',
  'add-iam-policy-binding',
  'receiving',
  `--member=serviceAccount:${OWN_SA}`,
  '--role=roles/run.invoker',
];
const localCommand = fileURLToPath(new URL('./local.js', import.meta.url));
/** Real gcloud when it is installed, pointed at the chain as `npm run local-env` points it; else npm run local. */
const gcloudInstalled = (process.env.PATH ?? '')
  .split(delimiter)
  .some((dir) => dir !== '' && existsSync(join(dir, 'gcloud')));

interface Stage {
  title: string;
  /** What the tutorial runs on Google Cloud. */
  gcloud: string[];
  /** The same change here. */
  local: string;
  /** Start a fresh chain with this env (else keep the previous stage's chain running). */
  chain?: { calling?: Record<string, string>; metadata?: Record<string, string> };
  /** A local command to run on the running chain first (npm run local -- ...). */
  command?: string[];
  expected: { status: number; contains: string[]; front?: string };
  outcome: string;
  why: string;
}

const stages: Stage[] = [
  {
    title: 'A calling service that sends no token is refused',
    gcloud: [
      'gcloud run deploy receiving --image=$IMAGE_RECEIVING --no-allow-unauthenticated --region=$REGION',
      'gcloud run deploy calling --image=$IMAGE_CALLING --allow-unauthenticated --region=$REGION \\\n      --set-env-vars=URL=$RECEIVING_SERVICE_URL',
    ],
    local:
      'receiving private behind the local Cloud Run front, with no invoker yet; calling with AUTH=none',
    chain: { calling: { AUTH: 'none' }, metadata: { SERVICE_ACCOUNT: DEFAULT_SA } },
    expected: {
      status: 502,
      contains: ['answered 403', 'calling sent no token (AUTH=none)', 'Fix: set AUTH=id-token'],
      front: 'the request has no token',
    },
    outcome: 'refused',
    why:
      'receiving is private: Cloud Run IAM answers 403 to a request without an ID token, before the container sees it.\n' +
      "The tutorial's calling service wrapped that refusal in a 200; ours answers 502 and says what to fix.",
  },
  {
    title: 'Sending an ID token as the default compute identity works',
    gcloud: [
      'gcloud run deploy authenticated --image=$IMAGE_AUTHENTICATED --allow-unauthenticated --region=$REGION \\\n      --set-env-vars=URL=$RECEIVING_SERVICE_URL',
    ],
    local: `calling sends an ID token from the metadata server, whose identity is ${DEFAULT_SA}`,
    chain: { metadata: { SERVICE_ACCOUNT: DEFAULT_SA } },
    expected: { status: 200, contains: ['Second service says: Hello World!'] },
    outcome: 'works',
    why:
      `calling gets an ID token for receiving's URL from the metadata server and sends it. It works because Cloud Run\n` +
      `runs services as the Compute Engine default service account (${DEFAULT_SA}),\n` +
      'which is a project Editor, and Editor carries run.routes.invoke on every service in the project (the front\n' +
      "reads the project's policy as well as receiving's). It works, but every service in the project can now call receiving.",
  },
  {
    title: 'Calling with its own service account is refused',
    gcloud: [
      'gcloud iam service-accounts create cloudrun-authenticated-sa --display-name="Cloud Run Authenticated Service Account"',
      `gcloud run services update authenticated --service-account=${OWN_SA} --region=$REGION`,
    ],
    local: `calling runs as its own account from deploy/calling.yaml, ${OWN_SA}`,
    chain: {},
    expected: {
      status: 502,
      contains: [
        'answered 403',
        `calling called as ${OWN_SA}`,
        `--member=serviceAccount:${OWN_SA} --role=roles/run.invoker`,
      ],
      front: `${OWN_SA} holds no roles/run.invoker on receiving`,
    },
    outcome: 'refused',
    why:
      'calling now has an identity of its own, with no role on receiving: its token is valid, but Cloud Run IAM\n' +
      'answers 403. calling names the identity it called as and the binding that fixes it.',
  },
  {
    title: 'Granting roles/run.invoker on receiving makes it work',
    gcloud: [
      `gcloud run services add-iam-policy-binding receiving --member=serviceAccount:${OWN_SA} \\\n      --role=roles/run.invoker --region=$REGION`,
    ],
    local: gcloudInstalled
      ? `gcloud ${GRANT.join(' ')}\n    (real gcloud, pointed at the running chain's local Admin API as npm run local-env points it: no restart)`
      : `npm run local -- ${GRANT.join(' ')}\n    (gcloud is not installed: the same change through the local Admin API, no restart)`,
    command: GRANT,
    expected: { status: 200, contains: ['Second service says: Hello World!'] },
    outcome: 'works',
    why: 'only the identities granted roles/run.invoker on receiving may call it: least privilege, the right way.',
  },
];

const color = process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (code: string) => (text: string) => (color ? `\x1b[${code}m${text}\x1b[0m` : text);
const bold = paint('1');
const dim = paint('2');
const green = paint('32');
const red = paint('31');
const cyan = paint('36');
const say = (text = '') => process.stdout.write(`${text}\n`);
const indent = (text: string, by = '    ') => text.replace(/^/gm, by);

let current: LocalChain | undefined;
let logs: string[] = [];
let frontSaid: string[] = [];
const stateDir = mkdtempSync(join(tmpdir(), 'tutorial-'));
const stopCurrent = async () => {
  await current?.stop();
  current = undefined;
};
const interrupt = async () => {
  await stopCurrent();
  rmSync(stateDir, { recursive: true, force: true });
  process.exit(130);
};
process.on('SIGINT', () => void interrupt());
process.on('SIGTERM', () => void interrupt());

async function runStage(stage: Stage, index: number): Promise<boolean> {
  say(bold(`Stage ${index + 1} of ${stages.length}: ${stage.title}`));
  say(dim('  The tutorial runs:'));
  for (const command of stage.gcloud) say(cyan(`    $ ${command}`));
  say(dim('  Here:'));
  say(`    ${stage.local}`);

  let status = 0;
  let body = '';
  try {
    if (stage.chain !== undefined || current === undefined) {
      await stopCurrent();
      logs = [];
      const ports = {
        calling: await freePort(),
        receiving: await freePort(),
        metadata: await freePort(),
        admin: await freePort(),
      };
      current = await startLocalChain({
        ports,
        stateDir,
        baseEnv: { PATH: process.env.PATH, PROJECT_ID, PROJECT_NUMBER },
        ...stage.chain,
        // The tutorial's starting point: receiving private, with no invoker of its own.
        receivingPolicy: { bindings: [] },
        onLine: (name, line) => logs.push(`${name}: ${line}`),
      });
    }
    if (stage.command !== undefined) {
      const env = { ...process.env, LOCAL_STATE_DIR: stateDir };
      const { stdout } = gcloudInstalled
        ? await run('gcloud', stage.command, {
            env: { ...env, ...gcloudEnv(readChainFile(env)) },
            timeout: 60_000,
          })
        : await run(process.execPath, [localCommand, ...stage.command], { env, timeout: 15_000 });
      say(dim("  receiving's policy is now:"));
      say(indent(stdout.trimEnd()));
    }
    say(dim('  Request:'));
    say(cyan(`    $ curl ${current.calling.url}`));
    const seenBefore = logs.length;
    const response = await fetch(`${current.calling.url}/`, {
      signal: AbortSignal.timeout(15_000),
    });
    status = response.status;
    body = await response.text();
    // The front logs its refusal as it answers; give the line a moment to arrive.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const refusals = logs.slice(seenBefore).filter((line) => line.startsWith('receiving front:'));
    frontSaid = refusals.map((line) => messageOf(line));
  } catch (err) {
    body = `request failed: ${err instanceof Error ? err.message : String(err)}`;
    frontSaid = [];
  }
  say(dim('  Answer:'));
  say(indent(`HTTP ${status}\n${body.trimEnd()}`));
  if (frontSaid.length > 0) {
    say(dim("  receiving's Cloud Run front said (Cloud Run itself never says why):"));
    say(indent(frontSaid.join('\n')));
  }

  const missing = stage.expected.contains.filter((text) => !body.includes(text));
  if (
    stage.expected.front !== undefined &&
    !frontSaid.some((line) => line.includes(stage.expected.front!))
  ) {
    missing.push(`front: ${stage.expected.front}`);
  }
  if (stage.expected.front === undefined && frontSaid.length > 0)
    missing.push('no refusal by the front');
  const ok = status === stage.expected.status && missing.length === 0;
  say(dim('  Why:'));
  say(indent(stage.why));
  if (ok) {
    say(green(`  ok: ${stage.outcome}, as in the tutorial`));
  } else {
    say(
      red(
        `  FAILED: expected HTTP ${stage.expected.status}${missing.length ? ` with ${missing.map((m) => JSON.stringify(m)).join(', ')}` : ''}`,
      ),
    );
    say(dim('  What the services logged:'));
    say(indent(logs.slice(-20).join('\n')));
  }
  say();
  return ok;
}

/** The message of a JSON log line, else the line. */
function messageOf(line: string): string {
  const json = line.slice(line.indexOf(':') + 1).trim();
  try {
    return String((JSON.parse(json) as { message?: unknown }).message ?? json);
  } catch {
    return json;
  }
}

say(bold('Service-to-service authentication on Cloud Run, replayed on this machine'));
say(
  dim(
    '(the tutorial "Service to service authentication"; services started from deploy/, behind a local Cloud Run front door)',
  ),
);
say();
let passed = 0;
for (const [index, stage] of stages.entries()) {
  if (await runStage(stage, index)) passed += 1;
}
await stopCurrent();
rmSync(stateDir, { recursive: true, force: true });
const failed = stages.length - passed;
say(
  failed === 0
    ? green(bold(`All ${passed} stages ended as in the tutorial.`))
    : red(bold(`${failed} of ${stages.length} stages did not end as in the tutorial.`)),
);
say(`tutorial: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
