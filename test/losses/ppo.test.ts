// PPO losses (docs/algorithms.md §1.3): properties 11 and 12, dual clip, both aggregations, value clipping and the
// entropy bonus; gradients against finite differences (masked and clipped tokens included).
import t from 'tap';
import { entropyBonus, ppoPolicyLoss, ppoValueLoss } from '../../lib/losses/index.js';
import { gradcheckParts, mean, near, normal, randomMask, Rng, uniform } from '../helpers/loss-helpers.js';

/** log-ratios drawn away from the clip boundaries (so finite differences never straddle a kink). */
function logRatios(rng: Rng, n: number, eps: number, spread = 0.5): Float64Array {
  const out = new Float64Array(n);
  const edges = [Math.log(1 - eps), Math.log(1 + eps)];
  for (let i = 0; i < n; i++) {
    let v: number;
    do v = rng.uniform(-spread, spread);
    while (edges.some((e) => Math.abs(v - e) < 1e-3));
    out[i] = v;
  }
  return out;
}

t.test(
  'property 11: the clipped surrogate equals ρA inside [1−ε, 1+ε]; for A>0, ρ>1+ε or A<0, ρ<1−ε the gradient is exactly 0',
  async (t) => {
    const eps = 0.2;
    const rng = new Rng(11);
    // inside the range: loss = −mean ρA, gradient −ρA/N
    const n = 32;
    const old = normal(rng, n, 2);
    const lr = uniform(rng, n, Math.log(1 - eps) + 1e-6, Math.log(1 + eps) - 1e-6);
    const logp = old.map((v, i) => v + lr[i]);
    const adv = normal(rng, n);
    const mask = new Float64Array(n).fill(1);
    const r = ppoPolicyLoss({ logp, oldLogp: old, advantages: adv, mask, clipEps: eps });
    near(t, r.loss, -mean(Array.from(adv, (a, i) => Math.exp(lr[i]) * a)), 1e-14, 'loss = −mean ρA');
    for (let i = 0; i < n; i++)
      near(t, r.dLogp[i], (-Math.exp(lr[i]) * adv[i]) / n, 1e-15, `token ${i}: gradient −ρA/N`);
    t.equal(r.clipFraction, 0, 'nothing clipped');

    // the four outside cases, one token each
    const cases = [
      { rho: 1.5, A: 1, zero: true, what: 'A > 0, ρ > 1+ε' },
      { rho: 0.5, A: -1, zero: true, what: 'A < 0, ρ < 1−ε' },
      { rho: 0.5, A: 1, zero: false, what: 'A > 0, ρ < 1−ε (unclipped side)' },
      { rho: 1.5, A: -1, zero: false, what: 'A < 0, ρ > 1+ε (unclipped side)' },
    ];
    const lp = cases.map((c) => Math.log(c.rho) - 3),
      op = cases.map(() => -3);
    const out = ppoPolicyLoss({
      logp: lp,
      oldLogp: op,
      advantages: cases.map((c) => c.A),
      mask: [1, 1, 1, 1],
      clipEps: eps,
    });
    cases.forEach((c, i) => {
      if (c.zero) t.equal(out.dLogp[i], 0, `${c.what}: gradient exactly 0`);
      else near(t, out.dLogp[i], (-c.A * c.rho) / 4, 1e-15, `${c.what}: gradient −ρA/N`);
    });
    t.equal(out.clipFraction, 0.5, 'clipFraction counts the two clipped tokens');
    near(t, out.loss, (-(1 + eps) * 1 - (1 - eps) * -1 - 0.5 * 1 - 1.5 * -1) / 4, 1e-15, 'loss of the four tokens');
    gradcheckParts(
      t,
      [lp],
      ([x]) =>
        ppoPolicyLoss({ logp: x, oldLogp: op, advantages: cases.map((c) => c.A), mask: [1, 1, 1, 1], clipEps: eps })
          .loss,
      [out.dLogp],
      {
        label: 'four outside cases',
      },
    );
  },
);

t.test(
  'property 12: at the first minibatch after a rollout (π_θ = π_old) ρ_t = 1: loss −mean A, gradient −A/N, nothing clipped, approxKl 0',
  async (t) => {
    const rng = new Rng(12);
    const n = 40;
    const logp = normal(rng, n, 3),
      adv = normal(rng, n),
      mask = randomMask(rng, n);
    const r = ppoPolicyLoss({ logp, oldLogp: logp, advantages: adv, mask, clipEps: 0.2, dualClip: 3 });
    const count = mask.reduce((s, v) => s + v, 0);
    near(
      t,
      r.loss,
      -Array.from(adv).reduce((s, a, i) => s + a * mask[i], 0) / count,
      1e-14,
      'loss = −mean A over valid tokens',
    );
    t.ok(
      Array.from(r.dLogp).every((g, i) => Math.abs(g - (mask[i] ? -adv[i] / count : 0)) < 1e-16),
      'gradient −A/N on valid tokens, 0 elsewhere',
    );
    t.equal(r.clipFraction, 0);
    t.equal(r.dualClipFraction, 0);
    t.equal(r.approxKl, 0);
  },
);

