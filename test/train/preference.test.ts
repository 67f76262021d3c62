// PreferenceTrainer on a tiny byte-level policy: every loss (dpo, cdpo, ipo, simpo, orpo, kto, exo on
// pairs; exo-rw, dpo-rw on scored groups of K = 4) raises the policy's preference for the chosen /
// best-scored responses; property 2 (first-step DPO loss = log 2 with policy == reference) inside the
// trainer; the NTP term keeps the chosen log-prob up; 2N == N + resume + N bitwise with the
// reference restored from the checkpoint; option errors.
import t from 'tap';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import type { PreferenceRecord, ScoredRecord } from '../../lib/data/index.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { PreferenceTrainer, type PreferenceLoss } from '../../lib/train/preference.js';
import { bitwiseEqual } from '../helpers/tolerance.js';
import { Rng } from '../helpers/random.js';

const tok = new ByteTokenizer();
// one kernel thread: tap runs two test files at once on two cores, and two-thread pools per
// process oversubscribe them (several times slower); results are deterministic per thread count
setThreads(1);
const config = () =>
  tinyConfig({
    vocab: 264,
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    maxPositions: 128,
    eosTokenId: tok.eosId,
  });

const letters = ['a', 'b', 'c', 'd'];
function word(rng: Rng, len: number): string {
  return Array.from({ length: len }, () => rng.pick(letters)).join('');
}
/** Pairs: chosen is a word of 'a's and 'b's, rejected of 'c's and 'd's (a rule the policy can pick up). */
function pairs(n: number, seed: number): PreferenceRecord[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => ({
    prompt: `q${i % 4}:`,
    chosen: Array.from({ length: rng.int(3, 6) }, () => rng.pick(['a', 'b'])).join(''),
    rejected: Array.from({ length: rng.int(3, 6) }, () => rng.pick(['c', 'd'])).join(''),
  }));
}
/** Scored groups of 4 random words; score = number of 'a's (the best/worst rows differ). */
function groups(n: number, seed: number): ScoredRecord[] {
  const rng = new Rng(seed);
  const out: ScoredRecord[] = [];
  while (out.length < n) {
    const responses = Array.from({ length: 4 }, () => word(rng, rng.int(3, 6)));
    const scores = responses.map((r) => [...r].filter((c) => c === 'a').length);
    if (Math.max(...scores) > Math.min(...scores)) out.push({ prompt: `g${out.length % 4}:`, responses, scores });
  }
  return out;
}

const LOSSES: Array<{ loss: PreferenceLoss; extra?: Record<string, number> }> = [
  { loss: 'dpo' },
  { loss: 'cdpo' },
  { loss: 'ipo' }, // pushes z = h_w − h_l to 1/(2β) = 5 nats
  { loss: 'simpo', extra: { beta: 2, gamma: 0.5 } },
  { loss: 'orpo', extra: { beta: 1 } }, // + the chosen NLL (ntpCoef 1 by default)
  { loss: 'kto' },
  { loss: 'exo' },
  { loss: 'exo-rw', extra: { betaPi: 0.5, betaR: 0.5 } },
  { loss: 'dpo-rw', extra: { betaPi: 0.5, betaR: 0.5 } },
];

