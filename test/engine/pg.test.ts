// Native policy-gradient kernels (lib/engine/pg.ts → native/cpu/pg_losses.cc) against the float64
// TS references of lib/losses on random inputs: masked tokens, clipped ratios, every KL estimator,
// dpo / ipo / cdpo, both EXO-pref forms, EXO-rw with several K; finite differences through the
// native losses; validation and binding errors.
//
// Tolerances: the kernels evaluate the references' formulas in float64 from the same fp32 inputs
// and round each output to fp32 once, so arrays differ by fp32 rounding (≤ 6e-8 relative):
// ARRAY = atol 1e-7 + rtol 1e-6. Scalars are float64 sums of the same terms; they differ only by
// libm (glibc vs V8) ulps in exp/log1p: SCALAR = atol 1e-12 + rtol 1e-9. Counts (clip fractions,
// accuracy) and the positions of exactly-zero gradients must match exactly.
import t from 'tap';
import type { Test } from 'tap';
import { pgNative } from '../../lib/engine/pg.js';
import { native } from '../../lib/native.js';
import {
  klPerToken,
  tokenRewards,
  gae,
  ppoPolicyLoss,
  ppoValueLoss,
  dpoLoss,
  exoPrefLoss,
  exoRwLoss,
  EXO_OFFICIAL_EPSILON,
} from '../../lib/losses/index.js';
import { Rng } from '../helpers/random.js';
import { assertClose } from '../helpers/tolerance.js';

const ARRAY = { atol: 1e-7, rtol: 1e-6 };
const SCALAR = { atol: 1e-12, rtol: 1e-9 };

function scalarClose(t: Test, got: number, ref: number, label: string) {
  t.ok(Math.abs(got - ref) <= SCALAR.atol + SCALAR.rtol * Math.abs(ref), `${label}: ${got} vs reference ${ref}`);
}

function mask(rng: Rng, n: number, pValid = 0.8): Float32Array {
  const m = new Float32Array(n);
  for (let i = 0; i < n; i++) m[i] = rng.next() < pValid ? 1 : 0;
  return m;
}

/** A (batch, seqLen) mask: right-padded rows of random lengths >= 1, some with holes. */
function rowMask(rng: Rng, batch: number, seqLen: number): Float32Array {
  const m = new Float32Array(batch * seqLen);
  for (let b = 0; b < batch; b++) {
    const len = rng.int(1, seqLen);
    for (let t = 0; t < len; t++) m[b * seqLen + t] = b % 3 === 2 && t > 0 && rng.next() < 0.25 ? 0 : 1;
  }
  return m;
}

/**
 * Central differences of a native loss over fp32 inputs (eps = 2⁻⁸: x ± eps is exact in fp32 for
 * |x| < 2¹⁵). A coordinate whose one-sided slopes disagree by more than 5% has a kink of the
 * piecewise loss (a clip boundary) within ±eps and is skipped; at most half may be.
 */
function fdCheck(
  t: Test,
  loss: (x: Float32Array) => number,
  x: Float32Array,
  analytic: Float32Array,
  rng: Rng,
  label: string,
  samples = 20,
) {
  const eps = 1 / 256;
  const bad: string[] = [];
  let skipped = 0;
  const base = loss(x);
  for (let s = 0; s < samples; s++) {
    const i = rng.int(0, x.length - 1);
    const saved = x[i];
    x[i] = saved + eps;
    const up = (loss(x) - base) / eps;
    x[i] = saved - eps;
    const down = (base - loss(x)) / eps;
    x[i] = saved;
    if (Math.abs(up - down) > 0.05 * Math.max(Math.abs(up), Math.abs(down)) + 1e-9) {
      skipped++;
      continue;
    }
    const num = (up + down) / 2;
    if (!(Math.abs(analytic[i] - num) <= 1e-6 + 2e-3 * Math.abs(num))) bad.push(`[${i}] ${analytic[i]} vs ${num}`);
  }
  t.ok(skipped <= samples / 2, `${label}: ${skipped} of ${samples} coordinates skipped at a kink`);
  t.same(bad, [], `${label} matches finite differences at ${samples - skipped} coordinates`);
}

