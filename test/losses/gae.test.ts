// Token rewards, GAE, whitening and the reference baseline (docs/algorithms.md §1.3, 2.4): properties 13, 14 and
// the pure part of 15; GAE against the direct sum Σ (γλ)^l δ_{t+l}; masked holes; argument errors.
import t from 'tap';
import { gae, klPerToken, referenceBaselineScores, tokenRewards, whiten } from '../../lib/losses/index.js';
import { mean, near, normal, Rng } from '../helpers/loss-helpers.js';

t.test(
  'property 13: the score appears only at the last unmasked token; Σ_t r_t = R − β_KL Σ_t k_t; with π_old = π_ref every KL term is 0',
  async (t) => {
    const rng = new Rng(13);
    const n = 12;
    const logp = normal(rng, n),
      ref = normal(rng, n);
    const mask = Float64Array.from([1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0]); // a hole, then right padding
    const { kl } = klPerToken(logp, ref, 'k1', mask);
    const R = 2.5,
      beta = 0.05;
    const { rewards, lastIndex } = tokenRewards({ score: R, kl, klCoef: beta, mask });
    t.equal(lastIndex, 8, 'EOS = last position with mask 1');
    for (let i = 0; i < n; i++) {
      const want = mask[i] ? -beta * (logp[i] - ref[i]) + (i === 8 ? R : 0) : 0;
      near(t, rewards[i], want, 1e-15, `r_${i}`);
    }
    const klSum = Array.from(kl).reduce((s, k, i) => s + k * mask[i], 0);
    near(
      t,
      rewards.reduce((s, v) => s + v, 0),
      R - beta * klSum,
      1e-14,
      'Σ r = R − β Σ k',
    );
    const same = tokenRewards({ score: R, kl: klPerToken(ref, ref, 'k1', mask).kl, klCoef: beta, mask });
    t.same(Array.from(same.rewards), [0, 0, 0, 0, 0, 0, 0, 0, R, 0, 0, 0], 'π_old = π_ref: only the score remains');
    const clipped = tokenRewards({ score: -25, kl, klCoef: 0, mask, clipScore: 10 });
    t.equal(clipped.rewards[8], -10, 'clipScore clamps R to [−c, c]');
  },
);

/** GAE by its definition: A_t = Σ_l (γλ)^l δ_{t+l} over the valid positions, V after the last = 0. */
function gaeDirect(r: number[], v: number[], gamma: number, lambda: number): number[] {
  const T = r.length;
  const delta = r.map((rt, t) => rt + gamma * (t + 1 < T ? v[t + 1] : 0) - v[t]);
  return delta.map((_, t) => {
    let a = 0;
    for (let l = 0; t + l < T; l++) a += (gamma * lambda) ** l * delta[t + l];
    return a;
  });
}

t.test('property 14: GAE with γ = λ = 1 gives A_t = Σ_{t′≥t} r_t′ − V(s_t); with λ = 0, A_t = δ_t', async (t) => {
  const rng = new Rng(14);
  const n = 10;
  const r = normal(rng, n),
    v = normal(rng, n),
    mask = new Float64Array(n).fill(1);
  const one = gae({ rewards: r, values: v, mask, gamma: 1, lambda: 1 });
  for (let i = 0; i < n; i++) {
    let tail = 0;
    for (let j = i; j < n; j++) tail += r[j];
    near(t, one.advantages[i], tail - v[i], 1e-13, `γ=λ=1: A_${i}`);
    near(t, one.returns[i], tail, 1e-13, `γ=λ=1: G_${i} = Σ r`);
  }
  const gamma = 0.9;
  const zero = gae({ rewards: r, values: v, mask, gamma, lambda: 0 });
  for (let i = 0; i < n; i++)
    near(t, zero.advantages[i], r[i] + gamma * (i + 1 < n ? v[i + 1] : 0) - v[i], 1e-15, `λ=0: A_${i} = δ_${i}`);
});

t.test(
  'GAE matches its definition for general γ, λ; masked positions are skipped (not time steps) and get 0',
  async (t) => {
    const rng = new Rng(15);
    for (const [gamma, lambda] of [
      [0.99, 0.95],
      [1, 0.95],
      [0.5, 0.3],
    ]) {
      const n = 16;
      const r = normal(rng, n),
        v = normal(rng, n);
      const mask = Float64Array.from({ length: n }, (_, i) => (i < 2 || i === 7 || i >= 13 ? 0 : 1));
      const out = gae({ rewards: r, values: v, mask, gamma, lambda });
      const idx = Array.from({ length: n }, (_, i) => i).filter((i) => mask[i]);
      const direct = gaeDirect(
        idx.map((i) => r[i]),
        idx.map((i) => v[i]),
        gamma,
        lambda,
      );
      idx.forEach((i, j) => {
        near(t, out.advantages[i], direct[j], 1e-13, `γ=${gamma} λ=${lambda}: A_${i}`);
        near(t, out.returns[i], direct[j] + v[i], 1e-13, `G_${i} = A + V`);
      });
      t.ok(
        Array.from(out.advantages).every((a, i) => mask[i] || a === 0),
        'masked advantages are 0',
      );
      t.ok(
        Array.from(out.returns).every((a, i) => mask[i] || a === 0),
        'masked returns are 0',
      );
    }
  },
);

