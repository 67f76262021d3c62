/**
 * Offline preference losses on sequence log-probs (docs/algorithms.md §1.2, 3.4; properties 1–3, 9–10): DPO
 * (with cDPO label smoothing) and IPO, SimPO, ORPO's odds-ratio term, KTO, and the K-sample
 * forward-KL "dpo-rw" of the EXO codebase. Inputs are sequence log-probs `log π(y|x)` summed over response tokens
 * (sequenceLogprobs); outputs include the gradient w.r.t. the POLICY's sequence log-probs (the
 * reference is frozen), to be spread over tokens with spreadSequenceGrad.
 *
 * Losses are means over pairs / examples / groups; gradients are of the returned loss.
 */
import { rangeError } from '../validate.js';
import {
  args,
  groupLogSoftmax,
  logSigmoid,
  pairDiagnostics,
  readGroups,
  readPairs,
  sameLength,
  sigmoid,
  type NumArray,
} from './common.js';

export interface PairLossResult {
  loss: number;
  /** ∂loss/∂policyChosen[i] */
  dPolicyChosen: Float64Array;
  /** ∂loss/∂policyRejected[i] */
  dPolicyRejected: Float64Array;
  /** implicit rewards β·(policyChosen − refChosen) (SimPO: β·policyChosen/chosenLength) */
  rewardsChosen: Float64Array;
  rewardsRejected: Float64Array;
  /** fraction of pairs with rewardsChosen > rewardsRejected */
  accuracy: number;
  /** mean of rewardsChosen − rewardsRejected */
  margin: number;
}

export type DpoVariant = 'dpo' | 'ipo';

/**
 * DPO (Rafailov et al. 2023; docs/algorithms.md §1.2,) and IPO (Azar et al. 2023, TRL `ipo`). With
 * h = log π_θ − log π_ref and z = h_w − h_l:
 *
 *   dpo:  ℓ = −(1 − ε_ls) log σ(βz) − ε_ls log σ(−βz),   ∂ℓ/∂z = −β(1 − ε_ls) σ(−βz) + β ε_ls σ(βz)
 *         (ε_ls = labelSmoothing; 0 is plain DPO, > 0 is conservative DPO / cDPO)
 *   ipo:  ℓ = (z − 1/(2β))²,                            ∂ℓ/∂z = 2 (z − 1/(2β))
 *
 * ∂ℓ/∂policyChosen = ∂ℓ/∂z, ∂ℓ/∂policyRejected = −∂ℓ/∂z (each divided by N for the mean).
 * Claims 1–3: at z = 0 DPO's loss is log 2 and its gradient −β/2; π_θ = π_ref gives log 2; the loss
 * is invariant to adding one constant to both policy log-probs of a pair.
 * Note: TRL feeds IPO length-AVERAGED log-probs (sequenceLogprobs with {average: true}).
 * @param input.beta β > 0
 * @param input.labelSmoothing ε_ls in [0, 0.5] (dpo only; default 0)
 */
export function dpoLoss(input: {
  policyChosen: NumArray;
  policyRejected: NumArray;
  refChosen: NumArray;
  refRejected: NumArray;
  beta: number;
  labelSmoothing?: number;
  variant?: DpoVariant;
}): PairLossResult {
  const fn = 'dpoLoss';
  const a = args(fn, input, [
    'policyChosen',
    'policyRejected',
    'refChosen',
    'refRejected',
    'beta',
    'labelSmoothing',
    'variant',
  ]);
  const { hW, hL } = readPairs(fn, a);
  const beta = a.number('beta', { gt: 0 });
  const ls = a.number('labelSmoothing', { min: 0, max: 0.5 }, 0);
  const variant = a.oneOf('variant', ['dpo', 'ipo'] as const, 'dpo');
  if (variant === 'ipo' && ls !== 0) throw rangeError(fn, 'labelSmoothing', "0 with variant 'ipo'", ls);
  const n = hW.length;
  const dPolicyChosen = new Float64Array(n),
    dPolicyRejected = new Float64Array(n);
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const z = hW[i] - hL[i];
    let l: number, dz: number;
    if (variant === 'ipo') {
      const e = z - 1 / (2 * beta);
      ((l = e * e), (dz = 2 * e));
    } else {
      const u = beta * z;
      l = -(1 - ls) * logSigmoid(u) - (ls === 0 ? 0 : ls * logSigmoid(-u));
      dz = -beta * (1 - ls) * sigmoid(-u) + beta * ls * sigmoid(u);
    }
    loss += l / n;
    dPolicyChosen[i] = dz / n;
    dPolicyRejected[i] = -dz / n;
  }
  return { loss, dPolicyChosen, dPolicyRejected, ...pairDiagnostics(beta, hW, hL) };
}

