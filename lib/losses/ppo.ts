/**
 * PPO losses for language models, token level (docs/algorithms.md §1.3; properties 11–12): the clipped policy
 * surrogate (optionally dual-clipped, Ye et al. 2020 "Mastering Complex Control in MOBA Games",
 * as OpenRLHF `PolicyLoss`), the clipped value loss (OpenRLHF `ValueLoss`) and the entropy bonus.
 *
 * Inputs are flat arrays over the action tokens of a batch; `mask = 1` marks tokens that count.
 * Per-token losses ℓ_t are reduced with the weights of `aggregation` (common.ts):
 * `token-mean` (default; Σ m ℓ / Σ m over the batch) or `seq-mean-token-mean` (mean over sequences
 * of each sequence's token mean; needs `seqLengths`, the lengths of the concatenated sequences).
 * Returned gradients are of the returned loss. Diagnostics (clip fractions, approxKl) are token
 * means over valid tokens whatever the aggregation.
 */
import {
  aggregationWeights,
  AGGREGATIONS,
  args,
  maskedMean,
  sameLength,
  type Aggregation,
  type NumArray,
} from './common.js';

const AGG_KEYS = ['aggregation', 'seqLengths', 'lengthNormalizer'];

/** The aggregation options of a loss's input. */
export interface AggregationInput {
  aggregation?: Aggregation;
  seqLengths?: NumArray;
  /** the constant of 'seq-mean-token-sum-norm' */
  lengthNormalizer?: number;
}

/** The per-token weights of `input.aggregation` (default `fallback`) over the valid tokens of `mask`. */
function lossWeights(
  fn: string,
  a: ReturnType<typeof args>,
  mask: NumArray,
  input: AggregationInput,
  fallback: Aggregation,
): Float64Array {
  return aggregationWeights(
    fn,
    mask,
    a.oneOf('aggregation', AGGREGATIONS, fallback),
    input.seqLengths,
    input.lengthNormalizer,
  );
}

/** The inputs both policy losses validate: log-probs, advantages and mask of one length, ε and ε_high. */
function policyLossInputs(
  fn: string,
  a: ReturnType<typeof args>,
): { logp: NumArray; oldLogp: NumArray; adv: NumArray; mask: NumArray; eps: number; epsHigh: number } {
  const logp = a.array('logp');
  const oldLogp = a.array('oldLogp');
  const adv = a.array('advantages');
  const mask = a.mask('mask');
  sameLength(fn, 'logp', logp, 'oldLogp', oldLogp);
  sameLength(fn, 'logp', logp, 'advantages', adv);
  sameLength(fn, 'logp', logp, 'mask', mask);
  const eps = a.number('clipEps', { gt: 0, lt: 1 });
  return { logp, oldLogp, adv, mask, eps, epsHigh: a.number('clipEpsHigh', { gt: 0 }, eps) };
}

export interface PpoPolicyLossResult {
  loss: number;
  /** ∂loss/∂logp_t */
  dLogp: Float64Array;
  /** fraction of valid tokens where the ratio clip is active (its gradient is 0) */
  clipFraction: number;
  /** fraction of valid tokens (A < 0) bounded by the dual clip −c·A (gradient 0); 0 without dualClip */
  dualClipFraction: number;
  /** token mean of (ρ − 1) − log ρ, the k3 estimate of KL(π_old ‖ π_θ) on tokens sampled from π_old */
  approxKl: number;
}

/**
 * Clipped surrogate policy loss (docs/algorithms.md §1.3):
 *
 *   ρ_t = exp(logp_t − oldLogp_t),
 *   ℓ_t = −min(ρ_t A_t, clip(ρ_t, 1 − ε, 1 + ε_high) A_t),
 *   dual clip (c > 1, only where A_t < 0):  ℓ_t = min(ℓ_t, −c · A_t),
 *
 *   ∂ℓ_t/∂logp_t = −A_t ρ_t where the unclipped term is selected, exactly 0 where a clip is active.
 *
 * Claim 11: inside [1 − ε, 1 + ε_high] ℓ_t = −ρ_t A_t; for A > 0 and ρ > 1 + ε_high, or A < 0 and
 * ρ < 1 − ε, the token's gradient is exactly 0. Claim 12: with logp = oldLogp, ρ = 1 everywhere.
 * A clip is counted "active" when the clipped term is strictly smaller (TRL's `pg_clipfrac`).
 * @param input.clipEps ε in (0, 1)
 * @param input.clipEpsHigh optional upper ε_high > 0 ("clip-higher", DAPO); default ε
 * @param input.dualClip optional c > 1 (OpenRLHF/veRL use 3)
 */
