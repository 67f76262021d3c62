// The native kernels the policy-gradient trainers run (lib/engine/pg.ts → native/cpu/pg_losses.cc)
// against the float64 TS references of lib/losses on random (batch, seqLen) inputs: aggregation
// weights of every mode, the clipped policy loss under each aggregation (with clip-higher), GSPO,
// the entropy bonus and the KL loss. Tolerances as test/engine/pg.test.ts: arrays differ by fp32
// rounding of the outputs (atol 1e-7 + rtol 1e-6), scalars by libm ulps (atol 1e-12 + rtol 1e-9).
import t from 'tap';
import type { Test } from 'tap';
import { pgNative } from '../../lib/engine/pg.js';
import { AGGREGATIONS, entropyBonus, gspoPolicyLoss, klLoss, ppoPolicyLoss } from '../../lib/losses/index.js';
import { aggregationWeights } from '../../lib/losses/common.js';
import { Rng } from '../helpers/random.js';
import { assertClose } from '../helpers/tolerance.js';

const ARRAY = { atol: 1e-7, rtol: 1e-6 };
const scalarClose = (t: Test, got: number, ref: number, label: string) =>
  t.ok(Math.abs(got - ref) <= 1e-12 + 1e-9 * Math.abs(ref), `${label}: ${got} vs reference ${ref}`);
const B = 7,
  T = 11,
  n = B * T,
  NORM = 16;
const seqLengths = new Array<number>(B).fill(T);

function inputs(seed: number) {
  const rng = new Rng(seed);
  const mask = new Float32Array(n);
  for (let b = 0; b < B; b++) {
    if (b === 3) continue; // an empty row
    const len = rng.int(1, T);
    for (let i = 0; i < len; i++) mask[b * T + i] = b % 3 === 2 && i > 0 && rng.next() < 0.25 ? 0 : 1;
  }
  const f = (lo: number, hi: number) => Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.next());
  const oldLogp = f(-3, -0.5);
  const logp = oldLogp.map((v) => v + (rng.next() - 0.5) * 0.8);
  const rowAdv = Array.from({ length: B }, () => rng.normal());
  return {
    mask,
    oldLogp,
    logp,
    advantages: f(-2, 2),
    rowAdvantages: Float32Array.from({ length: n }, (_, i) => rowAdv[Math.floor(i / T)]),
    entropy: f(0, 4),
    refLogp: f(-3, -0.5),
  };
}

t.test('aggregationWeights: every mode equals the reference', async (t) => {
  const x = inputs(1);
  for (const aggregation of AGGREGATIONS) {
    const got = pgNative.aggregationWeights({ mask: x.mask, batch: B, seqLen: T, aggregation, lengthNormalizer: NORM });
    const ref = aggregationWeights('ref', x.mask, aggregation, seqLengths, NORM);
    t.ok(got instanceof Float64Array);
    assertClose(t, got, ref, { atol: 1e-17, rtol: 1e-15 }, aggregation);
  }
  t.throws(
    () => pgNative.aggregationWeights({ mask: x.mask, batch: B, seqLen: T, aggregation: 'seq-mean-token-sum-norm' }),
    /options\.lengthNormalizer/,
  );
});

t.test('ppoPolicyLoss with weights = the reference under each aggregation, clip-higher and dual clip', async (t) => {
  const x = inputs(2);
  for (const aggregation of AGGREGATIONS) {
    for (const extra of [{}, { clipEpsHigh: 0.28 }, { dualClip: 3 }]) {
      const weights = pgNative.aggregationWeights({
        mask: x.mask,
        batch: B,
        seqLen: T,
        aggregation,
        lengthNormalizer: NORM,
      });
      const got = pgNative.ppoPolicyLoss({
        logp: x.logp,
        oldLogp: x.oldLogp,
        advantages: x.advantages,
        mask: x.mask,
        weights,
        clipEps: 0.2,
        ...extra,
      });
      const ref = ppoPolicyLoss({
        logp: x.logp,
        oldLogp: x.oldLogp,
        advantages: x.advantages,
        mask: x.mask,
        clipEps: 0.2,
        aggregation,
        seqLengths,
        lengthNormalizer: NORM,
        ...extra,
      });
      const label = `${aggregation} ${JSON.stringify(extra)}`;
      scalarClose(t, got.loss, ref.loss, label);
      assertClose(t, got.dLogp, ref.dLogp, ARRAY, label);
      t.equal(got.clipFraction, ref.clipFraction, `${label}: clip fraction`);
    }
  }
});

