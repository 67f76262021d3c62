// RewardTrainer on a tiny byte-level RM: a synthetic rule ("the response with more 'a's is chosen")
// is learnt (held-out accuracy from ~0.5 to well above); property 17 (the squared-score penalty keeps the
// mean score near 0); length-balancing report; correctness mixing; 2N == N + resume + N bitwise.
import t from 'tap';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { AdamW } from '../../lib/engine/adamw.js';
import { Model } from '../../lib/engine/model.js';
import { lastTokenIndex, sequenceBatch } from '../../lib/rollout/sequences.js';
import type { PreferenceRecord } from '../../lib/data/index.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { RewardTrainer } from '../../lib/train/reward.js';
import { bitwiseEqual } from '../helpers/tolerance.js';
import { Rng } from '../helpers/random.js';

const tok = new ByteTokenizer();
// one kernel thread: tap runs two test files at once on two cores, and two-thread pools per
// process oversubscribe them (several times slower); results are deterministic per thread count
setThreads(1);
const rmConfig = () =>
  tinyConfig({
    vocab: 264,
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    maxPositions: 128,
    eosTokenId: tok.eosId,
    valueHead: true,
  });

const count = (s: string) => [...s].filter((c) => c === 'a').length;
function word(rng: Rng, len: number): string {
  return Array.from({ length: len }, () => rng.pick(['a', 'b', 'c'])).join('');
}
/** Pairs of random {a,b,c} words of length 4..8 with different 'a' counts; chosen has more. */
function rulePairs(n: number, seed: number): PreferenceRecord[] {
  const rng = new Rng(seed);
  const out: PreferenceRecord[] = [];
  while (out.length < n) {
    const x = word(rng, rng.int(4, 8)),
      y = word(rng, rng.int(4, 8));
    if (count(x) === count(y)) continue;
    const [chosen, rejected] = count(x) > count(y) ? [x, y] : [y, x];
    out.push({ prompt: 'pick:', chosen, rejected });
  }
  return out;
}

/** Adds a common offset to every score of `pairs`' responses (AdamW on dValues = −1 at the last token); returns the mean score. */
async function shiftScores(model: Model, pairs: PreferenceRecord[], target: number): Promise<number> {
  const opt = new AdamW(model, { lr: 1e-2 });
  const rows = pairs
    .flatMap((p) => [p.chosen, p.rejected])
    .map((r) => ({
      promptIds: Int32Array.from(tok.encode('pick:')),
      responseIds: Int32Array.from([...tok.encode(r), tok.eosId]),
    }));
  const sb = sequenceBatch(rows, tok.padId);
  let meanScore = 0;
  for (let i = 0; i < 50; i++) {
    const f = await model.forward({
      tokens: sb.tokens,
      batch: sb.batch,
      seqLen: sb.seqLen,
      lengths: sb.lengths,
      values: true,
    });
    const d = new Float32Array(sb.batch * sb.seqLen);
    meanScore = 0;
    for (let b = 0; b < sb.batch; b++) meanScore += f.values![lastTokenIndex(sb, b)] / sb.batch;
    if (meanScore >= target) {
      model.releaseActivations();
      break;
    }
    for (let b = 0; b < sb.batch; b++) d[lastTokenIndex(sb, b)] = -1 / sb.batch;
    await model.backward({ dValues: d });
    await opt.step();
    await model.zeroGrad();
  }
  return meanScore;
}

t.test('learns the rule: held-out accuracy rises well above 0.5', async (t) => {
  const model = await Model.create(rmConfig(), { seed: 1 });
  const trainer = new RewardTrainer({
    model,
    tokenizer: tok,
    train: rulePairs(96, 1),
    eval: rulePairs(64, 2),
    seqLen: 32,
    batchSize: 16,
    epochs: 8,
    lr: 3e-3,
    warmupSteps: 4,
    scoreRegularization: 0.01,
  });
  const before = await trainer.evaluate();
  const steps: Record<string, number>[] = [];
  trainer.on('step', (e) => steps.push(e.metrics));
  const r = await trainer.train();
  t.equal(r.steps, 48, '96 pairs / 16 = 6 steps per epoch, 8 epochs');
  for (const k of ['loss', 'accuracy', 'meanMargin', 'meanScore', 'lr', 'gradNorm'])
    t.ok(Number.isFinite(steps[0][k]), `metric ${k}`);
  t.ok(
    r.eval!.accuracy >= 0.85 && r.eval!.accuracy > before.accuracy + 0.2,
    `held-out accuracy ${before.accuracy.toFixed(3)} -> ${r.eval!.accuracy.toFixed(3)}, loss ${before.loss.toFixed(3)} -> ${r.eval!.loss.toFixed(3)}`,
  );
  t.ok(r.eval!.meanMargin > 1, `held-out mean margin r_w - r_l = ${r.eval!.meanMargin.toFixed(3)}`);
});

