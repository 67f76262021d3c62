// Reward-model losses (docs/algorithms.md §1.1, 2.2, §4): Bradley-Terry with margin and score penalty, the pure
// part of property 17, correctness BCE, process-reward BCE and aggregation; argument errors.
import t from 'tap';
import {
  aggregateProcessScores,
  bradleyTerryLoss,
  correctnessLoss,
  processRewardLoss,
} from '../../lib/losses/index.js';
import { gradcheckParts, mean, near, normal, Rng, sigmoid } from '../helpers/loss-helpers.js';

t.test('Bradley-Terry: mean −log σ(r_w − r_l − m) + λ·mean(r_w² + r_l²), gradients, accuracy with ties', async (t) => {
  const rng = new Rng(1);
  const n = 20;
  const chosen = normal(rng, n, 2),
    rejected = normal(rng, n, 2),
    margin = normal(rng, n, 0.5).map(Math.abs);
  rejected[3] = chosen[3]; // a tie
  for (const [m, lambda] of [
    [undefined, 0],
    [margin, 0],
    [margin, 0.01],
    [undefined, 0.5],
  ] as const) {
    const f = (w: ArrayLike<number>, l: ArrayLike<number>) => {
      let s = 0;
      for (let i = 0; i < n; i++)
        s += -Math.log(sigmoid(w[i] - l[i] - (m ? m[i] : 0))) + lambda * (w[i] ** 2 + l[i] ** 2);
      return s / n;
    };
    const r = bradleyTerryLoss({ chosen, rejected, margin: m, scoreRegularization: lambda });
    near(t, r.loss, f(chosen, rejected), 1e-13, `margin ${m ? 'yes' : 'no'}, λ ${lambda}: loss`);
    gradcheckParts(t, [chosen, rejected], ([w, l]) => f(w, l), [r.dChosen, r.dRejected], {
      label: `margin ${m ? 'yes' : 'no'}, λ ${lambda}`,
    });
  }
  const r = bradleyTerryLoss({ chosen, rejected });
  t.equal(
    r.accuracy,
    mean(Array.from(chosen, (w, i) => (w > rejected[i] ? 1 : 0))),
    'accuracy = fraction chosen > rejected',
  );
  near(t, r.meanMargin, mean(Array.from(chosen, (w, i) => w - rejected[i])), 1e-15, 'meanMargin');
  const tie = bradleyTerryLoss({ chosen: [1], rejected: [1] });
  near(t, tie.loss, Math.LN2, 1e-15, 'a tie costs log 2');
  t.equal(tie.accuracy, 0, 'a tie is not counted correct');
  near(t, bradleyTerryLoss({ chosen: [-800], rejected: [0] }).loss, 800, 1e-9, 'no overflow');
});

t.test(
  'property 17 (pure part): BT alone is shift-invariant (mean score never moves); with λ_reg > 0 the mean score is pulled toward 0',
  async (t) => {
    const rng = new Rng(17);
    const n = 64;
    const chosen0 = normal(rng, n).map((v) => v + 4),
      rejected0 = normal(rng, n).map((v) => v + 3);
    const base = bradleyTerryLoss({ chosen: chosen0, rejected: rejected0 });
    const shifted = bradleyTerryLoss({ chosen: chosen0.map((v) => v + 10), rejected: rejected0.map((v) => v + 10) });
    near(t, shifted.loss, base.loss, 1e-13, 'loss unchanged by a common shift');
    const gsum = Array.from(base.dChosen).reduce((s, v, i) => s + v + base.dRejected[i], 0);
    near(t, gsum, 0, 1e-15, 'BT gradients sum to 0: descent cannot move the mean score');
    // scores as free parameters, plain gradient descent
    const train = (lambda: number) => {
      const w = chosen0.slice(),
        l = rejected0.slice();
      for (let step = 0; step < 2000; step++) {
        const r = bradleyTerryLoss({ chosen: w, rejected: l, scoreRegularization: lambda });
        for (let i = 0; i < n; i++) ((w[i] -= 5 * r.dChosen[i]), (l[i] -= 5 * r.dRejected[i]));
      }
      return (mean(w) + mean(l)) / 2;
    };
    const start = (mean(chosen0) + mean(rejected0)) / 2;
    const plain = train(0),
      reg = train(0.01);
    near(t, plain, start, 1e-9, `λ = 0: mean score stays at ${start.toFixed(3)}`);
    t.ok(
      Math.abs(reg) < 0.1 * Math.abs(plain),
      `λ = 0.01: mean score ${reg.toFixed(4)} is much closer to 0 than ${plain.toFixed(3)}`,
    );
  },
);

