// Offline preference losses (docs/algorithms.md §1.2, 3.4): properties 1, 2, 3 and 9; DPO/cDPO/IPO, SimPO, KTO
// and dpo-rw values against their formulas, gradients against finite differences, argument errors.
import t from 'tap';
import { dpoLoss, dpoRwLoss, exoRwLoss, ktoKlBaseline, ktoLoss, orpoLoss, simpoLoss } from '../../lib/losses/index.js';
import { gradcheckParts, mean, near, normal, Rng, sigmoid } from '../helpers/loss-helpers.js';

function pairs(seed: number, n: number, scale = 3) {
  const rng = new Rng(seed);
  return {
    policyChosen: normal(rng, n, scale),
    policyRejected: normal(rng, n, scale),
    refChosen: normal(rng, n, scale),
    refRejected: normal(rng, n, scale),
  };
}

t.test(
  'property 1: DPO ∂L/∂z = −β σ(−βz) (chosen: −, rejected: +); at z = 0 the loss is log 2 and the gradient −β/2',
  async (t) => {
    const beta = 0.1;
    const p = pairs(1, 16, 5);
    const r = dpoLoss({ ...p, beta });
    for (let i = 0; i < 16; i++) {
      const z = p.policyChosen[i] - p.refChosen[i] - (p.policyRejected[i] - p.refRejected[i]);
      near(t, r.dPolicyChosen[i] * 16, -beta * sigmoid(-beta * z), 1e-15, `pair ${i}: ∂L/∂logπ(y_w)`);
      near(t, r.dPolicyRejected[i] * 16, beta * sigmoid(-beta * z), 1e-15, `pair ${i}: ∂L/∂logπ(y_l)`);
    }
    for (const b of [0.1, 0.5, 2]) {
      const z0 = dpoLoss({ policyChosen: [-3], policyRejected: [-7], refChosen: [-3], refRejected: [-7], beta: b });
      near(t, z0.loss, Math.LN2, 1e-15, `β = ${b}: loss at z = 0`);
      near(t, z0.dPolicyChosen[0], -b / 2, 1e-15, `β = ${b}: gradient at z = 0`);
      near(t, z0.dPolicyRejected[0], b / 2, 1e-15, `β = ${b}: rejected gradient at z = 0`);
    }
  },
);

t.test('property 2: DPO with π_θ = π_ref gives loss exactly log 2 ≈ 0.6931 for every pair', async (t) => {
  const p = pairs(2, 64, 20);
  const r = dpoLoss({
    policyChosen: p.refChosen,
    policyRejected: p.refRejected,
    refChosen: p.refChosen,
    refRejected: p.refRejected,
    beta: 0.3,
  });
  near(t, r.loss, Math.LN2, 1e-15, 'mean loss is log 2');
  near(t, r.loss, 0.6931, 5e-5, 'log 2 ≈ 0.6931');
  t.equal(r.accuracy, 0, 'implicit rewards tie: no pair counted correct');
  t.equal(r.margin, 0);
  const tied = (pc: ArrayLike<number>, pr: ArrayLike<number>) =>
    dpoLoss({ policyChosen: pc, policyRejected: pr, refChosen: p.refChosen, refRejected: p.refRejected, beta: 0.3 })
      .loss;
  gradcheckParts(t, [p.refChosen, p.refRejected], ([pc, pr]) => tied(pc, pr), [r.dPolicyChosen, r.dPolicyRejected], {
    label: 'DPO at the tie z = 0',
  });
  for (let i = 0; i < 64; i++) {
    const one = dpoLoss({
      policyChosen: [p.refChosen[i]],
      policyRejected: [p.refRejected[i]],
      refChosen: [p.refChosen[i]],
      refRejected: [p.refRejected[i]],
      beta: 0.3,
    });
    if (one.loss !== Math.LN2) t.fail(`pair ${i}: ${one.loss}`);
  }
});