for (const { loss, extra } of LOSSES) {
  t.test(`${loss}: the policy's preference for the chosen (best-scored) responses rises`, async (t) => {
    const data = loss.endsWith('-rw') ? groups(16, 11) : pairs(16, 11);
    const policy = await Model.create(config(), { seed: 21 });
    const trainer = new PreferenceTrainer({
      policy,
      tokenizer: tok,
      loss,
      ...extra,
      train: data,
      eval: data,
      seqLen: 32,
      batchSize: 8,
      epochs: 10,
      lr: 3e-3,
    });
    const before = await trainer.evaluate();
    const steps: Record<string, number>[] = [];
    trainer.on('step', (e) => steps.push(e.metrics));
    const r = await trainer.train();
    const after = r.eval!;
    t.equal(r.steps, 20);
    for (const k of [
      'loss',
      'rewardsChosen',
      'rewardsRejected',
      'margin',
      'accuracy',
      'logpsChosen',
      'logpsRejected',
      'lr',
      'gradNorm',
    ])
      t.ok(Number.isFinite(steps[0][k]), `metric ${k}`);
    const gap = (m: typeof after) => m.logpsChosen - m.logpsRejected;
    t.ok(
      gap(after) > gap(before) + 2,
      `log π(chosen) − log π(rejected): ${gap(before).toFixed(3)} -> ${gap(after).toFixed(3)}`,
    );
    t.ok(
      after.margin > before.margin && after.accuracy >= 0.9,
      `implicit reward margin ${before.margin.toFixed(3)} -> ${after.margin.toFixed(3)}, accuracy ${before.accuracy.toFixed(2)} -> ${after.accuracy.toFixed(2)}, loss ${before.loss.toFixed(4)} -> ${after.loss.toFixed(4)}`,
    );
  });
}

t.test('property 2: with policy == reference the first-step DPO loss is log 2 (inside the trainer)', async (t) => {
  const policy = await Model.create(config(), { seed: 22 });
  const trainer = new PreferenceTrainer({
    policy,
    tokenizer: tok,
    loss: 'dpo',
    train: pairs(12, 3),
    eval: pairs(12, 3),
    seqLen: 32,
    batchSize: 4,
    gradAccum: 3,
    maxSteps: 2,
    lr: 1e-3,
  });
  const before = await trainer.evaluate();
  t.ok(
    Math.abs(before.loss - Math.LN2) < 1e-12 && before.margin === 0,
    `eval loss before training ${before.loss} (log 2 = ${Math.LN2}), margin ${before.margin}`,
  );
  const losses: number[] = [];
  trainer.on('step', (e) => losses.push(e.metrics.loss));
  await trainer.train();
  t.ok(Math.abs(losses[0] - Math.LN2) < 1e-12, `first step loss ${losses[0]}`);
  t.ok(losses[1] < Math.LN2, `second step loss ${losses[1]} < log 2`);
});

t.test('ntpCoef: the NLL term keeps the chosen log-prob higher than DPO alone', async (t) => {
  const data = pairs(16, 5);
  const run = async (ntpCoef: number) => {
    const trainer = new PreferenceTrainer({
      policy: await Model.create(config(), { seed: 23 }),
      tokenizer: tok,
      loss: 'dpo',
      ntpCoef,
      train: data,
      eval: data,
      seqLen: 32,
      batchSize: 8,
      epochs: 15,
      lr: 3e-3,
    });
    const steps: Record<string, number>[] = [];
    trainer.on('step', (e) => steps.push(e.metrics));
    const r = await trainer.train();
    return { logp: r.eval!.logpsChosen, ntp: steps.map((s) => s.ntpLoss) };
  };
  const plain = await run(0),
    ntp = await run(1);
  t.ok(
    ntp.logp > plain.logp + 2,
    `mean log π(chosen): ntpCoef 0 -> ${plain.logp.toFixed(3)}, ntpCoef 1 -> ${ntp.logp.toFixed(3)}`,
  );
  t.ok(ntp.ntp.at(-1)! < ntp.ntp[0], `NTP loss ${ntp.ntp[0].toFixed(3)} -> ${ntp.ntp.at(-1)!.toFixed(3)}`);
});

