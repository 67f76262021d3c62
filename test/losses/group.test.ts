// Critic-free advantages (docs/algorithms.md §4): GRPO (sample-std convention), RLOO, REINFORCE++(-baseline);
// the prompt filter of property 19; argument errors.
import t from 'tap';
import {
  filterPromptsByVariance,
  grpoAdvantages,
  reinforcePlusPlusAdvantages,
  rlooAdvantages,
  varianceQuantile,
} from '../../lib/losses/index.js';
import { mean, near, normal, Rng } from '../helpers/loss-helpers.js';

t.test('GRPO: (R − group mean) / (sample std + 1e-6), group-contiguous layout', async (t) => {
  const r = [1, 2, 3, 4, 10, 10, 10, 10];
  const a = grpoAdvantages(r, 4);
  const std = Math.sqrt(5 / 3); // sample std of 1..4 (divide by n − 1 = 3): 1.2910
  near(t, std, 1.291, 1e-4, 'sample std of [1, 2, 3, 4]');
  [1, 2, 3, 4].forEach((v, i) => near(t, a[i], (v - 2.5) / (std + 1e-6), 1e-15, `group 0, sample ${i}`));
  t.same(Array.from(a.subarray(4)), [0, 0, 0, 0], 'identical rewards give zero advantages');
  const unscaled = grpoAdvantages(r, 4, { scale: false });
  t.same(Array.from(unscaled.subarray(0, 4)), [-1.5, -0.5, 0.5, 1.5], 'scale: false centres only (Dr. GRPO)');
  const single = grpoAdvantages([2, -4], 1);
  near(t, single[0], 2 / (1 + 1e-6), 1e-15, 'groupSize 1: mean 0, std 1 (veRL convention)');
  const rng = new Rng(1);
  const big = normal(rng, 64, 3);
  const adv = grpoAdvantages(big, 8, { eps: 0 });
  for (let g = 0; g < 8; g++) {
    const grp = Array.from(adv.subarray(g * 8, g * 8 + 8));
    near(t, mean(grp), 0, 1e-14, `group ${g}: mean 0`);
    near(t, grp.reduce((s, v) => s + v * v, 0) / 7, 1, 1e-13, `group ${g}: sample variance 1`);
  }
});

t.test('RLOO: R_i − mean of the other samples = n/(n−1)·(R_i − mean); sums to 0 per group', async (t) => {
  const rng = new Rng(2);
  const n = 5,
    r = normal(rng, 4 * n);
  const a = rlooAdvantages(r, n);
  for (let g = 0; g < 4; g++) {
    const grp = Array.from(r.subarray(g * n, g * n + n)),
      m = mean(grp);
    let s = 0;
    for (let i = 0; i < n; i++) {
      const others = grp.filter((_, j) => j !== i);
      near(t, a[g * n + i], grp[i] - mean(others), 1e-14, `group ${g}, sample ${i}: leave-one-out`);
      near(t, a[g * n + i], (n / (n - 1)) * (grp[i] - m), 1e-14, 'equals n/(n−1)·(R − mean)');
      s += a[g * n + i];
    }
    near(t, s, 0, 1e-14, `group ${g}: sums to 0`);
  }
});

t.test(
  'REINFORCE++: batch normalisation (population std); the -baseline variant subtracts group means first',
  async (t) => {
    const rng = new Rng(3);
    const r = normal(rng, 24, 2).map((v, i) => v + (i < 12 ? 5 : -5));
    const a = reinforcePlusPlusAdvantages(r, { eps: 0 });
    near(t, mean(a), 0, 1e-14, 'batch mean 0');
    near(t, mean(Array.from(a, (v) => v * v)), 1, 1e-13, 'population variance 1');
    const b = reinforcePlusPlusAdvantages(r, { eps: 0, groupSize: 4 });
    const centred = Array.from(
      r,
      (v, i) => v - mean(Array.from(r.subarray(Math.floor(i / 4) * 4, Math.floor(i / 4) * 4 + 4))),
    );
    const sd = Math.sqrt(mean(centred.map((v) => v * v)));
    centred.forEach((v, i) => near(t, b[i], v / sd, 1e-13, `baseline variant ${i}`));
    t.same(Array.from(reinforcePlusPlusAdvantages([4, 4, 4])), [0, 0, 0], 'identical rewards: 0');
  },
);