t.test(
  'property 3: label smoothing 0 reproduces plain DPO; DPO is invariant to adding one constant to both policy log-probs',
  async (t) => {
    const p = pairs(3, 32);
    const plain = dpoLoss({ ...p, beta: 0.2 });
    const ls0 = dpoLoss({ ...p, beta: 0.2, labelSmoothing: 0, variant: 'dpo' });
    t.same(ls0, plain, 'identical results');
    const rng = new Rng(33);
    const shifted = { ...p, policyChosen: p.policyChosen.slice(), policyRejected: p.policyRejected.slice() };
    for (let i = 0; i < 32; i++) {
      const c = rng.uniform(-50, 50);
      shifted.policyChosen[i] += c;
      shifted.policyRejected[i] += c;
    }
    const s = dpoLoss({ ...shifted, beta: 0.2 });
    near(t, s.loss, plain.loss, 1e-12, 'loss unchanged');
    for (let i = 0; i < 32; i++)
      near(t, s.dPolicyChosen[i], plain.dPolicyChosen[i], 1e-14, `pair ${i}: gradient unchanged`);
    const smoothed = dpoLoss({ ...p, beta: 0.2, labelSmoothing: 0.1 });
    t.not(smoothed.loss, plain.loss, 'labelSmoothing 0.1 changes the loss');
  },
);

t.test('DPO, cDPO and IPO values and gradients', async (t) => {
  const p = pairs(4, 12);
  for (const [variant, ls] of [
    ['dpo', 0],
    ['dpo', 0.1],
    ['dpo', 0.5],
    ['ipo', 0],
  ] as const) {
    const beta = 0.4;
    const r = dpoLoss({ ...p, beta, labelSmoothing: ls, variant });
    const ref = (pc: ArrayLike<number>, pr: ArrayLike<number>) => {
      let l = 0;
      for (let i = 0; i < pc.length; i++) {
        const z = pc[i] - p.refChosen[i] - (pr[i] - p.refRejected[i]);
        l +=
          variant === 'ipo'
            ? (z - 1 / (2 * beta)) ** 2
            : -(1 - ls) * Math.log(sigmoid(beta * z)) - ls * Math.log(sigmoid(-beta * z));
      }
      return l / pc.length;
    };
    near(t, r.loss, ref(p.policyChosen, p.policyRejected), 1e-12, `${variant} ε_ls=${ls}: loss`);
    gradcheckParts(
      t,
      [p.policyChosen, p.policyRejected],
      ([pc, pr]) => ref(pc, pr),
      [r.dPolicyChosen, r.dPolicyRejected],
      { label: `${variant} ε_ls=${ls}` },
    );
  }
  const ipoMin = dpoLoss({
    policyChosen: [1 / (2 * 0.4)],
    policyRejected: [0],
    refChosen: [0],
    refRejected: [0],
    beta: 0.4,
    variant: 'ipo',
  });
  t.equal(ipoMin.loss, 0, 'IPO is 0 at z = 1/(2β)');
  t.equal(ipoMin.dPolicyChosen[0], 0);
  const r = dpoLoss({ ...p, beta: 0.5 });
  for (let i = 0; i < 12; i++)
    near(t, r.rewardsChosen[i], 0.5 * (p.policyChosen[i] - p.refChosen[i]), 1e-15, `implicit reward ${i}`);
  const acc = mean(Array.from(r.rewardsChosen, (c, i) => (c > r.rewardsRejected[i] ? 1 : 0)));
  t.equal(r.accuracy, acc);
  const huge = dpoLoss({ policyChosen: [-1e4], policyRejected: [0], refChosen: [0], refRejected: [0], beta: 1 });
  near(t, huge.loss, 1e4, 1e-9, 'no overflow at βz = −1e4');
  t.equal(huge.dPolicyChosen[0], -1);
});

t.test('SimPO: −log σ(β(lp_w/|y_w| − lp_l/|y_l|) − γ) and its gradient', async (t) => {
  const rng = new Rng(5);
  const n = 10;
  const pc = normal(rng, n, 20),
    pr = normal(rng, n, 20);
  const lc = Float64Array.from({ length: n }, () => rng.int(1, 40)),
    lr = Float64Array.from({ length: n }, () => rng.int(1, 40));
  const beta = 2,
    gamma = 0.5;
  const f = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let l = 0;
    for (let i = 0; i < n; i++) l -= Math.log(sigmoid(beta * (a[i] / lc[i] - b[i] / lr[i]) - gamma));
    return l / n;
  };
  const r = simpoLoss({ policyChosen: pc, policyRejected: pr, chosenLength: lc, rejectedLength: lr, beta, gamma });
  near(t, r.loss, f(pc, pr), 1e-12, 'loss');
  gradcheckParts(t, [pc, pr], ([a, b]) => f(a, b), [r.dPolicyChosen, r.dPolicyRejected], { label: 'SimPO' });
  near(t, r.rewardsChosen[0], (beta * pc[0]) / lc[0], 1e-15, 'length-normalised implicit reward');
});