t.test(
  'policy loss gradients on random inputs: masks, clipping, clip-higher, dual clip, both aggregations',
  async (t) => {
    const rng = new Rng(13);
    const lengths = [5, 9, 1, 7, 6];
    const n = lengths.reduce((a, b) => a + b, 0);
    const eps = 0.2;
    const old = normal(rng, n, 2);
    const lr = logRatios(rng, n, eps, 1.5);
    const dualLr = lr.map((v) => (Math.abs(v - Math.log(3)) < 1e-3 ? v + 0.01 : v));
    const logp = old.map((v, i) => v + dualLr[i]);
    const adv = normal(rng, n);
    const mask = randomMask(rng, n, 0.75);
    mask.fill(0, 14, 15); // the one-token sequence is empty
    for (const aggregation of ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum'] as const) {
      for (const extra of [{}, { dualClip: 3 }, { clipEpsHigh: 0.28 }]) {
        const base = { oldLogp: old, advantages: adv, mask, clipEps: eps, aggregation, seqLengths: lengths, ...extra };
        const r = ppoPolicyLoss({ logp, ...base });
        gradcheckParts(t, [logp], ([x]) => ppoPolicyLoss({ logp: x, ...base }).loss, [r.dLogp], {
          label: `${aggregation} ${JSON.stringify(extra)}`,
        });
        t.ok(
          r.dLogp.every((g, i) => mask[i] === 1 || g === 0),
          'masked tokens get 0',
        );
      }
    }
    // seq-mean-token-mean by hand: mean over non-empty sequences of each sequence's token mean
    const per = (i: number) => {
      const rho = Math.exp(dualLr[i]);
      return -Math.min(rho * adv[i], Math.min(1 + eps, Math.max(1 - eps, rho)) * adv[i]);
    };
    const seqMeans: number[] = [];
    for (let b = 0, off = 0; b < lengths.length; off += lengths[b], b++) {
      const idx = Array.from({ length: lengths[b] }, (_, j) => off + j).filter((i) => mask[i]);
      if (idx.length) seqMeans.push(mean(idx.map(per)));
    }
    const r = ppoPolicyLoss({
      logp,
      oldLogp: old,
      advantages: adv,
      mask,
      clipEps: eps,
      aggregation: 'seq-mean-token-mean',
      seqLengths: lengths,
    });
    near(t, r.loss, mean(seqMeans), 1e-14, 'seq-mean-token-mean value (empty sequence left out)');
    // seq-mean-token-sum by hand: mean over non-empty sequences of each sequence's token sum
    const seqSums: number[] = [];
    for (let b = 0, off = 0; b < lengths.length; off += lengths[b], b++) {
      const idx = Array.from({ length: lengths[b] }, (_, j) => off + j).filter((i) => mask[i]);
      if (idx.length) seqSums.push(idx.map(per).reduce((a, x) => a + x, 0));
    }
    const rs = ppoPolicyLoss({
      logp,
      oldLogp: old,
      advantages: adv,
      mask,
      clipEps: eps,
      aggregation: 'seq-mean-token-sum',
      seqLengths: lengths,
    });
    near(t, rs.loss, mean(seqSums), 1e-14, 'seq-mean-token-sum value (empty sequence left out)');
    const kl = mean(Array.from(dualLr, (v) => Math.exp(v) - 1 - v).filter((_, i) => mask[i]));
    near(t, r.approxKl, kl, 1e-15, 'approxKl = token mean of (ρ − 1) − log ρ');

    // dual clip: A < 0 and ρ > c is bounded by −c·A with zero gradient
    const d = ppoPolicyLoss({
      logp: [Math.log(5), Math.log(2)],
      oldLogp: [0, 0],
      advantages: [-2, -2],
      mask: [1, 1],
      clipEps: 0.2,
      dualClip: 3,
    });
    near(t, d.loss, (3 * 2 + 2 * 2) / 2, 1e-15, 'ρ = 5 > c: loss −c·A; ρ = 2 < c: loss −ρA');
    t.equal(d.dLogp[0], 0, 'dual-clipped token: gradient 0');
    near(t, d.dLogp[1], (2 * 2) / 2, 1e-15, 'other token: −ρA/N');
    t.equal(d.dualClipFraction, 0.5);
    const none = ppoPolicyLoss({ logp: [1], oldLogp: [1], advantages: [1], mask: [0], clipEps: 0.2 });
    t.same([none.loss, none.dLogp[0], none.clipFraction], [0, 0, 0], 'no valid token: 0, not NaN');
  },
);