t.test(
  'property 19: prompt filter — every kept prompt has RM-score variance ≥ τ across its k samples, every dropped one < τ',
  async (t) => {
    const rng = new Rng(19);
    const prompts = 200,
      k = 4;
    const scores = new Float64Array(prompts * k);
    for (let p = 0; p < prompts; p++) {
      const spread = p % 10 === 0 ? 0.01 : rng.uniform(0.1, 2); // some prompts whose responses all look alike
      for (let i = 0; i < k; i++) scores[p * k + i] = rng.normal() * spread + p * 0.01;
    }
    const probe = filterPromptsByVariance(scores, k, 0);
    t.equal(probe.kept.length, prompts, 'τ = 0 keeps everything');
    const tau = varianceQuantile(probe.variances, 0.1); // the spec's small-scale default: 10th percentile
    const { kept, variances } = filterPromptsByVariance(scores, k, tau);
    for (let p = 0; p < prompts; p++) {
      const grp = Array.from(scores.subarray(p * k, p * k + k)),
        m = mean(grp);
      near(t, variances[p], mean(grp.map((v) => (v - m) ** 2)), 1e-14, `prompt ${p}: population variance`);
    }
    t.ok(
      kept.every((p) => variances[p] >= tau),
      `all ${kept.length} kept prompts have variance ≥ τ = ${tau.toExponential(3)}`,
    );
    const dropped = Array.from({ length: prompts }, (_, p) => p).filter((p) => !kept.includes(p));
    t.ok(
      dropped.every((p) => variances[p] < tau),
      `all ${dropped.length} dropped prompts have variance < τ`,
    );
    t.ok(dropped.length >= 15 && dropped.length <= 25, 'about 10% dropped');
    t.same(
      kept,
      [...kept].sort((x, y) => x - y),
      'kept in prompt order',
    );
    t.equal(varianceQuantile([3, 1, 2, 4], 0.5), 2.5, 'quantile interpolates like np.quantile');
  },
);

t.test('argument errors name the argument', async (t) => {
  t.throws(() => grpoAdvantages([1, 2, 3], 2), {
    name: 'RangeError',
    message: 'grpoAdvantages: expected rewards.length to be a multiple of groupSize (2), received 3',
  });
  t.throws(() => grpoAdvantages([1, 2], 0), {
    name: 'RangeError',
    message: 'grpoAdvantages: expected groupSize to be an integer >= 1, received 0',
  });
  t.throws(() => grpoAdvantages([1, 2], 2, { scale: 'no' as never }), /grpoAdvantages: expected scale to be a boolean/);
  t.throws(
    () => grpoAdvantages([1, 2], 2, { sacle: true } as never),
    /grpoAdvantages: unknown argument sacle \(did you mean scale\?\)/,
  );
  t.throws(() => rlooAdvantages([1, 2], 1), /rlooAdvantages: expected groupSize to be an integer >= 2, received 1/);
  t.throws(
    () => reinforcePlusPlusAdvantages([]),
    /reinforcePlusPlusAdvantages: expected rewards.length to be >= 1, received 0/,
  );
  t.throws(
    () => filterPromptsByVariance([1, 2], 2, -1),
    /filterPromptsByVariance: expected tau to be a finite number >= 0, received -1/,
  );
  t.throws(
    () => filterPromptsByVariance([1, NaN], 2, 0),
    /filterPromptsByVariance: expected scores\[1\] to be a finite number, received NaN/,
  );
});