t.test(
  'ORPO odds-ratio term: −λ log σ(log odds(y_w) − log odds(y_l)) on mean token log-probs; finite differences',
  async (t) => {
    const rng = new Rng(12);
    const n = 9;
    const lc = Float64Array.from({ length: n }, () => rng.int(1, 30)),
      lr = Float64Array.from({ length: n }, () => rng.int(1, 30));
    // sequence log-probs with mean token log-probs in (−3, −0.05)
    const pc = Float64Array.from(lc, (l) => -l * rng.uniform(0.05, 2.95)),
      pr = Float64Array.from(lr, (l) => -l * rng.uniform(0.05, 2.95));
    const lambda = 0.3;
    const f = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let l = 0;
      for (let i = 0; i < n; i++) {
        const odds = (x: number) => Math.log(Math.exp(x) / (1 - Math.exp(x)));
        l -= lambda * Math.log(sigmoid(odds(a[i] / lc[i]) - odds(b[i] / lr[i])));
      }
      return l / n;
    };
    const r = orpoLoss({ policyChosen: pc, policyRejected: pr, chosenLength: lc, rejectedLength: lr, lambda });
    near(t, r.loss, f(pc, pr), 1e-12, 'loss = the odds written out');
    gradcheckParts(t, [pc, pr], ([a, b]) => f(a, b), [r.dPolicyChosen, r.dPolicyRejected], { label: 'ORPO' });
    // closed form at a_w = −1, a_l = −2 (one pair, lengths 1): z = (−1 − log(1 − e^−1)) − (−2 − log(1 − e^−2))
    const z = -1 - Math.log(1 - Math.exp(-1)) - (-2 - Math.log(1 - Math.exp(-2)));
    const one = orpoLoss({
      policyChosen: [-1],
      policyRejected: [-2],
      chosenLength: [1],
      rejectedLength: [1],
      lambda: 1,
    });
    near(t, one.loss, Math.log(1 + Math.exp(-z)), 1e-14, `closed form (z = ${z.toFixed(4)})`);
    const nearOne = orpoLoss({
      policyChosen: [-1e-12],
      policyRejected: [-1],
      chosenLength: [1],
      rejectedLength: [1],
      lambda: 1,
    });
    t.ok(
      Number.isFinite(nearOne.loss) && nearOne.dPolicyChosen[0] === 0,
      'a chosen log-prob at 0 is capped: finite loss, no gradient through the cap',
    );
  },
);

t.test(
  'KTO (TRL form): desirable 1 − σ(β(h − z0)), undesirable 1 − σ(β(z0 − h)), weighted, mean over examples',
  async (t) => {
    const rng = new Rng(6);
    const n = 14;
    const policy = normal(rng, n, 4),
      ref = normal(rng, n, 4);
    const desirable = Float64Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 0 : 1));
    const beta = 0.3,
      wd = 1.3,
      wu = 0.7,
      z0 = 0.25;
    const f = (pol: ArrayLike<number>) => {
      let l = 0;
      for (let i = 0; i < n; i++) {
        const h = pol[i] - ref[i];
        l += desirable[i] ? wd * (1 - sigmoid(beta * (h - z0))) : wu * (1 - sigmoid(beta * (z0 - h)));
      }
      return l / n;
    };
    const r = ktoLoss({ policy, ref, desirable, beta, desirableWeight: wd, undesirableWeight: wu, klBaseline: z0 });
    near(t, r.loss, f(policy), 1e-14, 'loss');
    gradcheckParts(t, [policy], ([p]) => f(p), [r.dPolicy], { label: 'KTO' });
    t.ok(
      Array.from(r.dPolicy).every((g, i) => (desirable[i] ? g < 0 : g > 0)),
      'desirable log-probs pushed up, undesirable down',
    );
    t.equal(ktoKlBaseline([1, 2, 3], [1, 1, 1]), 1, 'z0 = mean(policy − ref) on mismatched pairs');
    t.equal(ktoKlBaseline([0, 0], [1, 2]), 0, 'z0 clamped at 0');
  },
);