export function ppoPolicyLoss(
  input: {
    logp: NumArray;
    oldLogp: NumArray;
    advantages: NumArray;
    mask: NumArray;
    clipEps: number;
    clipEpsHigh?: number;
    dualClip?: number;
  } & AggregationInput,
): PpoPolicyLossResult {
  const fn = 'ppoPolicyLoss';
  const a = args(fn, input, [
    'logp',
    'oldLogp',
    'advantages',
    'mask',
    'clipEps',
    'clipEpsHigh',
    'dualClip',
    ...AGG_KEYS,
  ]);
  const { logp, oldLogp, adv, mask, eps, epsHigh } = policyLossInputs(fn, a);
  const dual = a.has('dualClip') ? a.number('dualClip', { gt: 1 }) : undefined;
  const w = lossWeights(fn, a, mask, input, 'token-mean');

  const lo = 1 - eps,
    hi = 1 + epsHigh;
  const n = logp.length;
  const dLogp = new Float64Array(n);
  const clipped = new Float64Array(n),
    dualClipped = new Float64Array(n),
    kl = new Float64Array(n);
  let loss = 0;
  for (let t = 0; t < n; t++) {
    if (!mask[t]) continue;
    const logRatio = logp[t] - oldLogp[t];
    const rho = Math.exp(logRatio);
    const A = adv[t];
    const s1 = rho * A;
    const s2 = Math.min(hi, Math.max(lo, rho)) * A;
    let l: number, g: number;
    if (s2 < s1) ((l = -s2), (g = 0), (clipped[t] = 1));
    else ((l = -s1), (g = A === 0 ? 0 : -A * rho));
    if (dual !== undefined && A < 0 && -dual * A < l) ((l = -dual * A), (g = 0), (dualClipped[t] = 1));
    loss += w[t] * l;
    dLogp[t] = w[t] * g;
    kl[t] = rho - 1 - logRatio;
  }
  return {
    loss,
    dLogp,
    clipFraction: maskedMean(clipped, mask),
    dualClipFraction: maskedMean(dualClipped, mask),
    approxKl: maskedMean(kl, mask),
  };
}

/**
 * GSPO policy loss (Zheng et al. 2025, "Group Sequence Policy Optimization", eq. 5–7): one
 * importance ratio per sequence, the geometric mean of its token ratios, clipped per sequence:
 *
 *   s_i = (π_θ(y_i|x) / π_old(y_i|x))^(1/|y_i|) = exp((1/|y_i|) Σ_t (logp_t − oldLogp_t)),
 *   J = (1/G) Σ_i min(s_i A_i, clip(s_i, 1 − ε, 1 + ε_high) A_i)      (loss = −J),
 *
 * generalised to per-token A_t and aggregation weights w_t as ℓ_t = −min(s_i A_t, clip(s_i) A_t),
 * loss = Σ_t w_t ℓ_t; ∂loss/∂logp_u = −(s_i/|y_i|) Σ_{t∈i, not clipped} w_t A_t for u in sequence i
 * (|y_i| counts valid tokens). Default aggregation 'seq-mean-token-mean' (the paper's mean over
 * sequences). `seqLengths` gives the concatenated sequences. clipFraction: valid tokens whose
 * sequence ratio is clipped; approxKl: token mean of (ρ_t − 1) − log ρ_t.
 */
export function gspoPolicyLoss(input: {
  logp: NumArray;
  oldLogp: NumArray;
  advantages: NumArray;
  mask: NumArray;
  seqLengths: NumArray;
  clipEps: number;
  clipEpsHigh?: number;
  aggregation?: Aggregation;
  lengthNormalizer?: number;
}): { loss: number; dLogp: Float64Array; clipFraction: number; approxKl: number } {
  const fn = 'gspoPolicyLoss';
  const a = args(fn, input, ['logp', 'oldLogp', 'advantages', 'mask', 'clipEps', 'clipEpsHigh', ...AGG_KEYS]);
  const { logp, oldLogp, adv, mask, eps, epsHigh } = policyLossInputs(fn, a);
  const w = lossWeights(fn, a, mask, input, 'seq-mean-token-mean');
  const lengths = input.seqLengths;
  const dLogp = new Float64Array(logp.length),
    clipped = new Float64Array(logp.length),
    kl = new Float64Array(logp.length);
  let loss = 0;
  for (let b = 0, off = 0; b < lengths.length; off += lengths[b], b++) {
    let n = 0;
    for (let t = off; t < off + lengths[b]; t++) if (mask[t]) n += 1;
    if (n === 0) continue;
    // the same mean as the native kernel: Σ (d_t / n) in token order
    let mean = 0;
    for (let t = off; t < off + lengths[b]; t++) if (mask[t]) mean += (logp[t] - oldLogp[t]) / n;
    const s = Math.exp(mean),
      sc = Math.min(1 + epsHigh, Math.max(1 - eps, s));
    let wa = 0;
    for (let t = off; t < off + lengths[b]; t++) {
      if (!mask[t]) continue;
      const A = adv[t];
      if (sc * A < s * A) ((loss += w[t] * -sc * A), (clipped[t] = 1));
      else ((loss += w[t] * -s * A), (wa += w[t] * A));
      const lr = logp[t] - oldLogp[t];
      kl[t] = Math.exp(lr) - 1 - lr;
    }
    for (let t = off; t < off + lengths[b]; t++) if (mask[t]) dLogp[t] = (-s * wa) / n;
  }
  return { loss, dLogp, clipFraction: maskedMean(clipped, mask), approxKl: maskedMean(kl, mask) };
}

