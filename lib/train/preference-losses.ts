/**
 * PreferenceTrainer's loss dispatch (private to lib/train): one micro-batch of items, each item k
 * consecutive rows of one prompt (pairs: k = 2, row 0 chosen, row 1 rejected; scored groups: k =
 * groupSize; unpaired KTO: k = 1, one labelled row), sequence log-probs in, the mean loss over the items and its gradient w.r.t. every
 * row's POLICY sequence log-prob out (the reference is frozen). The formulas are in lib/losses.
 */
import { dpoLoss, dpoRwLoss, exoPrefLoss, exoRwLoss, ktoLoss, orpoLoss, simpoLoss } from '../losses/index.js';

/** The losses PreferenceTrainer implements. */
export const PREFERENCE_LOSSES = ['dpo', 'cdpo', 'ipo', 'simpo', 'orpo', 'kto', 'exo', 'exo-rw', 'dpo-rw'] as const;
export type PreferenceLoss = (typeof PREFERENCE_LOSSES)[number];

/** True for the losses without a reference model. */
export function isReferenceFree(loss: PreferenceLoss): boolean {
  return loss === 'simpo' || loss === 'orpo';
}

/** True for the K-sample losses that train on scored groups (reward-weighted targets). */
export function isGroupLoss(loss: PreferenceLoss): loss is 'exo-rw' | 'dpo-rw' {
  return loss === 'exo-rw' || loss === 'dpo-rw';
}

export interface LossParams {
  loss: PreferenceLoss;
  beta: number;
  labelSmoothing: number;
  epsilon: number;
  betaPi: number;
  betaR: number;
  gamma: number;
  /** KTO's w_d and w_u (TRL's desirable_weight / undesirable_weight) */
  desirableWeight: number;
  undesirableWeight: number;
}

export interface LossInput {
  /** rows per item */
  k: number;
  /** policy sequence log-probs per row (item-contiguous) */
  policy: ArrayLike<number>;
  /** reference sequence log-probs per row (unused by simpo and orpo) */
  ref?: ArrayLike<number>;
  /** response tokens per row (> 0) */
  lengths: ArrayLike<number>;
  /** per-row scores (group losses) */
  scores?: ArrayLike<number>;
  /** per item: the row (0..k−1) of the best- and worst-scored response (pairs: 0 and 1) */
  best: ArrayLike<number>;
  worst: ArrayLike<number>;
  /** unpaired KTO (k = 1): 1 for a desirable row, 0 for an undesirable one */
  desirable?: ArrayLike<number>;
  /** KTO's detached reference point z0 */
  klBaseline?: number;
}

export interface LossOutput {
  /** mean over the items (KTO: over the 2·items examples) */
  loss: number;
  /** ∂loss/∂policy per row */
  dPolicy: Float64Array;
  /** implicit rewards of each item's best and worst row: β·h (simpo, orpo: β·logp/len; *-rw: β_π·h);
   * unpaired KTO: of the desirable rows and of the undesirable rows, in order */
  rewardsChosen: Float64Array;
  rewardsRejected: Float64Array;
}

const column = (x: ArrayLike<number>, n: number, k: number, j: ArrayLike<number> | number) =>
  Float64Array.from({ length: n }, (_, i) => x[i * k + (typeof j === 'number' ? j : j[i])]);