t.test('dpo-rw (forward KL over K samples): values and gradients, softmax and label targets', async (t) => {
  const rng = new Rng(7);
  const k = 4,
    groups = 3,
    n = k * groups;
  const policy = normal(rng, n, 3),
    ref = normal(rng, n, 3),
    rewards = normal(rng, n, 1);
  const betaPi = 0.5,
    betaR = 0.7;
  const f = (pol: ArrayLike<number>, labels?: ArrayLike<number>) => {
    let l = 0;
    for (let g = 0; g < groups; g++) {
      const fv = Array.from({ length: k }, (_, i) => betaPi * (pol[g * k + i] - ref[g * k + i]));
      const rv = Array.from({ length: k }, (_, i) => rewards[g * k + i] / betaR);
      const lse = (v: number[]) => Math.log(v.reduce((s, x) => s + Math.exp(x), 0));
      const q = labels ? Array.from({ length: k }, (_, i) => labels[g * k + i]) : rv.map((x) => Math.exp(x - lse(rv)));
      for (let i = 0; i < k; i++) l -= q[i] * (fv[i] - lse(fv));
    }
    return l / groups;
  };
  const r = dpoRwLoss({ policy, ref, rewards, groupSize: k, betaPi, betaR });
  near(t, r.loss, f(policy), 1e-12, 'loss (softmax target)');
  gradcheckParts(t, [policy], ([p]) => f(p), [r.dPolicy], { label: 'dpo-rw softmax' });
  const labels = Float64Array.from({ length: n }, (_, i) => (i % k === 0 ? 1 : 0));
  const rl = dpoRwLoss({ policy, ref, rewards: labels, groupSize: k, betaPi, target: 'labels' });
  near(t, rl.loss, f(policy, labels), 1e-12, 'loss (label target)');
  gradcheckParts(t, [policy], ([p]) => f(p, labels), [rl.dPolicy], { label: 'dpo-rw labels' });
});

t.test(
  'property 9: dpo-rw with K = 2 and one-hot q equals DPO with β = β_π; dpo-rw and exo-rw are minimal exactly at p = q',
  async (t) => {
    const p = pairs(9, 8);
    const betaPi = 0.3;
    const policy = new Float64Array(16),
      ref = new Float64Array(16),
      labels = new Float64Array(16);
    for (let i = 0; i < 8; i++) {
      [policy[2 * i], policy[2 * i + 1]] = [p.policyChosen[i], p.policyRejected[i]];
      [ref[2 * i], ref[2 * i + 1]] = [p.refChosen[i], p.refRejected[i]];
      labels[2 * i] = 1;
    }
    const rw = dpoRwLoss({ policy, ref, rewards: labels, groupSize: 2, betaPi, target: 'labels' });
    const dpo = dpoLoss({ ...p, beta: betaPi });
    near(t, rw.loss, dpo.loss, 1e-14, 'same loss');
    for (let i = 0; i < 8; i++) {
      near(t, rw.dPolicy[2 * i], dpo.dPolicyChosen[i], 1e-15, `pair ${i}: chosen gradient`);
      near(t, rw.dPolicy[2 * i + 1], dpo.dPolicyRejected[i], 1e-15, `pair ${i}: rejected gradient`);
    }

    // p = q: choose h = r/(β_π β_r) + c per group, so softmax(β_π h) = softmax(r/β_r)
    const rng = new Rng(99);
    const k = 4,
      betaR = 0.5;
    const rewards = normal(rng, 2 * k);
    const refLp = normal(rng, 2 * k, 5);
    const atOpt = Float64Array.from(rewards, (r, i) => refLp[i] + r / (betaPi * betaR) + (i < k ? 3 : -2));
    const args = { ref: refLp, rewards, groupSize: k, betaPi, betaR };
    const fwd = dpoRwLoss({ policy: atOpt, ...args });
    const rev = exoRwLoss({ policy: atOpt, ...args });
    for (let i = 0; i < 2 * k; i++) near(t, fwd.p[i], fwd.q[i], 1e-14, `p = q at sample ${i}`);
    const entropy = -Array.from(fwd.q).reduce((s, q) => s + q * Math.log(q), 0) / 2;
    near(t, fwd.loss, entropy, 1e-12, 'dpo-rw minimum value = mean entropy H(q)');
    near(t, rev.loss, 0, 1e-14, 'exo-rw minimum value = 0');
    t.ok(
      Array.from(fwd.dPolicy).every((g) => Math.abs(g) < 1e-15),
      'dpo-rw gradient vanishes at p = q',
    );
    t.ok(
      Array.from(rev.dPolicy).every((g) => Math.abs(g) < 1e-15),
      'exo-rw gradient vanishes at p = q',
    );
    for (let trial = 0; trial < 20; trial++) {
      const moved = atOpt.map((v) => v + rng.normal());
      t.ok(dpoRwLoss({ policy: moved, ...args }).loss > fwd.loss, `trial ${trial}: dpo-rw larger away from p = q`);
      t.ok(exoRwLoss({ policy: moved, ...args }).loss > rev.loss, `trial ${trial}: exo-rw larger away from p = q`);
    }
  },
);

