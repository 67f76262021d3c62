// Watching runs through the built command: sft and grpo with --log-to tensorboard,mlflow (a
// loopback fake MLflow server), GRPO's printed samples and samples.jsonl, the KL to the reference
// measured with --kl-coef 0, progress labels equal to the command names, rm's truncation warning
// once, and `rlhf report` over the two output folders.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { readEventFile } from '../../lib/track/index.js';

const cli = join(packageRoot, 'dist', 'cli', 'main.js');
// async: the fake MLflow server below must keep answering while a command runs
const rlhf = (...args: string[]) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const c = spawn(process.execPath, [cli, ...args, ...(args[0] === 'report' ? [] : ['--threads', '1'])]);
    let stdout = '',
      stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (status) => resolve({ status, stdout, stderr }));
  });
const dir = mkdtempSync(join(tmpdir(), 'rlhf-track-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const p = (f: string) => join(dir, f);
const prompts = Array.from({ length: 8 }, (_, i) => ({
  prompt: [{ role: 'user', content: `What is ${i}+1? Answer with a number.` }],
  a: i,
  b: 1,
  format: 'number',
}));
writeFileSync(p('prompts.jsonl'), prompts.map((x) => JSON.stringify(x)).join('\n') + '\n');
writeFileSync(
  p('sft.jsonl'),
  prompts
    .map((x, i) => JSON.stringify({ messages: [...x.prompt, { role: 'assistant', content: String(i + 1) }] }))
    .join('\n') + '\n',
);
writeFileSync(
  p('pairs.jsonl'),
  prompts
    .map((x, i) =>
      JSON.stringify({
        prompt: x.prompt,
        chosen: String(i + 1),
        rejected: 'I am not sure at all, let me think about it for a long while',
      }),
    )
    .join('\n') + '\n',
);

const requests: Array<{ path: string; body: Record<string, unknown> }> = [];
const server = createServer((req, res) => {
  let raw = '';
  req.on('data', (c) => (raw += c));
  req.on('end', () => {
    requests.push({ path: req.url!.replace('/api/2.0/mlflow/', ''), body: JSON.parse(raw) });
    res.end(
      req.url!.endsWith('runs/create') ? JSON.stringify({ run: { info: { run_id: `run${requests.length}` } } }) : '{}',
    );
  });
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
t.teardown(() => server.close());
const uri = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

t.test('sft, rm and grpo logged to TensorBoard and MLflow, then rlhf report', { timeout: 280000 }, async (t) => {
  let r = await rlhf(
    'sft',
    '--init',
    'tiny',
    '--data',
    p('sft.jsonl'),
    '--output',
    p('sft'),
    '--epochs',
    '2',
    '--batch-size',
    '4',
    '--lr',
    '3e-3',
    '--seq-len',
    '48',
    '--log-to',
    'tensorboard,mlflow',
    '--tracking-uri',
    uri,
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /^sft {1,2}\d+\/\d+/m, 'progress labelled "sft"');
  const sftEvents = readEventFile(join(p('sft/tensorboard'), readdirSync(p('sft/tensorboard'))[0]));
  const losses = sftEvents.flatMap((e) => e.values.filter((v) => v.tag === 'sft/loss').map((v) => [e.step, v.scalar!]));
  const jsonl = readFileSync(p('sft/metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((x) => typeof x.loss === 'number');
  t.same(
    losses,
    jsonl.map((x) => [x.step, Math.fround(x.loss)]),
    'TensorBoard has every loss of metrics.jsonl',
  );
  t.same(
    requests.map((q) => q.path).filter((x, i, a) => a.indexOf(x) === i),
    ['runs/create', 'runs/log-batch', 'runs/update'],
  );
  t.ok(
    requests.some((q) =>
      (q.body.params as Array<{ key: string; value: string }> | undefined)?.some(
        (x) => x.key === 'lr' && x.value === '0.003',
      ),
    ),
    'flags logged as MLflow params',
  );
  t.ok(
    requests.some((q) => (q.body.metrics as Array<{ key: string }> | undefined)?.some((m) => m.key === 'sft/loss')),
    'metrics logged to MLflow',
  );

  r = await rlhf(
    'rm',
    '--model',
    p('sft/model'),
    '--data',
    p('pairs.jsonl'),
    '--output',
    p('rm'),
    '--seq-len',
    '24',
    '--batch-size',
    '4',
    '--eval-split',
    '0.25',
  );
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr.match(/truncated to 24 tokens/g)?.length, 1, 'the truncation warning once');
  t.match(r.stderr, /^rm {1,2}\d+\/\d+/m, 'progress labelled "rm", not "reward"');

  r = await rlhf(
    'grpo',
    '--policy',
    p('sft/model'),
    '--prompts',
    p('prompts.jsonl'),
    '--reward-rule',
    'demo-gold',
    '--output',
    p('grpo'),
    '--iterations',
    '3',
    '--prompts-per-iteration',
    '2',
    '--samples-per-prompt',
    '2',
    '--max-new-tokens',
    '6',
    '--print-samples',
    '2',
    '--log-to',
    'tensorboard',
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /^grpo {1,2}\d+\/3/m, 'progress labelled "grpo", not "group"');
  t.match(
    r.stderr,
    /samples @ iteration 2:\n {2}prompt "What is \d\+1\? Answer with a number\."\n {2}→ ".*" {2}reward -?[\d.]+ {2}KL -?[\d.e-]+/,
    'samples printed every 2 iterations',
  );
  t.notMatch(r.stderr, /samples @ iteration [13]/);
  const tb = readEventFile(join(p('grpo/tensorboard'), readdirSync(p('grpo/tensorboard'))[0]));
  const tags = new Set(tb.flatMap((e) => e.values.map((v) => v.tag)));
  for (const tag of [
    'group/rewardMean',
    'group/kl',
    'group/rollout/reward',
    'group/rollout/advantage',
    'group/rollout/length',
    'group/samples',
  ])
    t.ok(tags.has(tag), `TensorBoard has ${tag}`);
  const hist = tb
    .find((e) => e.values.some((v) => v.tag === 'group/rollout/reward'))!
    .values.find((v) => v.tag === 'group/rollout/reward')!.histogram!;
  t.equal(hist.num, 4, 'a reward histogram over the batch (2 prompts × 2 samples)');
  const metrics = readFileSync(p('grpo/metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.ok(
    metrics.every((m) => typeof m.kl === 'number' && m.klCoef === 0 && m.klEstimator === 3),
    'KL measured (k3) while β = 0',
  );
  t.ok(
    metrics.some((m) => m.kl !== 0),
    'and it moves',
  );
  t.equal(
    readFileSync(p('grpo/samples.jsonl'), 'utf8').trim().split('\n').length,
    3,
    'samples.jsonl: one line per iteration',
  );

  r = await rlhf('report', p('sft'), p('grpo'), '--output', p('report.html'));
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /report: .*report\.html \(2 runs/);
  const html = readFileSync(p('report.html'), 'utf8');
  t.match(html, 'aria-label="SFT · Loss"');
  t.match(html, /aria-label="GRPO · KL to the reference"[\s\S]*?estimator k3[\s\S]*?measured only/);
  t.match(html, 'grpo · GRPO, iteration 3');
  t.ok(existsSync(p('report.html')));
  r = await rlhf('report', p('nothing-here'));
  t.equal(r.status, 1);
  t.match(r.stderr, /rlhf report: report: cannot read the run folder/);
});
