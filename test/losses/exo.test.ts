// EXO (docs/algorithms.md §3.2–3.3): properties 4–8 with the spec's closed-form numbers, gradients against finite
// differences, the official repo's form computed independently, argument errors.
import t from 'tap';
import { dpoLoss, EXO_OFFICIAL_EPSILON, exoPrefLoss, exoRwLoss } from '../../lib/losses/index.js';
import { gradcheckParts, near, normal, Rng, sigmoid, sum } from '../helpers/loss-helpers.js';

/** KL(Bern(a) ‖ Bern(b)) written out directly (0·log 0 = 0). */
const xlogy = (x: number, y: number) => (x === 0 ? 0 : x * Math.log(y));
const bernKl = (a: number, b: number) => xlogy(a, a / b) + xlogy(1 - a, (1 - a) / (1 - b));

/** One pair with margin z = h_w − h_l (policy log-probs carry z, refs carry an offset). */
const pairAt = (z: number) => ({ policyChosen: [z - 4], policyRejected: [-7], refChosen: [-4], refRejected: [-7] });

/** The official repo's exact_loss for one "pref" pair: log-softmax over (βh_w, βh_l), log-targets [0, −10]. */
function officialExoPref(beta: number, hW: number, hL: number): number {
  const a = beta * hW,
    b = beta * hL;
  const m = Math.max(a, b),
    lse = m + Math.log(Math.exp(a - m) + Math.exp(b - m));
  const lw = a - lse,
    ll = b - lse;
  return Math.exp(lw) * (lw - 0) + Math.exp(ll) * (ll - -10);
}

t.test(
  'property 4: EXO-pref equals KL(Bern(σ(βz))‖Bern(1−ε)), is ≥ 0 and is 0 at βz = log((1−ε)/ε) = 6.9068',
  async (t) => {
    const rng = new Rng(4);
    for (const [beta, eps] of [
      [0.1, 1e-3],
      [0.5, 1e-3],
      [1, 0.05],
      [2, 0.3],
    ]) {
      for (let trial = 0; trial < 25; trial++) {
        const z = rng.uniform(-30, 30);
        const r = exoPrefLoss({ ...pairAt(z), beta, epsilon: eps });
        const kl = bernKl(sigmoid(beta * z), 1 - eps);
        if (!(Math.abs(r.loss - kl) <= 1e-12 * Math.max(1, kl)))
          t.fail(`β=${beta} ε=${eps} z=${z}: ${r.loss} vs KL ${kl}`);
        if (!(r.loss >= 0)) t.fail(`negative loss ${r.loss} at z=${z}`);
      }
      t.pass(`β=${beta} ε=${eps}: loss = KL(Bern(σ(βz))‖Bern(1−ε)) and ≥ 0 on 25 random margins`);
    }
    const target = Math.log((1 - 1e-3) / 1e-3);
    near(t, target, 6.9068, 5e-5, 'log((1−ε)/ε) for ε = 1e-3');
    for (const beta of [0.1, 0.5, 1]) {
      const at = exoPrefLoss({ ...pairAt(target / beta), beta });
      near(t, at.loss, 0, 1e-14, `β=${beta}: loss at βz = 6.9068`);
      near(t, at.dPolicyChosen[0], 0, 1e-15, `β=${beta}: gradient at the minimum`);
      t.ok(exoPrefLoss({ ...pairAt((target + 0.01) / beta), beta }).loss > at.loss, 'larger just above');
      t.ok(exoPrefLoss({ ...pairAt((target - 0.01) / beta), beta }).loss > at.loss, 'larger just below');
    }
    const zero = exoPrefLoss({ ...pairAt(0), beta: 0.1 });
    near(t, zero.loss, bernKl(0.5, 1 - 1e-3), 1e-15, 'default ε is 1e-3 (TRL forces label_smoothing 0 to 1e-3)');
  },
);