t.test('correctness loss: BCE on σ(score) (multi-task RM), gradient σ(s) − c, soft labels', async (t) => {
  const rng = new Rng(2);
  const n = 16;
  const scores = normal(rng, n, 3),
    labels = Float64Array.from({ length: n }, (_, i) => (i % 5 === 4 ? 0.3 : i % 2));
  const f = (s: ArrayLike<number>) => {
    let l = 0;
    for (let i = 0; i < n; i++)
      l -= labels[i] * Math.log(sigmoid(s[i])) + (1 - labels[i]) * Math.log(1 - sigmoid(s[i]));
    return l / n;
  };
  const r = correctnessLoss({ scores, labels });
  near(t, r.loss, f(scores), 1e-13, 'loss');
  gradcheckParts(t, [scores], ([s]) => f(s), [r.dScores], { label: 'correctness BCE' });
  near(t, correctnessLoss({ scores: [0, 0], labels: [1, 0] }).loss, Math.LN2, 1e-15, 'score 0 costs log 2');
  t.equal(
    correctnessLoss({ scores: [2, -1, 0.5], labels: [1, 0, 0] }).accuracy,
    2 / 3,
    'accuracy: (s > 0) == (c ≥ 0.5)',
  );
});

t.test('process reward loss: per-step BCE over counted steps; aggregation by min / last / mean', async (t) => {
  const rng = new Rng(3);
  const n = 12;
  const steps = normal(rng, n, 2),
    labels = Float64Array.from({ length: n }, (_, i) => (i < 7 ? 1 : 0));
  const mask = Float64Array.from({ length: n }, (_, i) => (i % 4 === 3 ? 0 : 1));
  const f = (s: ArrayLike<number>) => {
    let l = 0,
      c = 0;
    for (let i = 0; i < n; i++)
      if (mask[i]) ((l -= labels[i] * Math.log(sigmoid(s[i])) + (1 - labels[i]) * Math.log(1 - sigmoid(s[i]))), c++);
    return l / c;
  };
  const r = processRewardLoss({ stepScores: steps, stepLabels: labels, mask });
  t.equal(r.steps, 9);
  near(t, r.loss, f(steps), 1e-13, 'loss');
  gradcheckParts(t, [steps], ([s]) => f(s), [r.dStepScores], { label: 'PRM BCE (masked steps)' });
  t.ok(
    r.dStepScores.every((g, i) => mask[i] || g === 0),
    'uncounted steps get 0',
  );
  t.equal(aggregateProcessScores([0.9, 0.2, 0.7], 'min'), 0.2);
  t.equal(aggregateProcessScores([0.9, 0.2, 0.7], 'last'), 0.7);
  near(t, aggregateProcessScores([0.9, 0.2, 0.7], 'mean'), 0.6, 1e-15, 'mean');
});

t.test('argument errors name the argument', async (t) => {
  t.throws(() => bradleyTerryLoss({ chosen: [1, 2], rejected: [1] }), {
    name: 'RangeError',
    message: 'bradleyTerryLoss: expected rejected.length to be equal to chosen.length (2), received 1',
  });
  t.throws(
    () => bradleyTerryLoss({ chosen: [], rejected: [] }),
    /bradleyTerryLoss: expected chosen.length to be >= 1, received 0/,
  );
  t.throws(
    () => bradleyTerryLoss({ chosen: [1], rejected: [1], scoreRegularization: -0.1 }),
    /scoreRegularization to be a finite number >= 0, received -0.1/,
  );
  t.throws(
    () => bradleyTerryLoss({ chosen: [1], rejected: [1], margin: [1, 2] }),
    /margin.length to be equal to chosen.length \(1\), received 2/,
  );
  t.throws(
    () => correctnessLoss({ scores: [1], labels: [2] }),
    /correctnessLoss: expected labels\[0\] to be a finite number >= 0 and <= 1, received 2/,
  );
  t.throws(
    () => processRewardLoss({ stepScores: [1], stepLabels: [1], mask: [1, 0] }),
    /processRewardLoss: expected mask.length to be equal to stepScores.length \(1\), received 2/,
  );
  t.throws(() => aggregateProcessScores([1], 'max' as never), {
    name: 'TypeError',
    message: 'aggregateProcessScores: expected how to be one of "min", "last", "mean", received "max"',
  });
  t.throws(
    () => aggregateProcessScores([], 'min'),
    /aggregateProcessScores: expected stepScores.length to be >= 1, received 0/,
  );
});
