// Packed preference batches (lib/train/packed-rows.ts): several sequences per row with
// block-diagonal attention. packRows' layout against the sequences it packed; PreferenceTrainer
// with packTokens against the padded path on the same data (dpo and exo-rw, kto on pairs and on
// unpaired rows): equal eval metrics, per-step losses and gradient norms, and weights after training.
import t from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { packRows } from '../../lib/train/packed-rows.js';
import { PreferenceTrainer, type PreferenceTrainerOptions } from '../../lib/train/preference.js';
import { Rng } from '../helpers/random.js';
import { tinyRlConfig } from '../helpers/rl-setup.js';

setThreads(1);
const tok = new ByteTokenizer();
const rng = new Rng(3);
const word = (lo: number, hi: number) =>
  Array.from({ length: rng.int(lo, hi) }, () => rng.pick(['a', 'b', 'c', 'd'])).join('');
const pairs = Array.from({ length: 12 }, (_, i) => ({
  prompt: `q${i}:${word(0, 6)}`,
  chosen: word(1, 9),
  rejected: word(1, 9),
}));
const groups = Array.from({ length: 8 }, (_, i) => {
  const responses = Array.from({ length: 3 }, () => word(1, 9));
  return { prompt: `g${i}:`, responses, scores: responses.map((r) => r.length % 4) };
});
const unpaired = pairs.flatMap((p) => [
  { prompt: p.prompt, completion: p.chosen, label: true },
  { prompt: p.prompt, completion: p.rejected, label: false },
]);

t.test('packRows: every sequence in one row, its own segment, positions from 0, targets inside it', async (t) => {
  const seqs = Array.from({ length: 20 }, () => ({
    promptIds: Int32Array.from(Buffer.from(word(1, 8))),
    responseIds: Int32Array.from(Buffer.from(word(0, 8))),
  }));
  const p = packRows(seqs, tok.padId, 24);
  const total = seqs.reduce((a, s) => a + s.promptIds.length + s.responseIds.length, 0);
  t.ok(p.batch < seqs.length && p.batch >= Math.ceil(total / 24), `${seqs.length} sequences in ${p.batch} rows`);
  t.ok(p.seqLen <= 24);
  let targets = 0;
  seqs.forEach((s, i) => {
    const start = p.responseStart[i] - s.promptIds.length + 1; // the sequence's first token
    const ids = [...s.promptIds, ...s.responseIds];
    t.same([...p.tokens.subarray(start, start + ids.length)], ids, `sequence ${i} tokens`);
    const seg = p.segments[start];
    t.ok(
      [...p.segments.subarray(start, start + ids.length)].every((x) => x === seg),
      'one segment',
    );
    t.same(
      [...p.positions.subarray(start, start + ids.length)],
      ids.map((_, k) => k),
      'positions from 0',
    );
    t.same([...p.targets.subarray(start + s.promptIds.length - 1, start + ids.length - 1)], [...s.responseIds]);
    t.equal(p.responseLength[i], s.responseIds.length);
    targets += s.responseIds.length;
  });
  t.equal([...p.targets].filter((x) => x >= 0).length, targets, 'no other targets (none across a boundary)');
  t.throws(() => packRows(seqs, tok.padId, 4), { name: 'RangeError', message: /<= rowTokens \(4\)/ });
});

const cases: Array<{ name: string; opts: Partial<PreferenceTrainerOptions> }> = [
  { name: 'dpo', opts: { loss: 'dpo', train: pairs, eval: pairs, ntpCoef: 0.5 } },
  { name: 'kto on pairs', opts: { loss: 'kto', train: pairs, eval: pairs } },
  { name: 'kto on unpaired rows', opts: { loss: 'kto', train: unpaired, eval: unpaired } },
  { name: 'exo-rw', opts: { loss: 'exo-rw', train: groups, eval: groups } },
];

for (const { name, opts } of cases)
  t.test(`${name}: packed equals padded`, async (t) => {
    const runs = [];
    for (const packTokens of [undefined, 48]) {
      const policy = await Model.create(tinyRlConfig(tok), { seed: 6 });
      let packedRows = 0,
        rows = 0;
      const forward = policy.forward.bind(policy);
      policy.forward = (o) => ((rows += o.batch), o.segments && (packedRows += o.batch), forward(o));
      const trainer = new PreferenceTrainer({
        policy,
        tokenizer: tok,
        ...opts,
        ...(packTokens ? { packTokens } : {}),
        seqLen: 24,
        batchSize: 4,
        epochs: 2,
        lr: 3e-3,
      } as PreferenceTrainerOptions);
      const before = await trainer.evaluate();
      const steps: Record<string, number>[] = [];
      trainer.on('step', (e) => steps.push(e.metrics));
      const r = await trainer.train();
      runs.push({
        before,
        after: r.eval!,
        steps,
        weights: await policy.getParameter('model.layers.0.mlp.up_proj.weight'),
        rows,
      });
    }
    const [pad, pack] = runs;
    const close = (a: number, b: number, tol: number) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(a));
    for (const k of ['loss', 'margin', 'logpsChosen', 'logpsRejected'] as const)
      t.ok(close(pad.before[k], pack.before[k], 1e-6), `eval ${k} before: ${pad.before[k]} vs ${pack.before[k]}`);
    t.equal(pad.steps.length, pack.steps.length);
    t.ok(pack.rows < pad.rows * 0.7, `packed rows ${pack.rows} vs padded rows ${pad.rows}`);
    let worst = 0;
    pad.steps.forEach((m, i) => {
      for (const k of ['loss', 'gradNorm'])
        worst = Math.max(worst, Math.abs(m[k] - pack.steps[i][k]) / Math.max(1, Math.abs(m[k])));
    });
    t.ok(worst <= 1e-5, `per-step loss and gradient norm: max relative difference ${worst.toExponential(2)}`);
    let dw = 0;
    pad.weights.forEach((w, i) => (dw = Math.max(dw, Math.abs(w - pack.weights[i]))));
    t.ok(dw <= 1e-5, `weights after ${pad.steps.length} steps: max |Δ| ${dw.toExponential(2)}`);
    t.ok(close(pad.after.loss, pack.after.loss, 1e-5), `eval loss after: ${pad.after.loss} vs ${pack.after.loss}`);
  });

t.test('packTokens below seqLen is an error', async (t) => {
  const policy = await Model.create(tinyRlConfig(tok), { seed: 1 });
  t.throws(() => new PreferenceTrainer({ policy, tokenizer: tok, train: pairs, seqLen: 32, packTokens: 16 }), {
    name: 'RangeError',
    message: 'PreferenceTrainer: expected options.packTokens to be >= options.seqLen (32), received 16',
  });
});