t.test('klPerToken: k1, k2, k3 with and without a mask', async (t) => {
  const rng = new Rng(1);
  const n = 2000;
  const logp = rng.f32(n, -4, 0),
    refLogp = rng.f32(n, -4, 0),
    m = mask(rng, n);
  for (const estimator of ['k1', 'k2', 'k3'] as const) {
    for (const withMask of [false, true]) {
      const got = pgNative.klPerToken({ logp, refLogp, estimator, ...(withMask ? { mask: m } : {}) });
      const ref = klPerToken(logp, refLogp, estimator, withMask ? m : undefined);
      assertClose(t, got.kl, ref.kl, ARRAY, `${estimator} kl (mask ${withMask})`);
      assertClose(t, got.dLogp, ref.dLogp, ARRAY, `${estimator} dLogp (mask ${withMask})`);
    }
  }
});

t.test('tokenRewards: a batch of right-padded rows (and rows with holes), with and without clipScore', async (t) => {
  const rng = new Rng(2);
  const batch = 9,
    seqLen = 17,
    n = batch * seqLen;
  const m = rowMask(rng, batch, seqLen),
    kl = rng.f32(n, -0.5, 1.5),
    score = rng.f32(batch, -6, 6);
  for (const clipScore of [undefined, 2.5]) {
    const got = pgNative.tokenRewards({
      score,
      kl,
      klCoef: 0.05,
      mask: m,
      batch,
      seqLen,
      ...(clipScore ? { clipScore } : {}),
    });
    const ref = new Float64Array(n);
    for (let b = 0; b < batch; b++) {
      const row = (a: Float32Array) => a.subarray(b * seqLen, (b + 1) * seqLen);
      ref.set(
        tokenRewards({ score: score[b], kl: row(kl), klCoef: 0.05, mask: row(m), ...(clipScore ? { clipScore } : {}) })
          .rewards,
        b * seqLen,
      );
    }
    assertClose(t, got.rewards, ref, ARRAY, `rewards (clipScore ${clipScore})`);
  }
});

t.test('gae: per-row recursion over valid positions, several gamma / lambda', async (t) => {
  const rng = new Rng(3);
  const batch = 11,
    seqLen = 40,
    n = batch * seqLen;
  const m = rowMask(rng, batch, seqLen),
    rewards = rng.f32(n, -1, 1),
    values = rng.f32(n, -2, 2);
  for (const [gamma, lambda] of [
    [1, 1],
    [0.99, 0.95],
    [0.9, 0],
    [0, 0.5],
  ]) {
    const got = pgNative.gae({ rewards, values, mask: m, batch, seqLen, gamma, lambda });
    const adv = new Float64Array(n),
      ret = new Float64Array(n);
    for (let b = 0; b < batch; b++) {
      const row = (a: Float32Array) => a.subarray(b * seqLen, (b + 1) * seqLen);
      const r = gae({ rewards: row(rewards), values: row(values), mask: row(m), gamma, lambda });
      adv.set(r.advantages, b * seqLen);
      ret.set(r.returns, b * seqLen);
    }
    assertClose(t, got.advantages, adv, ARRAY, `advantages γ=${gamma} λ=${lambda}`);
    assertClose(t, got.returns, ret, ARRAY, `returns γ=${gamma} λ=${lambda}`);
  }
});

