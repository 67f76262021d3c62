// The longreward study with a served judge: an OpenAI-compatible server answering with the task's
// gold function gives the same result as the in-process gold judge (so the served path really asks
// the server, and nothing else differs); the served run is cached apart from the gold one and
// shares its SFT policy; answers whose replies never parse are skipped and counted; the command's
// judge flags are checked. Miniature settings (short documents, 8 training questions) keep it cheap.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { OpenAIJudge } from '../../lib/rewards/longreward/index.js';
import { LongDocGoldJudge } from '../../lib/study/longdoc-judge.js';
import { runStudies } from '../../lib/study/runner.js';
import { STUDY_PRESETS, type StudySettings } from '../../lib/study/setup.js';

t.setTimeout(900000);
const dir = mkdtempSync(join(tmpdir(), 'rlhf-study-judge-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const small = STUDY_PRESETS.small;
const settings: StudySettings = {
  ...small,
  longreward: {
    ...small.longreward,
    doc: { ...small.longreward.doc, chars: 500 },
    trainPrompts: 8,
    evalPrompts: 4,
    model: { ...small.longreward.model, window: 128 },
    // fewer short documents than the small preset's 2400, still enough for answers the judge can tell apart
    sft: { ...small.longreward.sft, shortDocs: 1600 },
    maxNewTokens: 40,
  },
};

/** An OpenAI-compatible chat server; `reply` maps the prompt to the content (undefined: the gold judge's). */
async function judgeServer(reply: (prompt: string) => string | undefined = () => undefined) {
  const gold = new LongDocGoldJudge();
  let requests = 0;
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString()) as { messages: Array<{ content: string }> };
    const prompt = body.messages[0].content;
    requests++;
    const content = reply(prompt) ?? (await gold.complete(prompt, { temperature: 0 }));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content } }] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return { url, requests: () => requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}

t.test('a served judge gives the gold judge in-process result, cached apart', async (t) => {
  const inProcess = await runStudies({ output: dir, names: ['longreward'], seeds: 1, settings });
  const server = await judgeServer();
  t.teardown(server.close);
  const lines: string[] = [];
  const served = await runStudies({
    output: dir,
    names: ['longreward'],
    seeds: 1,
    settings,
    judge: { id: `gold at ${server.url}`, model: new OpenAIJudge({ baseURL: server.url, model: 'gold' }) },
    log: (l) => lines.push(l),
  });
  t.ok(server.requests() > 0, `${server.requests()} requests reached the server`);
  const pairs = Number(/(\d+) best-vs-worst pairs/.exec(inProcess.outcomes[0].notes.join('\n'))?.[1]);
  t.ok(pairs > 0, `${pairs} pairs: DPO trained, so the table depends on the judge's scores`);
  t.notMatch(lines.join('\n'), /SFT loss/, 'the SFT policy of the gold run is reused');
  const [a, b] = [inProcess.outcomes[0], served.outcomes[0]];
  t.same(b.table, a.table, 'the same per-dimension table');
  t.equal(b.effect, a.effect);
  t.same(b.ci, a.ci);
  t.match(b.notes.join('\n'), /Judge: gold at http:\/\/127\.0\.0\.1:\d+\/v1, .*\(0 answers left unscored/);
  t.match(a.notes.join('\n'), /the task's gold function/);
  const files = readdirSync(join(dir, 'runs', 'small', 'seed-0', 'longreward')).filter((f) => f.startsWith('result'));
  t.equal(files.length, 2, `one result per judge: ${files.join(', ')}`);
});

t.test('answers whose replies never parse are skipped and counted', async (t) => {
  // every helpfulness rating is unparseable: no answer gets a score, so no pair and no DPO step
  const server = await judgeServer((p) =>
    p.startsWith('You are reviewing how helpful') ? 'no rating here' : undefined,
  );
  t.teardown(server.close);
  const lines: string[] = [];
  const r = await runStudies({
    output: dir,
    names: ['longreward'],
    seeds: 1,
    settings,
    judge: { id: `broken at ${server.url}`, model: new OpenAIJudge({ baseURL: server.url, model: 'broken' }) },
    log: (l) => lines.push(l),
  });
  const answers = settings.longreward.trainPrompts * settings.longreward.samplesPerPrompt;
  t.match(
    lines.join('\n'),
    new RegExp(`0 SFT answers scored by the LongReward pipeline \\(${answers} unparseable\\), 0 pairs`),
  );
  t.match(r.outcomes[0].notes.join('\n'), new RegExp(`\\(${answers} answers left unscored`));
  t.equal(r.outcomes[0].effect, 0, 'no pairs: the DPO policy is the SFT policy, sampled with the same seeds');
});

t.test('the command checks its judge flags', async (t) => {
  const cli = join(packageRoot, 'dist', 'cli', 'main.js');
  const rlhf = (...args: string[]) =>
    spawnSync(process.execPath, [cli, 'study', ...args, '--output', join(dir, 'cli')], { encoding: 'utf8' });
  let r = rlhf('longreward', '--judge-url', 'http://127.0.0.1:9/v1');
  t.equal(r.status, 2);
  t.match(r.stderr, /--judge-url and --judge-model go together/);
  r = rlhf('alignment', '--judge-url', 'http://127.0.0.1:9/v1', '--judge-model', 'm');
  t.equal(r.status, 2);
  t.match(r.stderr, /--judge-url serves the longreward study only/);
  r = rlhf('--help');
  t.match(r.stdout, /--judge-url <url>/);
});