/** The loss of one micro-batch (see the module comment for the layout). */
export function preferenceLoss(p: LossParams, x: LossInput): LossOutput {
  const { k } = x;
  const n = x.policy.length / k;
  if (isGroupLoss(p.loss)) {
    const args = { policy: x.policy, ref: x.ref!, rewards: x.scores!, groupSize: k, betaPi: p.betaPi, betaR: p.betaR };
    const r = p.loss === 'exo-rw' ? exoRwLoss(args) : dpoRwLoss({ ...args, target: 'softmax' });
    const rewards = Float64Array.from(x.policy, (v, i) => p.betaPi * (v - x.ref![i]));
    return {
      loss: r.loss,
      dPolicy: r.dPolicy,
      rewardsChosen: column(rewards, n, k, x.best),
      rewardsRejected: column(rewards, n, k, x.worst),
    };
  }
  const kto = { beta: p.beta, desirableWeight: p.desirableWeight, undesirableWeight: p.undesirableWeight };
  if (p.loss === 'kto' && k === 1) {
    const r = ktoLoss({
      policy: x.policy,
      ref: x.ref!,
      desirable: x.desirable!,
      ...kto,
      klBaseline: x.klBaseline ?? 0,
    });
    const pick = (label: number) => r.rewards.filter((_, i) => x.desirable![i] === label);
    return { loss: r.loss, dPolicy: r.dPolicy, rewardsChosen: pick(1), rewardsRejected: pick(0) };
  }
  const pc = column(x.policy, n, 2, 0),
    pr = column(x.policy, n, 2, 1);
  const rc = x.ref && column(x.ref, n, 2, 0),
    rr = x.ref && column(x.ref, n, 2, 1);
  const dPolicy = new Float64Array(2 * n);
  const interleave = (dc: ArrayLike<number>, dr: ArrayLike<number>) => {
    for (let i = 0; i < n; i++) ((dPolicy[2 * i] = dc[i]), (dPolicy[2 * i + 1] = dr[i]));
  };
  if (p.loss === 'kto') {
    const r = ktoLoss({
      policy: [...pc, ...pr],
      ref: [...rc!, ...rr!],
      desirable: Array.from({ length: 2 * n }, (_, i) => (i < n ? 1 : 0)),
      ...kto,
      klBaseline: x.klBaseline ?? 0,
    });
    interleave(r.dPolicy.subarray(0, n), r.dPolicy.subarray(n));
    return { loss: r.loss, dPolicy, rewardsChosen: r.rewards.slice(0, n), rewardsRejected: r.rewards.slice(n) };
  }
  let r;
  if (p.loss === 'simpo')
    r = simpoLoss({
      policyChosen: pc,
      policyRejected: pr,
      chosenLength: column(x.lengths, n, 2, 0),
      rejectedLength: column(x.lengths, n, 2, 1),
      beta: p.beta,
      gamma: p.gamma,
    });
  else if (p.loss === 'orpo')
    r = orpoLoss({
      policyChosen: pc,
      policyRejected: pr,
      chosenLength: column(x.lengths, n, 2, 0),
      rejectedLength: column(x.lengths, n, 2, 1),
      lambda: p.beta,
    });
  else if (p.loss === 'exo')
    r = exoPrefLoss({
      policyChosen: pc,
      policyRejected: pr,
      refChosen: rc!,
      refRejected: rr!,
      beta: p.beta,
      epsilon: p.epsilon,
    });
  else
    r = dpoLoss({
      policyChosen: pc,
      policyRejected: pr,
      refChosen: rc!,
      refRejected: rr!,
      beta: p.beta,
      labelSmoothing: p.loss === 'ipo' ? 0 : p.labelSmoothing,
      variant: p.loss === 'ipo' ? 'ipo' : 'dpo',
    });
  interleave(r.dPolicyChosen, r.dPolicyRejected);
  return { loss: r.loss, dPolicy, rewardsChosen: r.rewardsChosen, rewardsRejected: r.rewardsRejected };
}

/** Sums over a set of items whose ratios are the mean metrics; they add up over micro-batches and ranks. */
export const TALLY_KEYS = [
  'items',
  'loss',
  'chosen',
  'rejected',
  'rewardsChosen',
  'rewardsRejected',
  'logpsChosen',
  'logpsRejected',
  'correct',
  'klBaseline',
] as const;
export type Tally = Record<(typeof TALLY_KEYS)[number], number>;

export const emptyTally = (): Tally => Object.fromEntries(TALLY_KEYS.map((k) => [k, 0])) as Tally;

/** Adds `b` into `a` (in place). */
export function addTally(a: Tally, b: Tally): Tally {
  for (const k of TALLY_KEYS) a[k] += b[k];
  return a;
}

/**
 * The tally of one micro-batch of `items` items (the input and output of {@link preferenceLoss}):
 * loss·items; per kind (chosen = each item's best row, rejected = its worst; unpaired KTO: the
 * desirable and the undesirable rows) the row count and the sums of implicit rewards and policy
 * log-probs; `correct` counts items with reward(chosen) > reward(rejected), or for unpaired KTO
 * rows on their label's side of the reference point (β·h vs β·z0).
 */
export function tallyOf(p: LossParams, x: LossInput, out: LossOutput, items: number): Tally {
  const t = emptyTally();
  const sum = (xs: Float64Array) => xs.reduce((s, v) => s + v, 0);
  t.items = items;
  t.loss = out.loss * items;
  t.klBaseline = (x.klBaseline ?? 0) * items;
  t.rewardsChosen = sum(out.rewardsChosen);
  t.rewardsRejected = sum(out.rewardsRejected);
  t.chosen = out.rewardsChosen.length;
  t.rejected = out.rewardsRejected.length;
  if (x.desirable) {
    const z = p.beta * (x.klBaseline ?? 0);
    for (let i = 0; i < items; i++)
      if (x.desirable[i]) t.logpsChosen += x.policy[i];
      else t.logpsRejected += x.policy[i];
    t.correct = out.rewardsChosen.filter((r) => r > z).length + out.rewardsRejected.filter((r) => r < z).length;
  } else {
    for (let i = 0; i < items; i++) {
      t.logpsChosen += x.policy[i * x.k + x.best[i]];
      t.logpsRejected += x.policy[i * x.k + x.worst[i]];
      if (out.rewardsChosen[i] > out.rewardsRejected[i]) t.correct++;
    }
  }
  return t;
}

/** The mean metrics of a tally (a kind with no row gives NaN for its means and the margin). */
export function metricsOf(t: Tally): {
  loss: number;
  rewardsChosen: number;
  rewardsRejected: number;
  margin: number;
  accuracy: number;
  logpsChosen: number;
  logpsRejected: number;
  klBaseline: number;
} {
  const rc = t.rewardsChosen / t.chosen,
    rr = t.rewardsRejected / t.rejected;
  return {
    loss: t.loss / t.items,
    rewardsChosen: rc,
    rewardsRejected: rr,
    margin: rc - rr,
    accuracy: t.correct / t.items,
    logpsChosen: t.logpsChosen / t.chosen,
    logpsRejected: t.logpsRejected / t.rejected,
    klBaseline: t.klBaseline / t.items,
  };
}