t.test('gspoPolicyLoss = the reference (sequence ratio, sequence clip), default and other weights', async (t) => {
  for (const [seed, clipEps] of [
    [3, 0.9],
    [4, 0.05],
    [5, 0.01],
  ] as const) {
    const x = inputs(seed);
    for (const advantages of [x.rowAdvantages, x.advantages]) {
      const got = pgNative.gspoPolicyLoss({
        logp: x.logp,
        oldLogp: x.oldLogp,
        advantages,
        mask: x.mask,
        batch: B,
        seqLen: T,
        clipEps,
      });
      const ref = gspoPolicyLoss({ logp: x.logp, oldLogp: x.oldLogp, advantages, mask: x.mask, seqLengths, clipEps });
      scalarClose(t, got.loss, ref.loss, `ε ${clipEps}`);
      assertClose(t, got.dLogp, ref.dLogp, ARRAY, `ε ${clipEps}`);
      t.equal(got.clipFraction, ref.clipFraction);
      const weights = pgNative.aggregationWeights({
        mask: x.mask,
        batch: B,
        seqLen: T,
        aggregation: 'seq-mean-token-sum',
      });
      const gw = pgNative.gspoPolicyLoss({
        logp: x.logp,
        oldLogp: x.oldLogp,
        advantages,
        mask: x.mask,
        weights,
        batch: B,
        seqLen: T,
        clipEps,
        clipEpsHigh: 0.3,
      });
      const rw = gspoPolicyLoss({
        logp: x.logp,
        oldLogp: x.oldLogp,
        advantages,
        mask: x.mask,
        seqLengths,
        clipEps,
        clipEpsHigh: 0.3,
        aggregation: 'seq-mean-token-sum',
      });
      scalarClose(t, gw.loss, rw.loss, `ε ${clipEps} seq-mean-token-sum`);
      assertClose(t, gw.dLogp, rw.dLogp, ARRAY, `ε ${clipEps} seq-mean-token-sum`);
    }
  }
  // closed form at π = π_old: every s_b = 1, loss = −mean over non-empty rows of A_b
  const x = inputs(6);
  const r = pgNative.gspoPolicyLoss({
    logp: x.oldLogp,
    oldLogp: x.oldLogp,
    advantages: x.rowAdvantages,
    mask: x.mask,
    batch: B,
    seqLen: T,
    clipEps: 0.2,
  });
  const rows = Array.from({ length: B }, (_, b) => b).filter((b) =>
    x.mask.subarray(b * T, (b + 1) * T).some((m) => m > 0),
  );
  scalarClose(t, r.loss, -rows.reduce((a, b) => a + x.rowAdvantages[b * T], 0) / rows.length, 'π = π_old: −mean A');
});

t.test('entropyBonus and klLoss with weights = the references', async (t) => {
  const x = inputs(7);
  for (const aggregation of AGGREGATIONS) {
    const weights = pgNative.aggregationWeights({
      mask: x.mask,
      batch: B,
      seqLen: T,
      aggregation,
      lengthNormalizer: NORM,
    });
    const agg = { aggregation, seqLengths, lengthNormalizer: NORM };
    const e = pgNative.entropyBonus({ entropy: x.entropy, mask: x.mask, weights, coef: 0.01 });
    const er = entropyBonus({ entropy: x.entropy, mask: x.mask, coef: 0.01, ...agg });
    scalarClose(t, e.loss, er.loss, `entropy ${aggregation}`);
    assertClose(t, e.dEntropy, er.dEntropy, ARRAY, `entropy ${aggregation}`);
    scalarClose(t, e.meanEntropy, er.meanEntropy, 'mean entropy');
    for (const estimator of ['k1', 'k2', 'k3'] as const) {
      const k = pgNative.klLoss({ logp: x.logp, refLogp: x.refLogp, mask: x.mask, weights, coef: 0.1, estimator });
      const kr = klLoss({ logp: x.logp, refLogp: x.refLogp, mask: x.mask, coef: 0.1, estimator, ...agg });
      scalarClose(t, k.loss, kr.loss, `kl ${estimator} ${aggregation}`);
      assertClose(t, k.dLogp, kr.dLogp, ARRAY, `kl ${estimator} ${aggregation}`);
      scalarClose(t, k.meanKl, kr.meanKl, 'mean KL');
    }
  }
  t.throws(
    () =>
      pgNative.klLoss({
        logp: x.logp,
        refLogp: x.refLogp,
        mask: x.mask,
        weights: new Float64Array(3),
        coef: 0.1,
        estimator: 'k3',
      }),
    /options\.weights\.length/,
  );
  t.throws(
    () => pgNative.entropyBonus({ entropy: x.entropy, mask: x.mask, weights: new Float32Array(n) as never, coef: 0.1 }),
    /options\.weights to be a Float64Array/,
  );
});