t.test('argument errors name the argument', async (t) => {
  const p = pairs(10, 3);
  t.throws(() => dpoLoss({ ...p, policyRejected: [1, 2], beta: 0.1 }), {
    name: 'RangeError',
    message: 'dpoLoss: expected policyRejected.length to be equal to policyChosen.length (3), received 2',
  });
  t.throws(() => dpoLoss({ ...p, beta: 0 }), {
    name: 'RangeError',
    message: 'dpoLoss: expected beta to be a finite number > 0, received 0',
  });
  t.throws(
    () => dpoLoss({ ...p, beta: 0.1, labelSmoothing: 0.7 }),
    /labelSmoothing to be a finite number >= 0 and <= 0.5/,
  );
  t.throws(
    () => dpoLoss({ ...p, beta: 0.1, labelSmoothing: 0.1, variant: 'ipo' }),
    /labelSmoothing to be 0 with variant 'ipo'/,
  );
  t.throws(() => dpoLoss({ ...p, beta: 0.1, variant: 'kto' as never }), {
    name: 'TypeError',
    message: /variant to be one of "dpo", "ipo"/,
  });
  t.throws(() => dpoLoss({ ...p, refChosen: [0, NaN, 0], beta: 0.1 }), {
    name: 'RangeError',
    message: 'dpoLoss: expected refChosen[1] to be a finite number, received NaN',
  });
  t.throws(() => dpoLoss({ ...p, betta: 0.1 } as never), {
    name: 'TypeError',
    message: 'dpoLoss: unknown argument betta (did you mean beta?)',
  });
  t.throws(() => dpoLoss({ ...p, policyChosen: 'x' as never, beta: 0.1 }), {
    name: 'TypeError',
    message: /policyChosen to be an array of numbers/,
  });
  t.throws(
    () =>
      simpoLoss({ policyChosen: [1], policyRejected: [1], chosenLength: [0], rejectedLength: [1], beta: 1, gamma: 0 }),
    /chosenLength\[0\] to be a finite number > 0/,
  );
  t.throws(
    () => ktoLoss({ policy: [1], ref: [1], desirable: [2], beta: 1, klBaseline: 0 }),
    /desirable\[0\] to be 0 or 1/,
  );
  t.throws(
    () => ktoLoss({ policy: [1], ref: [1], desirable: [1], beta: 1, klBaseline: -1 }),
    /klBaseline to be a finite number >= 0/,
  );
  t.throws(
    () => dpoRwLoss({ policy: [1, 2, 3], ref: [1, 2, 3], rewards: [1, 2, 3], groupSize: 2, betaPi: 1, betaR: 1 }),
    /policy.length to be a multiple of groupSize \(2\), received 3/,
  );
  t.throws(
    () => dpoRwLoss({ policy: [1, 2], ref: [1, 2], rewards: [1, 2], groupSize: 2, betaPi: 1 }),
    /betaR to be a finite number > 0, received undefined/,
  );
});