t.test(
  'property 17: with scoreRegularization > 0 the mean training-set score is closer to 0 than with 0',
  async (t) => {
    // Each run starts from an RM whose scores all carry a common offset (mean ≈ +4; an RM initialised
    // from a checkpoint may start anywhere): BT alone is shift-invariant and has no reason to remove
    // it; the squared-score penalty pulls the scores to 0. Three seeds, same data per seed.
    for (const seed of [4, 5, 6]) {
      const train = rulePairs(48, seed);
      const base = await Model.create(rmConfig(), { seed });
      const shifted = await shiftScores(base, train, 4);
      const mean = async (lambda: number) => {
        const trainer = new RewardTrainer({
          model: await base.clone(),
          tokenizer: tok,
          train,
          seqLen: 32,
          batchSize: 16,
          epochs: 8,
          lr: 3e-3,
          scoreRegularization: lambda,
        });
        await trainer.train();
        return (await trainer.evaluate('train')).meanScore;
      };
      const free = await mean(0),
        reg = await mean(0.1);
      t.ok(
        Math.abs(reg) < Math.abs(free),
        `seed ${seed}: mean score ${shifted.toFixed(3)} at start; after training λ_reg = 0 -> ${free.toFixed(3)}, λ_reg = 0.1 -> ${reg.toFixed(3)}`,
      );
    }
  },
);

t.test('length balancing: per-bucket report (log event and result); only kept pairs are trained', async (t) => {
  // chosen longer in 12 pairs of |d| in [1, 3), shorter in 4; 6 equal-length pairs; 5 pairs |d| >= 3 all longer
  const train: PreferenceRecord[] = [];
  for (let i = 0; i < 12; i++) train.push({ prompt: 'p', chosen: 'aaa' + 'a'.repeat(i % 2), rejected: 'bb' });
  for (let i = 0; i < 4; i++) train.push({ prompt: 'p', chosen: 'a', rejected: 'bbb' });
  for (let i = 0; i < 6; i++) train.push({ prompt: 'p', chosen: 'ab', rejected: 'ba' });
  for (let i = 0; i < 5; i++) train.push({ prompt: 'p', chosen: 'aaaaaaa', rejected: 'b' });
  const model = await Model.create(rmConfig(), { seed: 5 });
  const trainer = new RewardTrainer({
    model,
    tokenizer: tok,
    train,
    seqLen: 32,
    batchSize: 4,
    lr: 1e-3,
    lengthBalance: true,
    balanceEdges: [0, 3, Infinity],
  });
  const logs: string[] = [];
  trainer.on('log', (e) => logs.push(e.message));
  const r = await trainer.train();
  const b = r.balance!;
  t.same(
    b.buckets.map((x) => [
      x.chosenLongerBefore,
      x.chosenShorterBefore,
      x.equalBefore,
      x.chosenLongerAfter,
      x.chosenShorterAfter,
      x.equalAfter,
    ]),
    [
      [12, 4, 6, 4, 4, 6],
      [5, 0, 0, 0, 0, 0],
    ],
  );
  t.equal(b.keptPairs, 14);
  t.equal(r.steps, 4, '14 kept pairs / 4 per micro-batch');
  t.ok(
    logs.some((l) => l.includes('length balancing') && l.includes('kept 14 of 27 pairs')),
    'report logged',
  );
});

t.test('correctness records mixed in: the BCE term trains the sign of the score', async (t) => {
  const rng = new Rng(6);
  const correctness = Array.from({ length: 48 }, (_, i) => {
    const a = rng.int(0, 4),
      b = rng.int(0, 4),
      right = i % 2 === 0;
    return { prompt: `${a}+${b}=`, response: String(right ? a + b : a + b + 1), label: right ? 1 : 0 };
  });
  const model = await Model.create(rmConfig(), { seed: 7 });
  const trainer = new RewardTrainer({
    model,
    tokenizer: tok,
    train: rulePairs(48, 8),
    correctness,
    correctnessWeight: 1,
    correctnessBatchSize: 16,
    seqLen: 32,
    batchSize: 16,
    epochs: 30,
    lr: 3e-3,
  });
  const m: Record<string, number>[] = [];
  trainer.on('step', (e) => m.push(e.metrics));
  await trainer.train();
  const first = m.slice(0, 6),
    lastSteps = m.slice(-6);
  const avg = (xs: Record<string, number>[], k: string) => xs.reduce((s, x) => s + x[k], 0) / xs.length;
  t.ok(
    avg(lastSteps, 'correctnessAccuracy') > 0.8,
    `correctness accuracy ${avg(first, 'correctnessAccuracy').toFixed(3)} -> ${avg(lastSteps, 'correctnessAccuracy').toFixed(3)}`,
  );
  t.ok(
    avg(lastSteps, 'correctnessLoss') < avg(first, 'correctnessLoss') * 0.7,
    `correctness loss ${avg(first, 'correctnessLoss').toFixed(3)} -> ${avg(lastSteps, 'correctnessLoss').toFixed(3)}`,
  );
});

