/**
 * `npm run tutorial`: replays the four stages of the "Service to service authentication" tutorial
 * (meteatamel/cloudrun-tutorial, docs/auth.md) on this machine, each with real processes, and
 * exits non-zero if any stage ends differently from the tutorial.
 */
import { freePort } from './lib/processes.js';
import { startLocalChain, type LocalChain } from './lib/local-chain.js';

const PROJECT_ID = 'local-project';
const PROJECT_NUMBER = '123456789012';
const DEFAULT_SA = `${PROJECT_NUMBER}-compute@developer.gserviceaccount.com`;
const OWN_SA = `cloudrun-authenticated-sa@${PROJECT_ID}.iam.gserviceaccount.com`;

interface Stage {
  title: string;
  /** What the tutorial runs on Google Cloud. */
  gcloud: string[];
  /** The same change here. */
  local: string;
  env: { calling?: Record<string, string>; receiving?: Record<string, string>; metadata?: Record<string, string> };
  expected: { status: number; contains: string[] };
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
    local: `calling AUTH=none; receiving TOKEN_CHECK=verify, INVOKERS=serviceAccount:${DEFAULT_SA}`,
    env: { calling: { AUTH: 'none' } },
    expected: { status: 502, contains: ['answered 401', 'calling sent no token (AUTH=none)', 'Fix: set AUTH=id-token'] },
    outcome: 'refused',
    why:
      'receiving is private: without an ID token it refuses the call (on Cloud Run, IAM answers 403 or 401 before\n' +
      'the container sees the request). The tutorial\'s calling service wrapped that refusal in a 200; ours answers 502\n' +
      'and says what to fix.',
  },
  {
    title: 'Sending an ID token as the default compute identity works',
    gcloud: [
      'gcloud run deploy authenticated --image=$IMAGE_AUTHENTICATED --allow-unauthenticated --region=$REGION \\\n      --set-env-vars=URL=$RECEIVING_SERVICE_URL',
    ],
    local: `calling AUTH=id-token; the metadata server's identity is ${DEFAULT_SA}`,
    env: {},
    expected: { status: 200, contains: ['Second service says: Hello World!'] },
    outcome: 'works',
    why:
      `calling gets an ID token for receiving's URL from the metadata server and sends it. It works because Cloud Run\n` +
      `runs services as the Compute Engine default service account (${DEFAULT_SA}),\n` +
      'which is a project Editor, and Editor carries roles/run.invoker on every service in the project. Locally that\n' +
      'identity is in receiving\'s INVOKERS. It works, but every service in the project can now call receiving.',
  },
  {
    title: 'Calling with its own service account is refused',
    gcloud: [
      'gcloud iam service-accounts create cloudrun-authenticated-sa --display-name="Cloud Run Authenticated Service Account"',
      `gcloud run services update authenticated --service-account=${OWN_SA} --region=$REGION`,
    ],
    local: `the metadata server's identity is SERVICE_ACCOUNT=${OWN_SA}`,
    env: { metadata: { SERVICE_ACCOUNT: OWN_SA } },
    expected: {
      status: 502,
      contains: ['answered 403', `calling called as ${OWN_SA}`, `--member=serviceAccount:${OWN_SA} --role=roles/run.invoker`],
    },
    outcome: 'refused',
    why:
      'calling now has an identity of its own, with no role on receiving: its token is valid, but receiving (Cloud Run\n' +
      'IAM) answers 403. calling names the identity it called as and the binding that fixes it.',
  },
  {
    title: 'Granting roles/run.invoker on receiving makes it work',
    gcloud: [
      `gcloud run services add-iam-policy-binding receiving --member=serviceAccount:${OWN_SA} \\\n      --role=roles/run.invoker --region=$REGION`,
    ],
    local: `receiving INVOKERS gains serviceAccount:${OWN_SA}`,
    env: {
      metadata: { SERVICE_ACCOUNT: OWN_SA },
      receiving: { INVOKERS: `serviceAccount:${DEFAULT_SA},serviceAccount:${OWN_SA}` },
    },
    expected: { status: 200, contains: ['Second service says: Hello World!'] },
    outcome: 'works',
    why:
      'only the identities granted roles/run.invoker on receiving may call it: least privilege, the right way.',
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
const interrupt = async () => {
  await current?.stop();
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

  const logs: string[] = [];
  const ports = { calling: await freePort(), receiving: await freePort(), metadata: await freePort() };
  current = await startLocalChain({
    ports,
    baseEnv: { PATH: process.env.PATH, PROJECT_ID, PROJECT_NUMBER },
    ...stage.env,
    // The project's Editors (the default compute identity among them) may invoke every service.
    receiving: { INVOKERS: `serviceAccount:${DEFAULT_SA}`, ...stage.env.receiving },
    onLine: (name, line) => logs.push(`${name}: ${line}`),
  });
  let status = 0;
  let body = '';
  try {
    say(dim('  Request:'));
    say(cyan(`    $ curl ${current.calling.url}`));
    const response = await fetch(`${current.calling.url}/`, { signal: AbortSignal.timeout(15_000) });
    status = response.status;
    body = await response.text();
  } catch (err) {
    body = `request failed: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    await current.stop();
    current = undefined;
  }
  say(dim('  Answer:'));
  say(indent(`HTTP ${status}\n${body.trimEnd()}`));

  const missing = stage.expected.contains.filter((text) => !body.includes(text));
  const ok = status === stage.expected.status && missing.length === 0;
  say(dim('  Why:'));
  say(indent(stage.why));
  if (ok) {
    say(green(`  ok: ${stage.outcome}, as in the tutorial`));
  } else {
    say(red(`  FAILED: expected HTTP ${stage.expected.status}${missing.length ? ` with ${missing.map((m) => JSON.stringify(m)).join(', ')}` : ''}`));
    say(dim('  What the services logged:'));
    say(indent(logs.slice(-20).join('\n')));
  }
  say();
  return ok;
}

say(bold('Service-to-service authentication on Cloud Run, replayed on this machine'));
say(dim('(meteatamel/cloudrun-tutorial, docs/auth.md; each stage starts calling, receiving and the metadata emulator afresh)'));
say();
let passed = 0;
for (const [index, stage] of stages.entries()) {
  if (await runStage(stage, index)) passed += 1;
}
const failed = stages.length - passed;
say(failed === 0 ? green(bold(`All ${passed} stages ended as in the tutorial.`)) : red(bold(`${failed} of ${stages.length} stages did not end as in the tutorial.`)));
say(`tutorial: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
