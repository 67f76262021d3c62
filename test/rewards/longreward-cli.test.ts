// `rlhf longreward` end to end over HTTP.
//  1. a deterministic OpenAI-compatible judge written here (loopback; its first two answers are
//     429 and 500) that scores each dimension by a known function of the answer: checks the
//     prompts it receives, the retries, the scores, the best-vs-worst pairs, and the cache (a
//     rerun sends no request and writes the same pairs);
//  2. `rlhf serve` with a tiny random checkpoint as the judge (no stub): its replies are real
//     model output that carries no [[rating]], so every response fails to parse; the command says
//     so and exits 1, and the cache shows the judge prompts that went over HTTP.
import t from 'tap';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, readdirSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { loadPreferenceFile } from '../../lib/data/index.js';
import { packageRoot } from '../../lib/native.js';
import { generateRollout } from '../../lib/rollout/generate.js';
import { spawnServe, tinyCheckpoint } from '../serve/helpers.js';

const policy = await tinyCheckpoint({ seed: 4, maxPositions: 1024 });
const judgeCk = await tinyCheckpoint({ seed: 9, maxPositions: 4096 });
t.teardown(() => {
  policy.model.dispose();
  judgeCk.model.dispose();
  policy.cleanup();
  judgeCk.cleanup();
});
const dir = policy.dir + '-work';
mkdirSync(dir, { recursive: true });
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const cli = join(packageRoot, 'dist', 'cli', 'main.js');

const context =
  'The annual report of the Blue Lake cooperative covers 2019. Membership rose from 120 to 150 farmers. Milk deliveries grew by 8 percent, and the cooperative opened a second cheese plant in Aster. '.repeat(
    2,
  );
const prompts = [
  { id: 'blue-lake', context, question: 'How did membership change?' },
  { id: 'cheese', context, question: 'Where was the new plant opened?' },
];

// The deterministic judge's scores, as functions of the answer alone.
const helpfulness = (a: string) => a.length % 11;
const logicality = (a: string) => (a.match(/[aeiou]/gi) ?? []).length % 11;
const completeness = (a: string) => (a.length * 7) % 11;
const between = (text: string, start: string, end: string) =>
  text.slice(text.indexOf(start) + start.length, text.lastIndexOf(end));

/** The deterministic judge's reply to a judge prompt. */
function detReply(prompt: string): string {
  const answer = prompt.includes('[Answer]') ? between(prompt, '[Answer]\n', '\n\n[Analysis]') : '';
  if (prompt.startsWith('You are reviewing how helpful')) return `Looks fine.\n[[${helpfulness(answer)}]]`;
  if (prompt.startsWith('You are checking the logic')) return `Consistent.\n[[${logicality(answer)}]]`;
  if (prompt.startsWith('Below are a question'))
    return `<statement>The answer says ${JSON.stringify(between(prompt, '[Answer]\n', '\n\n[Statements]').slice(0, 20))}.</statement>`;
  if (prompt.startsWith('Decide whether the statement')) return 'Checked.\n[[Fully supported]]';
  if (prompt.startsWith('Here is part of a long document')) return '1. Membership rose from 120 to 150.';
  if (prompt.startsWith('You are judging whether')) return `Covers some.\n[[${completeness(answer)}]]`;
  return 'unknown prompt';
}