/**
 * Truncated importance sampling weights (Yao et al. 2025, "Your Efficient RL Framework Secretly
 * Brings You Off-Policy RL Training"; veRL tis_imp_ratio_cap): when rollouts come from a behaviour
 * policy μ other than π_old (another engine, quantised or stale weights), the policy gradient
 *
 *   E_{y~μ}[ min(π_old(y_t)/μ(y_t), C) · ∇ min(r_t A_t, clip(r_t) A_t) ],   r_t = π_θ/π_old,
 *
 * corrects the mismatch with a weight truncated at C (bounded variance). Returns
 * w_t = min(exp(oldLogp_t − behaviourLogp_t), C) on valid tokens, 0 elsewhere (a constant factor of
 * each token's loss weight, no gradient). cap C >= 1.
 */
export function truncatedImportanceWeights(input: {
  oldLogp: NumArray;
  behaviourLogp: NumArray;
  mask: NumArray;
  cap: number;
}): Float64Array {
  const fn = 'truncatedImportanceWeights';
  const a = args(fn, input, ['oldLogp', 'behaviourLogp', 'mask', 'cap']);
  const old = a.array('oldLogp');
  const behaviour = a.array('behaviourLogp');
  const mask = a.mask('mask');
  sameLength(fn, 'oldLogp', old, 'behaviourLogp', behaviour);
  sameLength(fn, 'oldLogp', old, 'mask', mask);
  const cap = a.number('cap', { min: 1 });
  return Float64Array.from(old, (o, t) => (mask[t] ? Math.min(Math.exp(o - behaviour[t]), cap) : 0));
}

/**
 * Clipped value loss (docs/algorithms.md §1.3):
 *
 *   V^c_t = V^old_t + clip(V_t − V^old_t, −ε_v, ε_v),
 *   ℓ_t = ½ max((V_t − G_t)², (V^c_t − G_t)²),
 *   ∂ℓ_t/∂V_t = V_t − G_t where the unclipped error is selected, 0 where the clipped one is larger.
 *
 * Omit `clipEps` for the plain ½(V − G)². `clipFraction`: fraction of valid tokens where the clipped
 * error is strictly larger (TRL's `vf_clipfrac`).
 */
export function ppoValueLoss(
  input: {
    values: NumArray;
    oldValues: NumArray;
    returns: NumArray;
    mask: NumArray;
    clipEps?: number;
  } & AggregationInput,
): { loss: number; dValues: Float64Array; clipFraction: number } {
  const fn = 'ppoValueLoss';
  const a = args(fn, input, ['values', 'oldValues', 'returns', 'mask', 'clipEps', ...AGG_KEYS]);
  const values = a.array('values');
  const oldValues = a.array('oldValues');
  const returns = a.array('returns');
  const mask = a.mask('mask');
  sameLength(fn, 'values', values, 'oldValues', oldValues);
  sameLength(fn, 'values', values, 'returns', returns);
  sameLength(fn, 'values', values, 'mask', mask);
  const eps = a.has('clipEps') ? a.number('clipEps', { gt: 0 }) : Infinity;
  const w = lossWeights(fn, a, mask, input, 'token-mean');

  const n = values.length;
  const dValues = new Float64Array(n),
    clipped = new Float64Array(n);
  let loss = 0;
  for (let t = 0; t < n; t++) {
    if (!mask[t]) continue;
    const v = values[t],
      g = returns[t];
    const vc = oldValues[t] + Math.min(eps, Math.max(-eps, v - oldValues[t]));
    const e1 = (v - g) ** 2,
      e2 = (vc - g) ** 2;
    if (e2 > e1) {
      loss += w[t] * 0.5 * e2;
      clipped[t] = 1;
    } else {
      loss += w[t] * 0.5 * e1;
      dValues[t] = w[t] * (v - g);
    }
  }
  return { loss, dValues, clipFraction: maskedMean(clipped, mask) };
}

/**
 * Entropy bonus as a loss term: `loss = −coef · Σ_t w_t H_t` (minimising it raises entropy),
 * `∂loss/∂H_t = −coef · w_t`; `meanEntropy` is the token mean over valid tokens.
 * @param input.entropy per-token policy entropy (the model's entropy head)
 * @param input.coef >= 0
 */
export function entropyBonus(
  input: {
    entropy: NumArray;
    mask: NumArray;
    coef: number;
  } & AggregationInput,
): { loss: number; dEntropy: Float64Array; meanEntropy: number } {
  const fn = 'entropyBonus';
  const a = args(fn, input, ['entropy', 'mask', 'coef', ...AGG_KEYS]);
  const entropy = a.array('entropy');
  const mask = a.mask('mask');
  sameLength(fn, 'entropy', entropy, 'mask', mask);
  const coef = a.number('coef', { min: 0 });
  const w = lossWeights(fn, a, mask, input, 'token-mean');
  const dEntropy = new Float64Array(entropy.length);
  let loss = 0;
  for (let t = 0; t < entropy.length; t++) {
    if (!mask[t]) continue;
    loss -= coef * w[t] * entropy[t];
    dEntropy[t] = -coef * w[t];
  }
  return { loss, dEntropy, meanEntropy: maskedMean(entropy, mask) };
}