/** Policy log-probs of chosen/rejected responses with their token counts (> 0), all of one length. */
function lengthPairs(fn: string, a: ReturnType<typeof args>) {
  const pc = a.array('policyChosen', undefined, 1);
  const pr = a.array('policyRejected');
  const lc = a.array('chosenLength', { gt: 0 });
  const lr = a.array('rejectedLength', { gt: 0 });
  sameLength(fn, 'policyChosen', pc, 'policyRejected', pr);
  sameLength(fn, 'policyChosen', pc, 'chosenLength', lc);
  sameLength(fn, 'policyChosen', pc, 'rejectedLength', lr);
  return { pc, pr, lc, lr };
}

/**
 * SimPO (Meng et al. 2024; TRL CPOTrainer `loss_type="simpo"`): reference-free, length-normalised.
 * With u = β (lp_w/|y_w| − lp_l/|y_l|) − γ:
 *
 *   ℓ = −log σ(u),   ∂ℓ/∂lp_w = −β σ(−u) / |y_w|,   ∂ℓ/∂lp_l = +β σ(−u) / |y_l|   (÷ N for the mean).
 *
 * `rewardsChosen` = β·lp_w/|y_w|. (TRL's `simpo_gamma` is this γ: it uses γ/β inside β(·).)
 * @param input.chosenLength response token counts of the chosen responses (> 0)
 * @param input.rejectedLength response token counts of the rejected responses (> 0)
 * @param input.gamma target reward margin γ >= 0
 */
export function simpoLoss(input: {
  policyChosen: NumArray;
  policyRejected: NumArray;
  chosenLength: NumArray;
  rejectedLength: NumArray;
  beta: number;
  gamma: number;
}): PairLossResult {
  const fn = 'simpoLoss';
  const a = args(fn, input, ['policyChosen', 'policyRejected', 'chosenLength', 'rejectedLength', 'beta', 'gamma']);
  const { pc, pr, lc, lr } = lengthPairs(fn, a);
  const beta = a.number('beta', { gt: 0 });
  const gamma = a.number('gamma', { min: 0 });
  const n = pc.length;
  const hW = new Float64Array(n),
    hL = new Float64Array(n);
  const dPolicyChosen = new Float64Array(n),
    dPolicyRejected = new Float64Array(n);
  let loss = 0;
  for (let i = 0; i < n; i++) {
    ((hW[i] = pc[i] / lc[i]), (hL[i] = pr[i] / lr[i]));
    const u = beta * (hW[i] - hL[i]) - gamma;
    const s = sigmoid(-u);
    loss -= logSigmoid(u) / n;
    dPolicyChosen[i] = (-beta * s) / lc[i] / n;
    dPolicyRejected[i] = (beta * s) / lr[i] / n;
  }
  return { loss, dPolicyChosen, dPolicyRejected, ...pairDiagnostics(beta, hW, hL) };
}

/**
 * ORPO's odds-ratio term (Hong et al. 2024; TRL's ORPOTrainer), reference-free, on the
 * length-normalised log-probs a = log π(y|x) / |y| (so P = e^a is the mean per-token probability):
 *
 *   z = log odds(y_w) − log odds(y_l),   log odds(y) = a − log(1 − e^a)
 *   ℓ = −λ log σ(z),   ∂ℓ/∂lp_w = −λ σ(−z) / ((1 − e^{a_w}) |y_w|),   ∂ℓ/∂lp_l = +λ σ(−z) / ((1 − e^{a_l}) |y_l|)
 *
 * (÷ N for the mean). ORPO's full loss adds the chosen responses' NLL (PreferenceTrainer's ntpCoef,
 * 1 by default for 'orpo'). `rewardsChosen` = λ·a_w, as TRL logs them. a is capped just below 0
 * (log(1 − e^a) → −∞ as a → 0).
 */