t.test('ppoPolicyLoss: clipped ratios, clip-higher, dual clip, A = 0 ties, no valid token', async (t) => {
  const rng = new Rng(4);
  const n = 3000;
  const oldLogp = rng.f32(n, -5, -0.1),
    logp = new Float32Array(n),
    m = mask(rng, n);
  for (let i = 0; i < n; i++) logp[i] = oldLogp[i] + rng.uniform(-0.7, 0.7);
  const advantages = rng.f32(n, -2, 2);
  for (let i = 0; i < n; i += 37) advantages[i] = 0;
  for (let i = 5; i < n; i += 101) logp[i] = oldLogp[i]; // ρ = 1 exactly
  const settings = [
    { clipEps: 0.2 },
    { clipEps: 0.2, clipEpsHigh: 0.28 },
    { clipEps: 0.1, dualClip: 1.5 },
    { clipEps: 0.3, clipEpsHigh: 0.4, dualClip: 3 },
  ];
  for (const s of settings) {
    const label = JSON.stringify(s);
    for (const mk of [m, new Float32Array(n)]) {
      const got = pgNative.ppoPolicyLoss({ logp, oldLogp, advantages, mask: mk, ...s });
      const ref = ppoPolicyLoss({ logp, oldLogp, advantages, mask: mk, ...s });
      scalarClose(t, got.loss, ref.loss, `${label} loss`);
      assertClose(t, got.dLogp, ref.dLogp, ARRAY, `${label} dLogp`);
      t.equal(got.clipFraction, ref.clipFraction, `${label} clipFraction ${ref.clipFraction}`);
      t.equal(got.dualClipFraction, ref.dualClipFraction, `${label} dualClipFraction`);
      scalarClose(t, got.approxKl, ref.approxKl, `${label} approxKl`);
      let zeros = 0,
        mismatch = 0;
      for (let i = 0; i < n; i++) {
        if (ref.dLogp[i] === 0) zeros++;
        if ((ref.dLogp[i] === 0) !== (got.dLogp[i] === 0)) mismatch++;
      }
      t.equal(mismatch, 0, `${label}: gradient exactly 0 at the same ${zeros} tokens`);
    }
  }
  const got = pgNative.ppoPolicyLoss({ logp, oldLogp, advantages, mask: m, clipEps: 0.2, dualClip: 2 });
  t.ok(got.clipFraction > 0.1 && got.dualClipFraction > 0, 'inputs exercise both clips');
  const lossOf = (x: Float32Array) =>
    pgNative.ppoPolicyLoss({ logp: x, oldLogp, advantages, mask: m, clipEps: 0.2, dualClip: 2 }).loss;
  fdCheck(t, lossOf, logp, got.dLogp, rng, 'ppo dLogp', 40);
});

t.test('ppoValueLoss: with and without clipEps', async (t) => {
  const rng = new Rng(5);
  const n = 2000;
  const values = rng.f32(n, -2, 2),
    oldValues = rng.f32(n, -2, 2),
    returns = rng.f32(n, -2, 2),
    m = mask(rng, n);
  for (const clipEps of [undefined, 0.2, 1]) {
    const opts = { values, oldValues, returns, mask: m, ...(clipEps ? { clipEps } : {}) };
    const got = pgNative.ppoValueLoss(opts),
      ref = ppoValueLoss(opts);
    scalarClose(t, got.loss, ref.loss, `loss (clipEps ${clipEps})`);
    assertClose(t, got.dValues, ref.dValues, ARRAY, `dValues (clipEps ${clipEps})`);
    t.equal(got.clipFraction, ref.clipFraction, `clipFraction ${ref.clipFraction}`);
    fdCheck(
      t,
      (x) => pgNative.ppoValueLoss({ ...opts, values: x }).loss,
      values,
      got.dValues,
      rng,
      `dValues (clipEps ${clipEps})`,
    );
  }
});

function pairInputs(rng: Rng, n: number) {
  return {
    policyChosen: rng.f32(n, -60, -5),
    policyRejected: rng.f32(n, -60, -5),
    refChosen: rng.f32(n, -60, -5),
    refRejected: rng.f32(n, -60, -5),
  };
}

function comparePairs(
  t: Test,
  got: ReturnType<typeof pgNative.dpoLoss>,
  ref: ReturnType<typeof dpoLoss>,
  label: string,
) {
  scalarClose(t, got.loss, ref.loss, `${label} loss`);
  assertClose(t, got.dPolicyChosen, ref.dPolicyChosen, ARRAY, `${label} dPolicyChosen`);
  assertClose(t, got.dPolicyRejected, ref.dPolicyRejected, ARRAY, `${label} dPolicyRejected`);
  assertClose(t, got.rewardsChosen, ref.rewardsChosen, ARRAY, `${label} rewardsChosen`);
  assertClose(t, got.rewardsRejected, ref.rewardsRejected, ARRAY, `${label} rewardsRejected`);
  t.equal(got.accuracy, ref.accuracy, `${label} accuracy`);
  scalarClose(t, got.margin, ref.margin, `${label} margin`);
}

t.test('dpoLoss: dpo, cdpo, ipo', async (t) => {
  const rng = new Rng(6);
  const inputs = pairInputs(rng, 64);
  for (const o of [
    { beta: 0.1 },
    { beta: 0.5, labelSmoothing: 0.1 },
    { beta: 0.05, labelSmoothing: 0.5 },
    { beta: 0.1, variant: 'ipo' as const },
    { beta: 2, variant: 'ipo' as const },
  ]) {
    const got = pgNative.dpoLoss({ ...inputs, ...o });
    comparePairs(t, got, dpoLoss({ ...inputs, ...o }), JSON.stringify(o));
    fdCheck(
      t,
      (x) => pgNative.dpoLoss({ ...inputs, ...o, policyChosen: x }).loss,
      inputs.policyChosen,
      got.dPolicyChosen,
      rng,
      `${JSON.stringify(o)} dPolicyChosen`,
    );
    fdCheck(
      t,
      (x) => pgNative.dpoLoss({ ...inputs, ...o, policyRejected: x }).loss,
      inputs.policyRejected,
      got.dPolicyRejected,
      rng,
      `${JSON.stringify(o)} dPolicyRejected`,
    );
  }
});

