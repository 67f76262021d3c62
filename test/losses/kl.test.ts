// Per-token KL estimators k1/k2/k3 (docs/algorithms.md §1.3; OpenRLHF/veRL): formulas, signs, exact
// expectations under the policy (k1 and k3 unbiased for KL(π‖ref)), gradients, KL as a loss term.
import t from 'tap';
import { KL_ESTIMATORS, klLoss, klPerToken } from '../../lib/losses/index.js';
import { gradcheckParts, near, normal, randomMask, Rng } from '../helpers/loss-helpers.js';

t.test('k1 = d, k2 = d²/2, k3 = exp(−d) − 1 + d with d = logp − refLogp; k2, k3 ≥ 0; all 0 at d = 0', async (t) => {
  const rng = new Rng(1);
  const n = 200;
  const logp = normal(rng, n, 2),
    ref = normal(rng, n, 2);
  const k1 = klPerToken(logp, ref, 'k1').kl,
    k2 = klPerToken(logp, ref, 'k2').kl,
    k3 = klPerToken(logp, ref, 'k3').kl;
  for (let i = 0; i < n; i++) {
    const d = logp[i] - ref[i];
    if (
      k1[i] !== d ||
      Math.abs(k2[i] - (d * d) / 2) > 1e-15 * (1 + d * d) ||
      Math.abs(k3[i] - (Math.exp(-d) - 1 + d)) > 1e-14 * (1 + Math.exp(-d))
    )
      t.fail(`token ${i}: ${k1[i]}, ${k2[i]}, ${k3[i]} at d = ${d}`);
  }
  t.ok(k2.every((v) => v >= 0) && k3.every((v) => v >= 0), 'k2 and k3 are non-negative');
  t.ok(
    k1.some((v) => v < 0),
    'k1 can be negative',
  );
  for (const e of KL_ESTIMATORS)
    t.same(Array.from(klPerToken([0.3, -2], [0.3, -2], e).kl), [0, 0], `${e}: 0 when logp = refLogp`);
  const masked = klPerToken([1, 2, 3], [0, 0, 0], 'k3', [1, 0, 1]);
  t.equal(masked.kl[1], 0, 'masked position: kl 0');
  t.equal(masked.dLogp[1], 0, 'masked position: gradient 0');
});

t.test('E_π[k1] = E_π[k3] = KL(π‖ref) exactly (unbiased); E_π[k2] differs', async (t) => {
  const rng = new Rng(2);
  for (let trial = 0; trial < 5; trial++) {
    const V = 7;
    const a = normal(rng, V, 1.5),
      b = normal(rng, V, 1.5);
    const lse = (x: Float64Array) => Math.log(x.reduce((s, v) => s + Math.exp(v), 0));
    const logp = a.map((v) => v - lse(a)),
      ref = b.map((v) => v - lse(b));
    const expect = (k: Float64Array) => logp.reduce((s, lp, i) => s + Math.exp(lp) * k[i], 0);
    const kl = logp.reduce((s, lp, i) => s + Math.exp(lp) * (lp - ref[i]), 0);
    near(t, expect(klPerToken(logp, ref, 'k1').kl), kl, 1e-13, `trial ${trial}: E[k1] = KL`);
    near(t, expect(klPerToken(logp, ref, 'k3').kl), kl, 1e-13, `trial ${trial}: E[k3] = KL`);
    t.ok(Math.abs(expect(klPerToken(logp, ref, 'k2').kl) - kl) > 1e-6, `trial ${trial}: E[k2] ≠ KL (biased)`);
  }
});

t.test('gradients of every estimator and of klLoss (both aggregations, masked tokens)', async (t) => {
  const rng = new Rng(3);
  const n = 15;
  const logp = normal(rng, n),
    ref = normal(rng, n),
    c = normal(rng, n),
    mask = randomMask(rng, n);
  for (const e of KL_ESTIMATORS) {
    const { dLogp } = klPerToken(logp, ref, e, mask);
    const f = (x: Float64Array) => klPerToken(x, ref, e, mask).kl.reduce((s, v, i) => s + c[i] * v, 0);
    gradcheckParts(t, [logp], ([x]) => f(x), [dLogp.map((g, i) => g * c[i])], { label: `${e} (Σ c_t k_t)` });
  }
  const seqLengths = [6, 9];
  for (const aggregation of ['token-mean', 'seq-mean-token-mean'] as const) {
    for (const estimator of KL_ESTIMATORS) {
      const base = { refLogp: ref, mask, coef: 0.04, estimator, aggregation, seqLengths };
      const r = klLoss({ logp, ...base });
      gradcheckParts(t, [logp], ([x]) => klLoss({ logp: x, ...base }).loss, [r.dLogp], {
        label: `klLoss ${estimator} ${aggregation}`,
      });
    }
  }
  const r = klLoss({ logp, refLogp: ref, mask, coef: 0.04 });
  const k3 = klPerToken(logp, ref, 'k3', mask).kl;
  const m = k3.reduce((s, v) => s + v, 0) / mask.reduce((s, v) => s + v, 0);
  near(t, r.meanKl, m, 1e-15, 'default estimator k3; meanKl = token mean');
  near(t, r.loss, 0.04 * m, 1e-16, 'loss = coef · token mean');
});

t.test('argument errors name the argument', async (t) => {
  t.throws(() => klPerToken([1, 2], [1], 'k1'), {
    name: 'RangeError',
    message: 'klPerToken: expected refLogp.length to be equal to logp.length (2), received 1',
  });
  t.throws(() => klPerToken([1], [1], 'k4' as never), {
    name: 'TypeError',
    message: 'klPerToken: expected estimator to be one of "k1", "k2", "k3", received "k4"',
  });
  t.throws(
    () => klPerToken([1], [1], 'k1', [1, 1]),
    /klPerToken: expected mask.length to be equal to logp.length \(1\), received 2/,
  );
  t.throws(
    () => klLoss({ logp: [1], refLogp: [1], mask: [1], coef: -0.1 }),
    /klLoss: expected coef to be a finite number >= 0, received -0.1/,
  );
});