export function orpoLoss(input: {
  policyChosen: NumArray;
  policyRejected: NumArray;
  chosenLength: NumArray;
  rejectedLength: NumArray;
  lambda: number;
}): PairLossResult {
  const fn = 'orpoLoss';
  const a = args(fn, input, ['policyChosen', 'policyRejected', 'chosenLength', 'rejectedLength', 'lambda']);
  const { pc, pr, lc, lr } = lengthPairs(fn, a);
  const lambda = a.number('lambda', { gt: 0 });
  const n = pc.length;
  const hW = new Float64Array(n),
    hL = new Float64Array(n);
  const dPolicyChosen = new Float64Array(n),
    dPolicyRejected = new Float64Array(n);
  const CAP = -1e-7;
  // log(1 − e^a) = log(−expm1(a)), accurate near a = 0
  const logOdds = (x: number) => x - Math.log(-Math.expm1(x));
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const aw = Math.min(pc[i] / lc[i], CAP),
      al = Math.min(pr[i] / lr[i], CAP);
    ((hW[i] = aw), (hL[i] = al));
    const z = logOdds(aw) - logOdds(al);
    const s = sigmoid(-z);
    loss -= (lambda * logSigmoid(z)) / n;
    dPolicyChosen[i] = pc[i] / lc[i] < CAP ? (-lambda * s) / (-Math.expm1(aw) * lc[i] * n) : 0;
    dPolicyRejected[i] = pr[i] / lr[i] < CAP ? (lambda * s) / (-Math.expm1(al) * lr[i] * n) : 0;
  }
  return { loss, dPolicyChosen, dPolicyRejected, ...pairDiagnostics(lambda, hW, hL) };
}

/**
 * KTO's reference point z0 as in TRL's KTOTrainer: the batch mean of policy − ref log-probs on
 * MISMATCHED (prompt, completion) pairs, clamped at 0 and treated as a constant (no gradient).
 */
export function ktoKlBaseline(policyMismatched: NumArray, refMismatched: NumArray): number {
  const fn = 'ktoKlBaseline';
  const a = args(fn, { policyMismatched, refMismatched }, ['policyMismatched', 'refMismatched']);
  const p = a.array('policyMismatched', undefined, 1);
  const r = a.array('refMismatched');
  sameLength(fn, 'policyMismatched', p, 'refMismatched', r);
  let s = 0;
  for (let i = 0; i < p.length; i++) s += (p[i] - r[i]) / p.length;
  return Math.max(0, s);
}

/**
 * KTO (Ethayarajh et al. 2024; TRL KTOTrainer `kto_loss`). With h = policy − ref and the detached
 * reference point z0 = klBaseline (see {@link ktoKlBaseline}):
 *
 *   desirable:    ℓ = w_d (1 − σ(β(h − z0))),   ∂ℓ/∂h = −w_d β σ(x) σ(−x),  x = β(h − z0)
 *   undesirable:  ℓ = w_u (1 − σ(β(z0 − h))),   ∂ℓ/∂h = +w_u β σ(y) σ(−y),  y = β(z0 − h)
 *
 * loss = mean over all examples (TRL concatenates both kinds and takes the mean).
 * @param input.desirable 1 for desirable (thumbs-up) examples, 0 for undesirable
 * @param input.klBaseline z0 >= 0
 */