t.test(
  'property 5: the official-repo EXO-pref (log-targets [0, −10]) differs from the TRL form with ε = 1/(1+e^10) by −log(1+e^{−10}) ≈ −4.54e-5; gradients identical',
  async (t) => {
    const shift = -Math.log1p(Math.exp(-10));
    near(t, shift, -4.54e-5, 5e-8, 'the constant');
    near(t, EXO_OFFICIAL_EPSILON, 4.54e-5, 5e-8, 'EXO_OFFICIAL_EPSILON = 1/(1+e^10) ≈ 4.54e-5');
    const rng = new Rng(5);
    for (let trial = 0; trial < 40; trial++) {
      const beta = rng.pick([0.1, 0.5, 1]);
      const hW = rng.uniform(-20, 20),
        hL = rng.uniform(-20, 20);
      const args = {
        policyChosen: [hW + 3],
        policyRejected: [hL - 2],
        refChosen: [3],
        refRejected: [-2],
        beta,
        epsilon: EXO_OFFICIAL_EPSILON,
      };
      const trl = exoPrefLoss(args);
      const official = exoPrefLoss({ ...args, form: 'official' });
      const independent = officialExoPref(beta, hW, hL);
      if (Math.abs(independent - trl.loss - shift) > 1e-12)
        t.fail(`z=${hW - hL}: repo form − TRL form = ${independent - trl.loss}`);
      if (Math.abs(official.loss - independent) > 1e-12)
        t.fail(`z=${hW - hL}: form 'official' ${official.loss} vs repo ${independent}`);
      if (official.dPolicyChosen[0] !== trl.dPolicyChosen[0] || official.dPolicyRejected[0] !== trl.dPolicyRejected[0])
        t.fail('gradients differ');
      // the repo's gradient, by finite differences of the independent formula
      const fd = (officialExoPref(beta, hW + 1e-6, hL) - officialExoPref(beta, hW - 1e-6, hL)) / 2e-6;
      if (Math.abs(fd - trl.dPolicyChosen[0]) > 1e-7)
        t.fail(`z=${hW - hL}: repo gradient ${fd} vs ${trl.dPolicyChosen[0]}`);
    }
    t.pass('40 random pairs: constant offset −log(1+e^{−10}), identical gradients, form "official" = the repo formula');
  },
);

t.test(
  'property 6: EXO-pref ∂L/∂z = β σ(βz) σ(−βz) (βz − log((1−ε)/ε)): negative below the target, positive above; DPO never changes sign',
  async (t) => {
    const eps = 1e-3,
      beta = 0.5,
      target = Math.log((1 - eps) / eps);
    let below = 0,
      above = 0;
    for (let u = -12; u <= 20; u += 0.25) {
      const z = u / beta;
      const r = exoPrefLoss({ ...pairAt(z), beta, epsilon: eps });
      const formula = beta * sigmoid(u) * sigmoid(-u) * (u - target);
      near(t, r.dPolicyChosen[0], formula, 1e-15, `βz = ${u}`);
      if (u < target) below += r.dPolicyChosen[0] < 0 ? 1 : 0;
      if (u > target) above += r.dPolicyChosen[0] > 0 ? 1 : 0;
      t.ok(dpoLoss({ ...pairAt(z), beta }).dPolicyChosen[0] < 0, `DPO gradient negative at βz = ${u}`);
    }
    t.equal(
      below,
      Array.from({ length: 129 }, (_, i) => -12 + i * 0.25).filter((u) => u < target).length,
      'every margin below the target is pushed up',
    );
    t.ok(above > 0, 'margins above the target are pushed down');
    const rng = new Rng(6);
    const n = 9;
    const pc = normal(rng, n, 10),
      pr = normal(rng, n, 10),
      rc = normal(rng, n, 10),
      rr = normal(rng, n, 10);
    for (const form of ['trl', 'official'] as const) {
      const r = exoPrefLoss({
        policyChosen: pc,
        policyRejected: pr,
        refChosen: rc,
        refRejected: rr,
        beta,
        epsilon: 0.01,
        form,
      });
      gradcheckParts(
        t,
        [pc, pr],
        ([a, b]) =>
          exoPrefLoss({ policyChosen: a, policyRejected: b, refChosen: rc, refRejected: rr, beta, epsilon: 0.01, form })
            .loss,
        [r.dPolicyChosen, r.dPolicyRejected],
        { label: `EXO-pref (${form})` },
      );
    }
  },
);

function exoGroups(seed: number, k: number, groups: number) {
  const rng = new Rng(seed);
  const n = k * groups;
  return { policy: normal(rng, n, 3), ref: normal(rng, n, 3), rewards: normal(rng, n), groupSize: k };
}