t.test(
  'whiten: masked mean 0 and std 1 (population), shiftMean = false keeps the mean, masked positions 0',
  async (t) => {
    const rng = new Rng(16);
    const n = 50;
    const x = normal(rng, n, 3).map((v) => v + 5),
      mask = Float64Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 0 : 1));
    const w = whiten(x, mask);
    const valid = Array.from(w).filter((_, i) => mask[i]);
    near(t, mean(valid), 0, 1e-14, 'mean 0');
    near(t, Math.sqrt(mean(valid.map((v) => v * v))), 1, 1e-8, 'population std 1 (up to eps)');
    t.ok(
      Array.from(w).every((v, i) => mask[i] || v === 0),
      'masked positions 0',
    );
    const keep = whiten(x, mask, { shiftMean: false });
    const mx = mean(Array.from(x).filter((_, i) => mask[i]));
    near(t, mean(Array.from(keep).filter((_, i) => mask[i])), mx, 1e-12, 'shiftMean false: the mean is kept');
    t.same(Array.from(whiten([3, 3, 3], [1, 1, 1])), [0, 0, 0], 'constant input: 0, not NaN');
    t.same(Array.from(whiten([3, 4], [0, 0])), [0, 0], 'nothing valid: 0');
  },
);

t.test(
  'whiten: finite inputs whose variance overflows float64 give the scaled result, not Infinity or NaN',
  async (t) => {
    const rng = new Rng(18);
    const x = normal(rng, 40, 1),
      mask = Float64Array.from({ length: 40 }, (_, i) => (i % 7 === 0 ? 0 : 1));
    const small = whiten(x, mask, { eps: 1e-300 }); // eps relative to σ² as the scaled input's (1e-8 / 1e600 = 0)
    const big = whiten(
      x.map((v) => v * 1e300),
      mask,
    );
    t.ok(big.every(Number.isFinite), 'finite');
    for (let i = 0; i < 40; i++) near(t, big[i], small[i], 1e-12, `element ${i}: whitening is scale invariant`);
    const keep = whiten(
      x.map((v) => v * 1e300),
      mask,
      { shiftMean: false },
    );
    t.ok(keep.every(Number.isFinite), 'shiftMean false: finite');
  },
);

t.test(
  'property 15 (pure part): R = r(y) − r(y_ref) is 0 for the cached response and centred at initialisation',
  async (t) => {
    const rng = new Rng(17);
    t.same(
      Array.from(referenceBaselineScores([1.5, -2, 7], [1.5, -2, 7])),
      [0, 0, 0],
      'response = cached y_ref gives R = 0',
    );
    // π_θ = π_ref: the sampled and the cached response are i.i.d. given the prompt; tasks have very different offsets
    const prompts = 4000;
    const scores = new Float64Array(prompts),
      refScores = new Float64Array(prompts);
    for (let p = 0; p < prompts; p++) {
      const taskOffset = [8, -5, 0.5, 20][p % 4],
        promptOffset = rng.normal() * 3;
      scores[p] = taskOffset + promptOffset + rng.normal();
      refScores[p] = taskOffset + promptOffset + rng.normal();
    }
    const R = referenceBaselineScores(scores, refScores);
    const m = mean(R),
      sd = Math.sqrt(mean(Array.from(R, (v) => (v - m) ** 2)));
    t.ok(Math.abs(m) < 0.1 * sd, `|mean R| = ${Math.abs(m).toFixed(4)} is small relative to std R = ${sd.toFixed(3)}`);
    const raw = mean(scores);
    t.ok(Math.abs(raw) > 3, `raw scores are not centred (mean ${raw.toFixed(2)})`);
  },
);

t.test('argument errors name the argument', async (t) => {
  t.throws(() => tokenRewards({ score: 1, kl: [0, 0], klCoef: 0.1, mask: [0, 0] }), {
    name: 'RangeError',
    message: 'tokenRewards: expected mask to be a mask with at least one 1, received "no 1"',
  });
  t.throws(
    () => tokenRewards({ score: 1, kl: [0, 0, 0], klCoef: 0.1, mask: [1, 1] }),
    /tokenRewards: expected mask.length to be equal to kl.length \(3\), received 2/,
  );
  t.throws(() => tokenRewards({ score: NaN, kl: [0], klCoef: 0.1, mask: [1] }), {
    name: 'TypeError',
    message: 'tokenRewards: expected score to be a finite number, received NaN',
  });
  t.throws(
    () => gae({ rewards: [0], values: [0], mask: [1], gamma: 1.5, lambda: 1 }),
    /gae: expected gamma to be a finite number >= 0 and <= 1, received 1.5/,
  );
  t.throws(
    () => gae({ rewards: [0], values: [0, 1], mask: [1], gamma: 1, lambda: 1 }),
    /gae: expected values.length to be equal to rewards.length \(1\), received 2/,
  );
  t.throws(
    () => whiten([1, 2], [1, 1], { shiftMean: 1 as never }),
    /whiten: expected shiftMean to be a boolean, received 1/,
  );
  t.throws(
    () => referenceBaselineScores([1], [1, 2]),
    /referenceBaselineScores: expected refScores.length to be equal to scores.length \(1\), received 2/,
  );
});