t.test('exoPrefLoss: trl and official forms', async (t) => {
  const rng = new Rng(7);
  const inputs = pairInputs(rng, 64);
  for (const o of [
    { beta: 0.1 },
    { beta: 0.3, epsilon: 0.05 },
    { beta: 0.1, epsilon: EXO_OFFICIAL_EPSILON, form: 'official' as const },
    { beta: 1, form: 'official' as const },
  ]) {
    const got = pgNative.exoPrefLoss({ ...inputs, ...o });
    const ref = exoPrefLoss({ ...inputs, ...o });
    comparePairs(t, got, ref, JSON.stringify(o));
    assertClose(t, got.pChosen, ref.pChosen, ARRAY, `${JSON.stringify(o)} pChosen`);
    fdCheck(
      t,
      (x) => pgNative.exoPrefLoss({ ...inputs, ...o, policyChosen: x }).loss,
      inputs.policyChosen,
      got.dPolicyChosen,
      rng,
      `${JSON.stringify(o)} dPolicyChosen`,
    );
    fdCheck(
      t,
      (x) => pgNative.exoPrefLoss({ ...inputs, ...o, policyRejected: x }).loss,
      inputs.policyRejected,
      got.dPolicyRejected,
      rng,
      `${JSON.stringify(o)} dPolicyRejected`,
    );
  }
});

t.test('exoRwLoss: K = 2, 4, 8', async (t) => {
  const rng = new Rng(8);
  for (const [groupSize, betaPi, betaR] of [
    [2, 0.1, 1],
    [4, 1, 0.5],
    [8, 0.5, 2],
  ]) {
    const n = groupSize * 12;
    const o = {
      policy: rng.f32(n, -30, -5),
      ref: rng.f32(n, -30, -5),
      rewards: rng.f32(n, -3, 3),
      groupSize,
      betaPi,
      betaR,
    };
    const got = pgNative.exoRwLoss(o),
      ref = exoRwLoss(o);
    const label = `K=${groupSize}`;
    scalarClose(t, got.loss, ref.loss, `${label} loss`);
    assertClose(t, got.dPolicy, ref.dPolicy, ARRAY, `${label} dPolicy`);
    assertClose(t, got.p, ref.p, ARRAY, `${label} p`);
    assertClose(t, got.q, ref.q, ARRAY, `${label} q`);
    assertClose(t, got.groupKl, ref.groupKl, ARRAY, `${label} groupKl`);
    fdCheck(t, (x) => pgNative.exoRwLoss({ ...o, policy: x }).loss, o.policy, got.dPolicy, rng, `${label} dPolicy`);
  }
});