t.test('value loss: ½ max of clipped/unclipped squared errors, gradient 0 where the clipped error wins', async (t) => {
  const rng = new Rng(14);
  const n = 30,
    eps = 0.2;
  const oldV = normal(rng, n),
    ret = normal(rng, n);
  const values = oldV.map((v) => {
    let d: number;
    do d = rng.uniform(-0.8, 0.8);
    while (Math.abs(Math.abs(d) - eps) < 1e-3);
    return v + d;
  });
  const mask = randomMask(rng, n);
  const r = ppoValueLoss({ values, oldValues: oldV, returns: ret, mask, clipEps: eps });
  let loss = 0,
    clipped = 0;
  const count = mask.reduce((s, v) => s + v, 0);
  for (let i = 0; i < n; i++) {
    if (!mask[i]) continue;
    const vc = oldV[i] + Math.min(eps, Math.max(-eps, values[i] - oldV[i]));
    const e1 = (values[i] - ret[i]) ** 2,
      e2 = (vc - ret[i]) ** 2;
    loss += 0.5 * Math.max(e1, e2);
    if (e2 > e1) {
      clipped++;
      t.equal(r.dValues[i], 0, `token ${i}: clipped error wins, gradient 0`);
    }
  }
  near(t, r.loss, loss / count, 1e-14, 'loss');
  near(t, r.clipFraction, clipped / count, 1e-15, 'clipFraction');
  t.ok(clipped > 0 && clipped < count, `a mix of clipped (${clipped}) and unclipped tokens`);
  gradcheckParts(
    t,
    [values],
    ([v]) => ppoValueLoss({ values: v, oldValues: oldV, returns: ret, mask, clipEps: eps }).loss,
    [r.dValues],
    { label: 'value loss' },
  );
  const plain = ppoValueLoss({ values, oldValues: oldV, returns: ret, mask });
  near(
    t,
    plain.loss,
    mean(Array.from(values, (v, i) => 0.5 * (v - ret[i]) ** 2).filter((_, i) => mask[i])),
    1e-14,
    'no clipEps: ½ mean (V − G)²',
  );
});

t.test('entropy bonus: −coef · mean H and its gradient', async (t) => {
  const rng = new Rng(15);
  const n = 12,
    lengths = [4, 8];
  const entropy = uniform(rng, n, 0, 3),
    mask = randomMask(rng, n);
  for (const aggregation of ['token-mean', 'seq-mean-token-mean'] as const) {
    const r = entropyBonus({ entropy, mask, coef: 0.01, aggregation, seqLengths: lengths });
    gradcheckParts(
      t,
      [entropy],
      ([h]) => entropyBonus({ entropy: h, mask, coef: 0.01, aggregation, seqLengths: lengths }).loss,
      [r.dEntropy],
      { label: aggregation },
    );
  }
  const r = entropyBonus({ entropy, mask, coef: 0.01 });
  const m = mean(Array.from(entropy).filter((_, i) => mask[i]));
  near(t, r.loss, -0.01 * m, 1e-16, 'loss = −coef · token-mean entropy');
  near(t, r.meanEntropy, m, 1e-15, 'meanEntropy');
});

t.test('argument errors name the argument', async (t) => {
  const ok = { logp: [0, 0], oldLogp: [0, 0], advantages: [1, 1], mask: [1, 1], clipEps: 0.2 };
  t.throws(() => ppoPolicyLoss({ ...ok, advantages: [1] }), {
    name: 'RangeError',
    message: 'ppoPolicyLoss: expected advantages.length to be equal to logp.length (2), received 1',
  });
  t.throws(() => ppoPolicyLoss({ ...ok, clipEps: 1 }), {
    name: 'RangeError',
    message: 'ppoPolicyLoss: expected clipEps to be a finite number > 0 and < 1, received 1',
  });
  t.throws(() => ppoPolicyLoss({ ...ok, dualClip: 1 }), /dualClip to be a finite number > 1, received 1/);
  t.throws(() => ppoPolicyLoss({ ...ok, aggregation: 'seq-mean-token-mean' }), {
    name: 'TypeError',
    message: /seqLengths to be an array of sequence lengths/,
  });
  t.throws(
    () => ppoPolicyLoss({ ...ok, aggregation: 'seq-mean-token-mean', seqLengths: [1, 2] }),
    /seqLengths to be lengths summing to mask.length \(2\), received "lengths summing to 3"/,
  );
  t.throws(() => ppoPolicyLoss({ ...ok, aggregation: 'sum' as never }), {
    name: 'TypeError',
    message:
      /aggregation to be one of "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"/,
  });
  t.throws(
    () => ppoValueLoss({ values: [0], oldValues: [0], returns: [0, 1], mask: [1] }),
    /ppoValueLoss: expected returns.length to be equal to values.length \(1\), received 2/,
  );
  t.throws(
    () => entropyBonus({ entropy: [1], mask: [1], coef: -1 }),
    /entropyBonus: expected coef to be a finite number >= 0, received -1/,
  );
});
