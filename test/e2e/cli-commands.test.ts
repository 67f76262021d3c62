// Every `rlhf` command on a miniature pipeline (sft from scratch → label → rm → dpo/ppo/grpo →
// generate → eval), config files, --help everywhere, and bad input: one clear line, a non-zero
// exit code, nothing half-written.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';

const cli = join(packageRoot, 'dist', 'cli', 'main.js');
const rlhf = (...args: string[]) =>
  spawnSync(process.execPath, [cli, ...args, ...(args.includes('--help') ? [] : ['--threads', '1'])], {
    encoding: 'utf8',
  });
const dir = mkdtempSync(join(tmpdir(), 'rlhf-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const p = (f: string) => join(dir, f);

const prompts = Array.from({ length: 12 }, (_, i) => ({
  prompt: [{ role: 'user', content: `What is ${i % 10}+${(i * 3) % 10}? Answer with a number.` }],
}));
writeFileSync(p('prompts.jsonl'), prompts.map((x) => JSON.stringify(x)).join('\n') + '\n');
writeFileSync(
  p('sft.jsonl'),
  prompts
    .map((x, i) =>
      JSON.stringify({ messages: [...x.prompt, { role: 'assistant', content: String((i % 10) + ((i * 3) % 10)) }] }),
    )
    .join('\n') + '\n',
);

t.test('--help on every command, with an example', async (t) => {
  for (const c of ['demo', 'sft', 'label', 'rm', 'prm', 'ppo', 'grpo', 'dpo', 'generate', 'eval', 'info']) {
    const r = rlhf(c, '--help');
    t.equal(r.status, 0, c);
    t.match(r.stdout, new RegExp(`usage: rlhf ${c}`), c);
    t.match(r.stdout, /examples:/i, `${c} has an example`);
  }
});

t.test('a miniature pipeline through every command', { timeout: 240000 }, async (t) => {
  let r = rlhf(
    'sft',
    '--init',
    'tiny',
    '--data',
    p('sft.jsonl'),
    '--output',
    p('sft'),
    '--epochs',
    '3',
    '--batch-size',
    '4',
    '--lr',
    '3e-3',
    '--seq-len',
    '64',
  );
  t.equal(r.status, 0, r.stderr);
  t.ok(existsSync(p('sft/model/config.json')));
  r = rlhf(
    'label',
    '--model',
    p('sft/model'),
    '--prompts',
    p('prompts.jsonl'),
    '--reward-rule',
    'shorter',
    '--noise',
    '0.1',
    '--rounds',
    '2',
    '--max-new-tokens',
    '8',
    '--output',
    p('pairs.jsonl'),
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /pairs written to/);
  writeFileSync(
    p('rm.yaml'),
    `model: ${p('sft/model')}\ndata: pairs.jsonl\noutput: rm\nepochs: 1\nbatch-size: 4\nlength-balance: true\nlr: 1e-4\n`,
  );
  r = rlhf('rm', '--config', p('rm.yaml'));
  t.equal(r.status, 0, r.stderr);
  t.ok(existsSync(p('rm/model/config.json')), 'config-file paths resolve next to the file');
  r = rlhf(
    'dpo',
    '--policy',
    p('sft/model'),
    '--data',
    p('pairs.jsonl'),
    '--output',
    p('dpo'),
    '--loss',
    'exo',
    '--batch-size',
    '4',
    '--seq-len',
    '64',
    '--lr',
    '1e-5',
  );
  t.equal(r.status, 0, r.stderr);
  // LoRA: adapters trained on the frozen SFT model, saved in PEFT format, found again by generate
  r = rlhf(
    'dpo',
    '--policy',
    p('sft/model'),
    '--data',
    p('pairs.jsonl'),
    '--output',
    p('dpo-lora'),
    '--batch-size',
    '4',
    '--seq-len',
    '64',
    '--lr',
    '1e-3',
    '--lora-rank',
    '4',
    '--lora-modules',
    'all-linear',
  );
  t.equal(r.status, 0, r.stderr);
  t.match(JSON.parse(readFileSync(p('dpo-lora/model/adapter/adapter_config.json'), 'utf8')), {
    peft_type: 'LORA',
    r: 4,
    lora_alpha: 8,
    target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  });
  r = rlhf(
    'generate',
    '--model',
    p('dpo-lora/model'),
    '--prompt',
    'What is 2+2? Answer with a number.',
    '--max-new-tokens',
    '4',
  );
  t.equal(r.status, 0, r.stderr);
  r = rlhf('sft', '--init', 'tiny', '--data', p('sft.jsonl'), '--output', p('bad-lora'), '--lora-rank', '4');
  t.equal(r.status, 2);
  t.match(r.stderr, /--lora-rank needs a trained base/);
  r = rlhf(
    'ppo',
    '--policy',
    p('sft/model'),
    '--reward-model',
    p('rm/model'),
    '--prompts',
    p('prompts.jsonl'),
    '--output',
    p('ppo'),
    '--iterations',
    '2',
    '--prompts-per-iteration',
    '4',
    '--max-new-tokens',
    '8',
    '--ptx-data',
    p('sft.jsonl'),
    '--ptx-coef',
    '0.5',
    '--lr',
    '1e-5',
  );
  t.equal(r.status, 0, r.stderr);
  r = rlhf(
    'grpo',
    '--policy',
    p('sft/model'),
    '--reward-rule',
    'regex:^\\d+$',
    '--prompts',
    p('prompts.jsonl'),
    '--output',
    p('grpo'),
    '--iterations',
    '2',
    '--prompts-per-iteration',
    '2',
    '--samples-per-prompt',
    '4',
    '--max-new-tokens',
    '8',
    '--estimator',
    'rloo',
    '--overlong-buffer',
    '4',
    '--overlong-penalty',
    '0.5',
    '--mask-truncated',
  );
  t.equal(r.status, 0, r.stderr);
  // the policy-gradient loss options, end to end
  r = rlhf(
    'grpo',
    '--policy',
    p('sft/model'),
    '--reward-rule',
    'regex:^\\d+$',
    '--prompts',
    p('prompts.jsonl'),
    '--output',
    p('grpo2'),
    '--iterations',
    '2',
    '--prompts-per-iteration',
    '2',
    '--samples-per-prompt',
    '4',
    '--max-new-tokens',
    '8',
    '--estimator',
    'dr-grpo',
    '--loss-mode',
    'gspo',
    '--clip-eps',
    '0.2',
    '--clip-eps-high',
    '0.28',
    '--loss-aggregation',
    'seq-mean-token-sum',
    '--kl-coef',
    '0.01',
    '--kl-estimator',
    'k2',
    '--temperature',
    '0.7',
    '--top-p',
    '0.9',
    '--top-k',
    '20',
    '--dynamic-sampling',
    '--dynamic-sampling-max-rounds',
    '2',
    '--rollout-policy',
    p('sft/model'),
    '--truncated-is',
    '2',
    '--on-invalid-reward',
    'skip',
  );
  t.equal(r.status, 0, r.stderr);
  const grpo2 = readFileSync(p('grpo2/metrics.jsonl'), 'utf8');
  t.match(grpo2, /"isWeightMean"/);
  t.match(grpo2, /"dynamicSamplingRounds"/);
  r = rlhf(
    'generate',
    '--model',
    p('ppo/model'),
    '--prompt',
    'What is 2+2? Answer with a number.',
    '--samples',
    '2',
    '--max-new-tokens',
    '8',
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /log-prob/);
  r = rlhf(
    'eval',
    '--policy',
    p('ppo/model'),
    '--baseline',
    p('sft/model'),
    '--prompts',
    p('prompts.jsonl'),
    '--reward-model',
    p('rm/model'),
    '--samples',
    '2',
    '--max-new-tokens',
    '8',
    '--output',
    p('eval.json'),
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /win \d+\.\d% .* judged by reward-model/);
  t.ok(existsSync(p('eval.json')));
  // a process reward model: steps "n=D" are good while every digit so far is even; then it judges eval
  const steps = Array.from({ length: 24 }, (_, i) => {
    const s = [0, 1, 2].map((j) => `n=${(i * 7 + j * 3) % 10}`);
    let ok = true;
    return {
      prompt: prompts[i % prompts.length].prompt,
      steps: s,
      labels: s.map((x) => Number((ok &&= Number(x.at(-1)) % 2 === 0))),
    };
  });
  writeFileSync(p('steps.jsonl'), steps.map((x) => JSON.stringify(x)).join('\n') + '\n');
  r = rlhf(
    'prm',
    '--model',
    p('sft/model'),
    '--data',
    p('steps.jsonl'),
    '--output',
    p('prm'),
    '--batch-size',
    '4',
    '--seq-len',
    '64',
    '--lr',
    '1e-4',
    '--step-separator',
    '\\n',
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /prm: 6 steps, held-out step accuracy \d+\.\d%, response accuracy \d+\.\d%/);
  r = rlhf(
    'eval',
    '--policy',
    p('ppo/model'),
    '--baseline',
    p('sft/model'),
    '--prompts',
    p('prompts.jsonl'),
    '--process-reward-model',
    p('prm/model'),
    '--step-aggregate',
    'last',
    '--samples',
    '1',
    '--max-new-tokens',
    '8',
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /judged by process-reward-model/);
  r = rlhf(
    'eval',
    '--policy',
    p('ppo/model'),
    '--baseline',
    p('sft/model'),
    '--prompts',
    p('prompts.jsonl'),
    '--process-reward-model',
    p('prm/model'),
    '--reward-model',
    p('rm/model'),
  );
  t.equal(r.status, 2);
  t.match(r.stderr, /give one of --reward-model, --process-reward-model or --reward-rule/);
  // --tp: the same greedy answers with the model split over two thread ranks
  const greedy = (...extra: string[]) =>
    rlhf(
      'generate',
      '--model',
      p('sft/model'),
      '--prompt',
      'What is 2+2? Answer with a number.',
      '--temperature',
      '0',
      '--max-new-tokens',
      '8',
      ...extra,
    );
  const g1 = greedy(),
    g2 = greedy('--tp', '2');
  t.equal(g2.status, 0, g2.stderr);
  t.equal(g2.stdout.split('\n')[1], g1.stdout.split('\n')[1], '--tp 2 greedy == --tp 1 greedy');
  r = greedy('--tp', '3');
  t.equal(r.status, 1);
  t.match(r.stderr, /tensorParallel to divide num_attention_heads \(4\)/);
  // resume: a finished run continues from its last checkpoint without redoing work
  r = rlhf(
    'sft',
    '--init',
    'tiny',
    '--data',
    p('sft.jsonl'),
    '--output',
    p('sft'),
    '--epochs',
    '3',
    '--batch-size',
    '4',
    '--lr',
    '3e-3',
    '--seq-len',
    '64',
    '--resume',
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /resumed from .*checkpoint-9 at step 9/);
});

t.test('--gradient-checkpointing: the same training run, loss for loss', async (t) => {
  const sft = (out: string, ...extra: string[]) =>
    rlhf(
      'sft',
      '--init',
      'tiny',
      '--data',
      p('sft.jsonl'),
      '--output',
      p(out),
      '--epochs',
      '1',
      '--batch-size',
      '4',
      '--lr',
      '3e-3',
      '--seq-len',
      '64',
      ...extra,
    );
  let r = sft('gc-off');
  t.equal(r.status, 0, r.stderr);
  r = sft('gc-on', '--gradient-checkpointing');
  t.equal(r.status, 0, r.stderr);
  const losses = (d: string) =>
    readFileSync(p(`${d}/metrics.jsonl`), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).loss)
      .filter((x) => x !== undefined);
  t.ok(losses('gc-on').length >= 3);
  t.same(losses('gc-on'), losses('gc-off'));
});

t.test('bad input: one clear line, non-zero exit, nothing half-written', async (t) => {
  let r = rlhf('sft', '--init', 'tiny', '--data', p('missing.jsonl'), '--output', p('bad1'));
  t.equal(r.status, 1);
  t.match(r.stderr, /^rlhf sft: cannot read .*missing\.jsonl: ENOENT.*\[ERR_RLHF_IO\]\n$/);
  writeFileSync(p('broken.jsonl'), '{"prompt": "a", "completion": "b"}\n{"prompt": "a" "completion": "b"}\n');
  r = rlhf('sft', '--init', 'tiny', '--data', p('broken.jsonl'), '--output', p('bad2'));
  t.equal(r.status, 1);
  t.match(r.stderr, /broken\.jsonl:2: invalid JSON/);
  t.notOk(existsSync(p('bad2/model')), 'no model written');
  writeFileSync(p('bad.yaml'), 'data: sft.jsonl\noutput: bad3\ninit: tiny\nlr: fast\n');
  r = rlhf('sft', '--config', p('bad.yaml'));
  t.equal(r.status, 2);
  t.match(r.stderr, /bad\.yaml: "lr" must be a number/);
  writeFileSync(p('typo.yaml'), 'data: sft.jsonl\noutput: bad4\ninit: tiny\nlearningRate: 0.1\n');
  r = rlhf('sft', '--config', p('typo.yaml'));
  t.equal(r.status, 2);
  t.match(r.stderr, /unknown key "learningRate" \(did you mean "lr"\?\)/);
  r = rlhf('sft', '--init', 'tiny', '--data', p('sft.jsonl'), '--output', p('bad5'), '--max-step', '3');
  t.equal(r.status, 2);
  t.match(r.stderr, /unknown flag --max-step \(did you mean --max-steps\?\)/);
  r = rlhf('generate', '--model', p('rm/model'), '--prompt', 'hi');
  t.equal(r.status, 1);
  t.match(r.stderr, /no LM head/);
  r = rlhf(
    'ppo',
    '--policy',
    p('prompts.jsonl'),
    '--prompts',
    p('prompts.jsonl'),
    '--reward-rule',
    'shorter',
    '--output',
    p('bad6'),
  );
  t.equal(r.status, 2);
  t.match(r.stderr, /--policy .*prompts\.jsonl: not a model directory/);
  t.same(
    readdirSync(dir).filter((f) => f.startsWith('bad') && !f.endsWith('.yaml')),
    [],
    'failed runs leave no output folders with partial models',
  );
  for (const line of [r.stderr]) t.ok(line.trim().split('\n').length <= 2, 'error plus the --help hint');
});