t.test('a deterministic judge over HTTP: prompts, retries, scores, pairs, cache', { timeout: 240000 }, async (t) => {
  writeFileSync(join(dir, 'long.jsonl'), prompts.map((p) => JSON.stringify(p)).join('\n') + '\n');
  const seen: string[] = [];
  let n = 0;
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString()) as {
      model: string;
      messages: Array<{ content: string }>;
    };
    const k = n++;
    if (k === 0 || k === 1) {
      res.writeHead(k === 0 ? 429 : 500, { 'content-type': 'application/json', 'retry-after': '0' });
      return void res.end(JSON.stringify({ error: { message: 'try again', type: 'x' } }));
    }
    const prompt = body.messages[0].content;
    const content = detReply(prompt);
    seen.push(prompt.split('\n')[0]);
    t.equal(body.model, 'det-judge');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  const args = [
    'longreward',
    '--policy',
    policy.dir,
    '--prompts',
    join(dir, 'long.jsonl'),
    '--judge-url',
    url,
    '--judge-model',
    'det-judge',
    '--samples',
    '3',
    '--max-new-tokens',
    '12',
    '--language',
    'en',
    '--concurrency',
    '2',
    '--out',
    join(dir, 'pairs.jsonl'),
    '--scores-out',
    join(dir, 'scores.jsonl'),
    '--seed',
    '3',
  ];
  const r = await runAsync(args);
  t.equal(r.status, 0, r.stderr);
  t.match(
    r.stdout,
    /2 pairs written .*6 responses scored, 0 unparseable; judge: \d+ HTTP requests, 2 retries, 0 cached replies/,
  );
  t.ok(seen.every((s) => s !== 'unknown prompt'));
  for (const head of [
    'You are reviewing how helpful',
    'You are checking the logic',
    'Below are a question',
    'Decide whether the statement',
    'Here is part of a long document',
    'You are judging whether',
  ])
    t.ok(
      seen.some((s) => s.startsWith(head)),
      `the judge was asked: ${head}…`,
    );

  const scores = readFileSync(join(dir, 'scores.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { id: string; response: string; scores: Record<string, number> });
  t.equal(scores.length, 6);
  for (const s of scores) {
    const a = s.response;
    t.same(
      [s.scores.helpfulness, s.scores.logicality, s.scores.faithfulness, s.scores.completeness],
      [helpfulness(a), logicality(a), 10, completeness(a)],
      `scores of ${JSON.stringify(a)}`,
    );
    t.equal(s.scores.total, helpfulness(a) + logicality(a) + 10 + completeness(a));
  }
  const pairs = await loadPreferenceFile(join(dir, 'pairs.jsonl'));
  t.equal(pairs.length, 2, 'one pair per prompt, in a format rlhf dpo reads');
  prompts.forEach((p, i) => {
    const group = scores.filter((s) => s.id === p.id);
    const best = group.reduce((b, s) => (s.scores.total > b.scores.total ? s : b));
    const worst = group.reduce((w, s) => (s.scores.total <= w.scores.total ? s : w));
    t.equal(pairs[i].chosen, best.response, `${p.id}: chosen = highest total`);
    t.equal(pairs[i].rejected, worst.response, `${p.id}: rejected = lowest total`);
    t.equal(pairs[i].margin, best.scores.total - worst.scores.total);
    t.same(pairs[i].prompt, [{ role: 'user', content: `${p.context}\n\n${p.question}` }]);
  });

  const before = n;
  const again = await runAsync(args);
  t.equal(again.status, 0, again.stderr);
  t.equal(n, before, 'the rerun sent no request: every reply came from the cache');
  t.match(again.stdout, /judge: 0 HTTP requests, 0 retries, \d+ cached replies/);
  t.same(await loadPreferenceFile(join(dir, 'pairs.jsonl')), pairs, 'same pairs');
});

t.test(
  'rlhf serve with a tiny checkpoint as the judge: real replies that do not parse',
  { timeout: 240000 },
  async (t) => {
    const serve = await spawnServe(['--model', judgeCk.dir, '--model-name', 'tiny-judge', '--chunk-tokens', '8']);
    t.teardown(() => serve.stop('SIGKILL'));
    writeFileSync(join(dir, 'one.jsonl'), JSON.stringify(prompts[0]) + '\n');
    const cache = join(dir, 'serve-cache');
    const r = await runAsync([
      'longreward',
      '--policy',
      policy.dir,
      '--prompts',
      join(dir, 'one.jsonl'),
      '--judge-url',
      serve.url,
      '--judge-model',
      'tiny-judge',
      '--samples',
      '2',
      '--max-new-tokens',
      '8',
      '--language',
      'en',
      '--judge-attempts',
      '2',
      '--judge-max-tokens',
      '8',
      '--cache',
      cache,
      '--out',
      join(dir, 'none.jsonl'),
    ]);
    t.equal(r.status, 1, 'no pairs is a failure');
    t.match(r.stdout, /0 pairs written .*0 responses scored, 2 unparseable/);
    t.match(r.stderr, /no pairs: the judge's replies did not parse for 2 responses/);
    t.match(r.stderr, /unparseable: prompt blue-lake: judgeWithRetry: the judge gave no .* in 2 attempts/);
    const entries = readdirSync(cache, { recursive: true })
      .filter((f) => String(f).endsWith('.json'))
      .map(
        (f) =>
          JSON.parse(readFileSync(join(cache, String(f)), 'utf8')) as {
            request: { model: string; messages: Array<{ content: string }>; temperature: number; max_tokens: number };
            reply: { choices: Array<{ message: { content: string } }>; usage: { completion_tokens: number } };
          },
      );
    t.ok(entries.length >= 4, `${entries.length} judge replies from rlhf serve cached`);
    const helpful = entries.filter((e) => e.request.messages[0].content.startsWith('You are reviewing how helpful'));
    t.ok(helpful.length >= 2, 'helpfulness was asked (first try and retry)');
    t.ok(
      helpful.every((e) => e.request.messages[0].content.includes('[Question]\nHow did membership change?')),
      'the prompt carries the question',
    );
    t.same(
      new Set(helpful.map((e) => e.request.temperature)),
      new Set([0.01, 0.95]),
      'first attempt at 0.01, retry at 0.95',
    );
    t.ok(entries.every((e) => e.request.model === 'tiny-judge' && e.request.max_tokens <= 8));
    t.ok(
      entries.every(
        (e) => typeof e.reply.choices[0].message.content === 'string' && e.reply.usage.completion_tokens <= 8,
      ),
      'real completions from the served model',
    );
  },
);

t.test('results in sampling order when the judge answers later responses first', { timeout: 240000 }, async (t) => {
  // the policy's responses in sampling order, sampled here as the command samples them
  const rollout = await generateRollout({
    policy: policy.model,
    tokenizer: policy.tokenizer,
    prompts: prompts.map((p) => ({ prompt: [{ role: 'user', content: `${p.context}\n\n${p.question}` }] })),
    samplesPerPrompt: 3,
    sampling: { maxNewTokens: 12, temperature: 1 },
    seed: 5,
    batchSize: 16,
  });
  const texts = rollout.samples.map((s) => s.text);
  // each reply about the answer of sample i waits (6 - i) × 60 ms: later samples finish first
  const answered: number[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const prompt = (JSON.parse(Buffer.concat(chunks).toString()) as { messages: Array<{ content: string }> })
      .messages[0].content;
    const sample = prompt.includes('[Answer]')
      ? texts.indexOf(
          between(prompt, '[Answer]\n', prompt.includes('[Analysis]') ? '\n\n[Analysis]' : '\n\n[Statements]'),
        )
      : -1;
    if (sample >= 0) await new Promise((r) => setTimeout(r, (6 - sample) * 60));
    if (prompt.startsWith('You are reviewing how helpful')) answered.push(sample);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        choices: [{ index: 0, message: { role: 'assistant', content: detReply(prompt) }, finish_reason: 'stop' }],
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  writeFileSync(join(dir, 'order.jsonl'), prompts.map((p) => JSON.stringify(p)).join('\n') + '\n');
  const r = await runAsync([
    'longreward',
    '--policy',
    policy.dir,
    '--prompts',
    join(dir, 'order.jsonl'),
    '--judge-url',
    `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    '--judge-model',
    'det-judge',
    '--samples',
    '3',
    '--max-new-tokens',
    '12',
    '--language',
    'en',
    '--concurrency',
    '12',
    '--cache',
    join(dir, 'order-cache'),
    '--out',
    join(dir, 'order-pairs.jsonl'),
    '--scores-out',
    join(dir, 'order-scores.jsonl'),
    '--seed',
    '5',
  ]);
  t.equal(r.status, 0, r.stderr);
  t.not(answered.join(), [0, 1, 2, 3, 4, 5].join(), `the judge answered out of sampling order: ${answered.join()}`);
  const scores = readFileSync(join(dir, 'order-scores.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { id: string; response: string; scores: { helpfulness: number } });
  t.same(
    scores.map((s) => s.response),
    texts,
    'scores-out lists the responses in sampling order',
  );
  t.same(
    scores.map((s) => s.id),
    ['blue-lake', 'blue-lake', 'blue-lake', 'cheese', 'cheese', 'cheese'],
  );
  t.same(
    scores.map((s) => s.scores.helpfulness),
    texts.map(helpfulness),
    'each response with its own scores',
  );
});

/** Runs the CLI without blocking the event loop (the judge server of the first test lives in this process). */
function runAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cli, ...args, '--threads', '1']);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d));
    p.stderr.on('data', (d: Buffer) => (stderr += d));
    p.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}