t.test(
  'property 7: EXO-rw L = KL(p‖q) ≥ 0, 0 iff f_i − f_j = (r_i − r_j)/β_r, unchanged by a constant added to all f_i or all r_i',
  async (t) => {
    const betaPi = 0.5,
      betaR = 0.25;
    for (const k of [2, 3, 8]) {
      const g = exoGroups(k, k, 5);
      const r = exoRwLoss({ ...g, betaPi, betaR });
      let kl = 0;
      for (let off = 0; off < g.policy.length; off += k) {
        const f = Array.from({ length: k }, (_, i) => betaPi * (g.policy[off + i] - g.ref[off + i]));
        const s = Array.from({ length: k }, (_, i) => g.rewards[off + i] / betaR);
        const Z = sum(f.map(Math.exp)),
          Zq = sum(s.map(Math.exp));
        for (let i = 0; i < k; i++) {
          const p = Math.exp(f[i]) / Z,
            q = Math.exp(s[i]) / Zq;
          kl += p * Math.log(p / q);
        }
      }
      near(t, r.loss, kl / 5, 1e-12, `K=${k}: loss = mean group KL(p‖q)`);
      t.ok(r.loss >= 0 && Array.from(r.groupKl).every((v) => v >= 0), `K=${k}: ≥ 0`);
      const shiftF = exoRwLoss({ ...g, policy: g.policy.map((v, i) => v + (i < k ? 7 : -3)), betaPi, betaR });
      const shiftR = exoRwLoss({ ...g, rewards: g.rewards.map((v, i) => v + (i < k ? 2 : -11)), betaPi, betaR });
      near(t, shiftF.loss, r.loss, 1e-12, `K=${k}: a per-group constant added to all f_i leaves the loss unchanged`);
      near(t, shiftR.loss, r.loss, 1e-12, `K=${k}: a per-group constant added to all r_i leaves the loss unchanged`);
      // the fixed point: h_i = r_i/(β_π β_r) + c
      const fixed = g.rewards.map((v, i) => g.ref[i] + v / (betaPi * betaR) + 1.5);
      near(
        t,
        exoRwLoss({ ...g, policy: fixed, betaPi, betaR }).loss,
        0,
        1e-13,
        `K=${k}: 0 at f_i − f_j = (r_i − r_j)/β_r`,
      );
      const off = fixed.slice();
      off[1] += 0.1;
      t.ok(exoRwLoss({ ...g, policy: off, betaPi, betaR }).loss > 1e-6, `K=${k}: > 0 when one difference is off`);
    }
  },
);

t.test(
  'property 8: EXO-rw ∂L/∂f_i = p_i[(log p_i − log q_i) − KL(p‖q)]; the gradients of a group sum to 0',
  async (t) => {
    const betaPi = 0.4,
      betaR = 0.6,
      k = 4,
      groups = 3;
    const g = exoGroups(8, k, groups);
    const r = exoRwLoss({ ...g, betaPi, betaR });
    for (let grp = 0; grp < groups; grp++) {
      let s = 0;
      for (let i = 0; i < k; i++) {
        const j = grp * k + i;
        const dF = r.p[j] * (Math.log(r.p[j]) - Math.log(r.q[j]) - r.groupKl[grp]);
        near(t, r.dPolicy[j], (betaPi * dF) / groups, 1e-15, `sample ${j}: formula`);
        s += r.dPolicy[j];
      }
      near(t, s, 0, 1e-16, `group ${grp}: gradients sum to 0`);
    }
    gradcheckParts(t, [g.policy], ([p]) => exoRwLoss({ ...g, policy: p, betaPi, betaR }).loss, [r.dPolicy], {
      label: 'EXO-rw',
    });
  },
);

t.test('argument errors name the argument', async (t) => {
  const one = pairAt(1);
  t.throws(() => exoPrefLoss({ ...one, beta: 1, epsilon: 0 }), {
    name: 'RangeError',
    message: 'exoPrefLoss: expected epsilon to be a finite number > 0 and < 1, received 0',
  });
  t.throws(
    () => exoPrefLoss({ ...one, refRejected: [1, 2], beta: 1 }),
    /exoPrefLoss: expected refRejected.length to be equal to policyChosen.length \(1\), received 2/,
  );
  t.throws(() => exoPrefLoss({ ...one, beta: 1, form: 'repo' as never }), {
    name: 'TypeError',
    message: /form to be one of "trl", "official"/,
  });
  t.throws(
    () => exoRwLoss({ policy: [1, 2], ref: [1, 2], rewards: [1], groupSize: 2, betaPi: 1, betaR: 1 }),
    /exoRwLoss: expected rewards.length to be equal to policy.length \(2\), received 1/,
  );
  t.throws(
    () => exoRwLoss({ policy: [1], ref: [1], rewards: [1], groupSize: 1, betaPi: 1, betaR: 1 }),
    /groupSize to be an integer >= 2, received 1/,
  );
  t.throws(
    () => exoRwLoss({ policy: [1, 2], ref: [1, 2], rewards: [1, 2], groupSize: 2, betaPi: -1, betaR: 1 }),
    /betaPi to be a finite number > 0, received -1/,
  );
});