t.test('exact resume: 2N straight == N + resume + N (bitwise), reference from the checkpoint', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-pref-resume-'));
  try {
    const common = {
      tokenizer: tok,
      loss: 'dpo' as const,
      ntpCoef: 0.1,
      train: pairs(20, 7),
      seqLen: 32,
      batchSize: 3,
      gradAccum: 2,
      lr: 2e-3,
      warmupSteps: 2,
      weightDecay: 0.01,
      maxSteps: 8,
      seed: 7,
    };
    const a = await Model.create(config(), { seed: 3 });
    await new PreferenceTrainer({ ...common, policy: a, outputDir: join(dir, 'a') }).train();
    const b = await Model.create(config(), { seed: 3 });
    const interrupted = new PreferenceTrainer({ ...common, policy: b, outputDir: join(dir, 'b') });
    interrupted.on('step', (e) => e.step === 4 && interrupted.requestStop());
    t.equal((await interrupted.train()).stopped, true);
    t.same(readdirSync(join(dir, 'b', 'checkpoint-4')).sort(), [
      'checkpoint.json',
      'policy',
      'reference',
      'trainer_state.json',
    ]);
    t.notOk(
      readdirSync(join(dir, 'b', 'checkpoint-4', 'reference')).includes('optimizer.safetensors'),
      'the reference is saved without optimizer state',
    );
    // a different init: the policy AND its default reference (a clone) must come from the checkpoint
    const c = await Model.create(config(), { seed: 99 });
    await new PreferenceTrainer({ ...common, policy: c, outputDir: join(dir, 'b'), resumeFrom: 'latest' }).train();
    for (const p of a.parameters())
      if (!bitwiseEqual(await a.getParameter(p.name), await c.getParameter(p.name))) t.fail(`${p.name} differs`);
    t.pass('every parameter identical');
    const log = (d: string) =>
      readFileSync(join(dir, d, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .map((l) => [l.loss, l.margin, l.ntpLoss]);
    t.same(log('b'), log('a'), 'the resumed metrics log equals the straight one');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('NaN/Inf guard: a non-finite log-prob skips the update and is counted', async (t) => {
  const policy = await Model.create(config(), { seed: 24 });
  const reference = await policy.clone();
  const w = await policy.getParameter('lm_head.weight');
  await policy.setParameter('lm_head.weight', new Float32Array(w.length).fill(NaN));
  const norm = await policy.getParameter('model.norm.weight');
  const trainer = new PreferenceTrainer({
    policy,
    reference,
    tokenizer: tok,
    loss: 'kto',
    train: pairs(8, 1),
    seqLen: 32,
    batchSize: 4,
    lr: 1e-2,
  });
  const r = await trainer.train();
  t.equal(r.skippedSteps, 2, 'both steps skipped');
  t.ok(bitwiseEqual(await policy.getParameter('model.norm.weight'), norm), 'weights untouched');
});

t.test('errors', async (t) => {
  const policy = await Model.create(config(), { seed: 1 });
  t.throws(() => new PreferenceTrainer({ policy, tokenizer: tok, train: [], loss: 'bco' as never }), {
    name: 'TypeError',
    message: /options\.loss/,
  });
  t.throws(() => new PreferenceTrainer({ policy, tokenizer: tok, train: [], bta: 0.1 } as never), {
    message: /did you mean options\.beta/,
  });
  t.throws(() => new PreferenceTrainer({ policy, tokenizer: tok, train: [], loss: 'exo', labelSmoothing: 0.1 }), {
    message: /labelSmoothing/,
  });
  t.throws(() => new PreferenceTrainer({ policy, tokenizer: tok, train: [], loss: 'dpo', groupSize: 4 }), {
    message: /groupSize/,
  });
  const rm = await Model.create(tinyConfig({ vocab: 264, hidden: 32, layers: 1, heads: 4, ffn: 64, valueHead: true }), {
    seed: 1,
  });
  t.throws(() => new PreferenceTrainer({ policy: rm, tokenizer: tok, train: [] }), { message: /causal LM/ });
  await t.rejects(new PreferenceTrainer({ policy, tokenizer: tok, loss: 'dpo', train: groups(2, 1) }).train(), {
    code: 'ERR_RLHF_FORMAT',
    message: /\{prompt, chosen, rejected\}/,
  });
  await t.rejects(
    new PreferenceTrainer({ policy, tokenizer: tok, loss: 'exo-rw', groupSize: 3, train: groups(2, 1) }).train(),
    { code: 'ERR_RLHF_FORMAT', message: /not a multiple of groupSize 3/ },
  );
});