t.test('validation errors name the field', async (t) => {
  const f = (n: number) => new Float32Array(n);
  const one = Float32Array.of(1);
  t.throws(() => pgNative.gae({ rewards: f(4), values: f(3), mask: f(4), batch: 2, seqLen: 2, gamma: 1, lambda: 1 }), {
    name: 'RangeError',
    message: 'pgNative.gae: expected options.values.length to be 4, received 3',
  });
  t.throws(
    () =>
      pgNative.gae({
        rewards: f(2),
        values: f(2),
        mask: Float32Array.of(1, 0.5),
        batch: 1,
        seqLen: 2,
        gamma: 1,
        lambda: 1,
      }),
    {
      name: 'RangeError',
      message: /options\.mask\[1\] to be 0 or 1, received 0\.5/,
    },
  );
  t.throws(() => pgNative.gae({ rewards: f(1), values: f(1), mask: one, batch: 1, seqLen: 1, gamma: 2, lambda: 1 }), {
    name: 'RangeError',
    message: /options\.gamma/,
  });
  t.throws(() => pgNative.klPerToken({ logp: f(1), refLogp: f(1), estimator: 'k4' as 'k1' }), {
    name: 'TypeError',
    message: /options\.estimator/,
  });
  t.throws(
    () =>
      pgNative.ppoPolicyLoss({
        logp: [0] as unknown as Float32Array,
        oldLogp: f(1),
        advantages: f(1),
        mask: one,
        clipEps: 0.2,
      }),
    {
      name: 'TypeError',
      message: /options\.logp to be a Float32Array/,
    },
  );
  t.throws(
    () => pgNative.ppoPolicyLoss({ logp: f(1), oldLogp: f(1), advantages: f(1), mask: one, clipEps: 0.2, dualClip: 1 }),
    { name: 'RangeError', message: /options\.dualClip/ },
  );
  t.throws(() => pgNative.tokenRewards({ score: f(1), kl: f(2), klCoef: 0.1, mask: f(2), batch: 1, seqLen: 2 }), {
    name: 'RangeError',
    message: /options\.mask row 0/,
  });
  const pairs = { policyChosen: one, policyRejected: one, refChosen: one, refRejected: one };
  t.throws(() => pgNative.dpoLoss({ ...pairs, beta: 0.1, labelSmoothing: 0.1, variant: 'ipo' }), {
    name: 'RangeError',
    message: /options\.labelSmoothing/,
  });
  t.throws(() => pgNative.dpoLoss({ ...pairs, beta: 0.1, lableSmoothing: 0.1 } as never), {
    name: 'TypeError',
    message: /did you mean options\.labelSmoothing/,
  });
  t.throws(() => pgNative.exoRwLoss({ policy: f(3), ref: f(3), rewards: f(3), groupSize: 2, betaPi: 1, betaR: 1 }), {
    name: 'RangeError',
    message: /multiple of options\.groupSize/,
  });
});

t.test('the binding re-checks what a direct call could get wrong', async (t) => {
  const pg = native().pg as unknown as Record<string, (o: unknown) => unknown>;
  const f = (n: number) => new Float32Array(n);
  t.throws(() => pg.gae({ rewards: f(4), values: f(5), mask: f(4), batch: 2, seqLen: 2, gamma: 1, lambda: 1 }), {
    name: 'RangeError',
    message: 'pg.gae: expected options.values to be a Float32Array of exactly 4 elements, received Float32Array(5)',
  });
  t.throws(
    () => pg.ppoPolicyLoss({ logp: f(2), oldLogp: f(2), advantages: new Float64Array(2), mask: f(2), clipEps: 0.2 }),
    {
      name: 'TypeError',
      message: 'pg.ppoPolicyLoss: expected options.advantages to be a Float32Array, received Float64Array(2)',
    },
  );
  t.throws(
    () => pg.ppoPolicyLoss({ logp: f(2), oldLogp: f(2), advantages: f(2), mask: Float32Array.of(1, 2), clipEps: 0.2 }),
    { name: 'RangeError', message: /mask\[1\] must be 0 or 1/ },
  );
  t.throws(() => pg.ppoPolicyLoss({ logp: f(2), oldLogp: f(2), advantages: f(2), mask: f(2), clipEps: 1 }), {
    name: 'RangeError',
    message: /clip_eps/,
  });
  t.throws(() => pg.klPerToken({ logp: f(1), refLogp: f(1), estimator: 'k9' }), {
    name: 'TypeError',
    message: `pg.klPerToken: expected options.estimator to be one of 'k1', 'k2', 'k3', received "k9"`,
  });
  t.throws(() => pg.tokenRewards({ score: f(1), kl: f(2), klCoef: 0.1, mask: f(2), batch: 1, seqLen: 2 }), {
    name: 'RangeError',
    message: /row 0 of mask has no valid token/,
  });
  t.throws(
    () => pg.dpoLoss({ policyChosen: f(0), policyRejected: f(0), refChosen: f(0), refRejected: f(0), beta: 0.1 }),
    { name: 'RangeError', message: /N must be >= 1/ },
  );
  t.throws(() => pg.exoRwLoss({ policy: f(3), ref: f(3), rewards: f(3), groupSize: 2, betaPi: 1, betaR: 1 }), {
    name: 'RangeError',
    message:
      'pg.exoRwLoss: expected options.policy to be a Float32Array whose length is a multiple of options.groupSize (2), received Float32Array(3)',
  });
  t.throws(() => pg.gae(undefined), {
    name: 'TypeError',
    message: 'pg.gae: expected options to be an object, received undefined',
  });
});