t.test('exact resume: 2N straight == N + resume + N (bitwise); evalSplit; checkpoint layout', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-rm-resume-'));
  try {
    const path = join(dir, 'pairs.jsonl');
    writeFileSync(
      path,
      rulePairs(40, 9)
        .map((r) => JSON.stringify({ ...r, margin: 0.5 }))
        .join('\n') + '\n',
    );
    const common = {
      tokenizer: tok,
      train: path,
      evalSplit: 0.2,
      seqLen: 32,
      batchSize: 5,
      gradAccum: 2,
      lr: 2e-3,
      warmupSteps: 2,
      weightDecay: 0.01,
      maxSteps: 8,
      seed: 7,
      correctness: [
        { prompt: 'q', response: 'yes', label: 1 },
        { prompt: 'q', response: 'no', label: 0 },
      ],
      correctnessBatchSize: 1,
    };
    const a = await Model.create(rmConfig(), { seed: 3 });
    const ra = await new RewardTrainer({ ...common, model: a, outputDir: join(dir, 'a') }).train();
    t.equal(ra.eval!.pairs, 8, '20% of 40 pairs held out');
    const b = await Model.create(rmConfig(), { seed: 3 });
    const interrupted = new RewardTrainer({ ...common, model: b, outputDir: join(dir, 'b') });
    interrupted.on('step', (e) => e.step === 4 && interrupted.requestStop());
    t.equal((await interrupted.train()).stopped, true);
    t.same(readdirSync(join(dir, 'b', 'checkpoint-4')).sort(), ['checkpoint.json', 'model', 'trainer_state.json']);
    const c = await Model.create(rmConfig(), { seed: 99 });
    const rc = await new RewardTrainer({
      ...common,
      model: c,
      outputDir: join(dir, 'b'),
      resumeFrom: 'latest',
    }).train();
    for (const p of a.parameters())
      if (!bitwiseEqual(await a.getParameter(p.name), await c.getParameter(p.name))) t.fail(`${p.name} differs`);
    t.pass('every parameter identical');
    t.equal(rc.eval!.accuracy, ra.eval!.accuracy);
    const losses = (d: string) =>
      readFileSync(join(dir, d, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).loss);
    t.same(losses('b'), losses('a'), 'the resumed metrics log equals the straight one');
    const reloaded = await Model.load(join(dir, 'a', 'model'));
    t.equal(reloaded.config.architecture, 'LlamaForSequenceClassification');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('NaN/Inf guard: a non-finite loss skips the update and is counted', async (t) => {
  const model = await Model.create(rmConfig(), { seed: 10 });
  const w = await model.getParameter('score.weight');
  await model.setParameter('score.weight', new Float32Array(w.length).fill(NaN));
  const norm = await model.getParameter('model.norm.weight');
  const trainer = new RewardTrainer({
    model,
    tokenizer: tok,
    train: rulePairs(8, 1),
    seqLen: 32,
    batchSize: 4,
    lr: 1e-2,
  });
  const logs: string[] = [];
  trainer.on('log', (e) => logs.push(e.message));
  const r = await trainer.train();
  t.equal(r.skippedSteps, 2, 'both steps skipped');
  t.ok(bitwiseEqual(await model.getParameter('model.norm.weight'), norm), 'weights untouched');
  t.ok(logs.some((l) => /non-finite/.test(l)));
});

t.test('errors: a causal LM, unknown options, bad correctness records', async (t) => {
  const lm = await Model.create(
    tinyConfig({ vocab: 264, hidden: 32, layers: 1, heads: 4, ffn: 64, eosTokenId: tok.eosId }),
    { seed: 1 },
  );
  t.throws(() => new RewardTrainer({ model: lm, tokenizer: tok, train: [] }), {
    name: 'TypeError',
    message: /scalar head/,
  });
  const rm = await Model.create(rmConfig(), { seed: 1 });
  t.throws(() => new RewardTrainer({ model: rm, tokenizer: tok, train: [], scoreRegularisation: 0.1 } as never), {
    message: /did you mean options\.scoreRegularization/,
  });
  t.throws(() => new RewardTrainer({ model: rm, tokenizer: tok, train: [], evalSplit: 1 }), {
    name: 'RangeError',
    message: /options\.evalSplit/,
  });
  t.throws(
    () => new RewardTrainer({ model: rm, tokenizer: tok, train: [], lengthBalance: true, balanceEdges: [0, 5] }),
    { name: 'RangeError', message: /edges/ },
  );
  t.throws(() => new RewardTrainer({ model: rm, tokenizer: tok, train: [], balanceEdges: [0, 5, Infinity] }), {
    message: /needs options\.lengthBalance/,
  });
  await t.rejects(
    new RewardTrainer({
      model: rm,
      tokenizer: tok,
      train: rulePairs(4, 1),
      correctness: [{ prompt: 'q', response: 'x', label: 2 }],
    }).train(),
    { code: 'ERR_RLHF_FORMAT', message: /correctness\[0\].*"label"/ },
  );
  await t.rejects(
    new RewardTrainer({
      model: rm,
      tokenizer: tok,
      train: [{ prompt: 'q', responses: ['a', 'b'], scores: [1, 0] }] as never,
    }).train(),
    { code: 'ERR_RLHF_FORMAT' },
  );
});