export function ktoLoss(input: {
  policy: NumArray;
  ref: NumArray;
  desirable: NumArray;
  beta: number;
  desirableWeight?: number;
  undesirableWeight?: number;
  klBaseline: number;
}): {
  loss: number;
  dPolicy: Float64Array;
  rewards: Float64Array;
  meanDesirableReward: number;
  meanUndesirableReward: number;
} {
  const fn = 'ktoLoss';
  const a = args(fn, input, [
    'policy',
    'ref',
    'desirable',
    'beta',
    'desirableWeight',
    'undesirableWeight',
    'klBaseline',
  ]);
  const policy = a.array('policy', undefined, 1);
  const ref = a.array('ref');
  const desirable = a.mask('desirable');
  sameLength(fn, 'policy', policy, 'ref', ref);
  sameLength(fn, 'policy', policy, 'desirable', desirable);
  const beta = a.number('beta', { gt: 0 });
  const wd = a.number('desirableWeight', { min: 0 }, 1);
  const wu = a.number('undesirableWeight', { min: 0 }, 1);
  const z0 = a.number('klBaseline', { min: 0 });
  const n = policy.length;
  const dPolicy = new Float64Array(n),
    rewards = new Float64Array(n);
  let loss = 0,
    sumD = 0,
    nD = 0,
    sumU = 0,
    nU = 0;
  for (let i = 0; i < n; i++) {
    const h = policy[i] - ref[i];
    rewards[i] = beta * h;
    if (desirable[i]) {
      const x = beta * (h - z0);
      loss += (wd * (1 - sigmoid(x))) / n;
      dPolicy[i] = (-wd * beta * sigmoid(x) * sigmoid(-x)) / n;
      ((sumD += rewards[i]), nD++);
    } else {
      const y = beta * (z0 - h);
      loss += (wu * (1 - sigmoid(y))) / n;
      dPolicy[i] = (wu * beta * sigmoid(y) * sigmoid(-y)) / n;
      ((sumU += rewards[i]), nU++);
    }
  }
  return { loss, dPolicy, rewards, meanDesirableReward: nD ? sumD / nD : 0, meanUndesirableReward: nU ? sumU / nU : 0 };
}

/**
 * "dpo-rw" / "dpo-pref" of the EXO codebase (docs/algorithms.md §3.4,): the forward-KL
 * (cross-entropy) K-sample generalisation of DPO. Per group of K = groupSize samples of one prompt:
 *
 *   f_i = β_π h_i,  p = softmax(f),  q = softmax(r / β_r) (target 'softmax') or q = r (target 'labels'),
 *   L_group = −Σ_i q_i log p_i,     ∂L_group/∂f_i = p_i Σ_j q_j − q_i   (= p_i − q_i when Σq = 1),
 *
 * loss = mean over groups; ∂loss/∂policy_i = β_π ∂L_group/∂f_i / #groups. With K = 2 and
 * one-hot labels this is DPO with β = β_π (property 9); the minimum over p is at p = q, where
 * L_group = H(q) (forward KL(q‖p) plus the entropy of q).
 * @param input.groupSize K >= 2, dividing policy.length
 * @param input.rewards per-sample rewards (target 'softmax') or non-negative target weights ('labels')
 * @param input.betaR β_r > 0 (required for target 'softmax')
 */
export function dpoRwLoss(input: {
  policy: NumArray;
  ref: NumArray;
  rewards: NumArray;
  groupSize: number;
  betaPi: number;
  betaR?: number;
  target?: 'softmax' | 'labels';
}): { loss: number; dPolicy: Float64Array; p: Float64Array; q: Float64Array } {
  const fn = 'dpoRwLoss';
  const a = args(fn, input, ['policy', 'ref', 'rewards', 'groupSize', 'betaPi', 'betaR', 'target']);
  const { h, k } = readGroups(fn, a, input.groupSize);
  const target = a.oneOf('target', ['softmax', 'labels'] as const, 'softmax');
  const rewards = a.array('rewards', target === 'labels' ? { min: 0 } : undefined);
  sameLength(fn, 'policy', h, 'rewards', rewards);
  const betaPi = a.number('betaPi', { gt: 0 });
  const q =
    target === 'softmax'
      ? groupLogSoftmax(rewards, k, 1 / a.number('betaR', { gt: 0 })).map(Math.exp)
      : Float64Array.from(rewards);
  const logp = groupLogSoftmax(h, k, betaPi);
  const p = logp.map(Math.exp);
  const groups = h.length / k;
  const dPolicy = new Float64Array(h.length);
  let loss = 0;
  for (let off = 0; off < h.length; off += k) {
    let qSum = 0;
    for (let i = 0; i < k; i++) {
      qSum += q[off + i];
      if (q[off + i] !== 0) loss -= (q[off + i] * logp[off + i]) / groups;
    }
    for (let i = 0; i < k; i++) dPolicy[off + i] = (betaPi * (p[off + i] * qSum - q[off + i])) / groups;
  }
  return { loss, dPolicy, p, q };
}
