// `rlhf grpo --environment calculator` (multi-turn episodes with the calculator tool; no reward flag
// needed; per-turn rewards, packed forwards and one-step off-policy rollouts on) and `rlhf dpo --loss kto` on unpaired {prompt, completion, label} rows with the weights and
// --pack-tokens, on a tiny model trained from scratch for one step; bad input is one clear line.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';

const cli = join(packageRoot, 'dist', 'cli', 'main.js');
const rlhf = (...args: string[]) => spawnSync(process.execPath, [cli, ...args, '--threads', '1'], { encoding: 'utf8' });
const dir = mkdtempSync(join(tmpdir(), 'rlhf-cli-env-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const p = (f: string) => join(dir, f);
const jsonl = (f: string, rows: unknown[]) => writeFileSync(p(f), rows.map((x) => JSON.stringify(x)).join('\n') + '\n');
const lastMetrics = (run: string) =>
  JSON.parse(
    readFileSync(p(`${run}/metrics.jsonl`), 'utf8')
      .trim()
      .split('\n')
      .at(-1)!,
  );

const ask = (i: number) => [{ role: 'user', content: `What is ${i}+2? Answer with a number.` }];
jsonl('sft.jsonl', [{ messages: [...ask(1), { role: 'assistant', content: 'calc 1+2' }] }]);
jsonl(
  'calc.jsonl',
  Array.from({ length: 6 }, (_, i) => ({ prompt: ask(i), answer: i + 2 })),
);
jsonl('no-answer.jsonl', [{ prompt: ask(1) }]);
jsonl(
  'thumbs.jsonl',
  Array.from({ length: 8 }, (_, i) => ({
    prompt: ask(i),
    completion: [{ role: 'assistant', content: String(i % 2 ? i + 2 : 9) }],
    label: i % 2 === 1,
  })),
);

t.test('grpo --environment calculator, dpo --loss kto on unpaired rows', async (t) => {
  let r = rlhf('sft', '--init', 'tiny', '--data', p('sft.jsonl'), '--output', p('sft'), '--max-steps', '1');
  t.equal(r.status, 0, r.stderr);
  r = rlhf(
    'grpo',
    '--policy',
    p('sft/model'),
    '--prompts',
    p('calc.jsonl'),
    '--environment',
    'calculator',
    '--max-turns',
    '2',
    '--turn-rewards',
    'per-turn',
    '--pack-tokens',
    '128',
    '--async-rollouts',
    '1',
    '--iterations',
    '2',
    '--prompts-per-iteration',
    '2',
    '--samples-per-prompt',
    '2',
    '--max-new-tokens',
    '6',
    '--output',
    p('grpo'),
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /grpo: 2 iterations, reward/);
  t.ok(Number.isFinite(lastMetrics('grpo').rewardMean), 'rewardMean logged');

  r = rlhf(
    'grpo',
    '--policy',
    p('sft/model'),
    '--prompts',
    p('no-answer.jsonl'),
    '--environment',
    'calculator',
    '--iterations',
    '1',
    '--output',
    p('bad'),
  );
  t.not(r.status, 0);
  t.match(r.stderr, /CalculatorEnvironment: expected the prompt record's "answer" to be a finite number, got nothing/);

  r = rlhf(
    'dpo',
    '--policy',
    p('sft/model'),
    '--data',
    p('thumbs.jsonl'),
    '--loss',
    'kto',
    '--desirable-weight',
    '1.2',
    '--pack-tokens',
    '256',
    '--seq-len',
    '128',
    '--batch-size',
    '4',
    '--output',
    p('kto'),
  );
  t.equal(r.status, 0, r.stderr);
  const m = lastMetrics('kto');
  t.ok(
    Number.isFinite(m.loss) && Number.isFinite(m.klBaseline),
    `kto metrics: loss ${m.loss}, klBaseline ${m.klBaseline}`,
  );

  jsonl('mixed.jsonl', [
    { prompt: 'q', completion: 'a', label: true },
    { prompt: 'q', chosen: 'a', rejected: 'b' },
  ]);
  r = rlhf('dpo', '--policy', p('sft/model'), '--data', p('mixed.jsonl'), '--loss', 'kto', '--output', p('mixed'));
  t.not(r.status, 0);
  t.match(r.stderr, /mixed\.jsonl:2: expected a \{prompt, completion, label\} record like the first one/);
});
