/**
 * Per-token KL estimators between the policy and the reference (docs/algorithms.md §1.3; the k1/k2/k3 of
 * OpenRLHF `compute_approx_kl` and veRL `kl_penalty`, after Schulman's "Approximating KL
 * divergence"). With `d = logp − refLogp` for a token sampled from the policy:
 *
 *   k1 = d                    unbiased for KL(π‖ref), can be negative        ∂/∂logp = 1
 *   k2 = d² / 2               biased, ≥ 0 ("mse")                             ∂/∂logp = d
 *   k3 = exp(−d) − 1 + d      unbiased for KL(π‖ref), ≥ 0 ("low_var_kl")     ∂/∂logp = 1 − exp(−d)
 *
 * Unlike veRL, k3 is not clamped to [−10, 10]: this is the exact reference.
 */
import { checkOneOf } from '../validate.js';
import {
  aggregationWeights,
  AGGREGATIONS,
  args,
  checkArray,
  checkMask,
  maskedMean,
  sameLength,
  type Aggregation,
  type NumArray,
} from './common.js';

export type KlEstimator = 'k1' | 'k2' | 'k3';
export const KL_ESTIMATORS: readonly KlEstimator[] = ['k1', 'k2', 'k3'];

function klAt(d: number, est: KlEstimator): [number, number] {
  if (est === 'k1') return [d, 1];
  if (est === 'k2') return [0.5 * d * d, d];
  const e = Math.exp(-d);
  return [e - 1 + d, 1 - e];
}

/**
 * Per-token KL estimate and its elementwise derivative w.r.t. `logp` (the reference is frozen).
 * Positions with `mask = 0` (optional) get kl = 0 and dLogp = 0.
 * @returns kl[t] and dLogp[t] = ∂kl[t]/∂logp[t], Float64Arrays of the input length
 */
export function klPerToken(
  logp: NumArray,
  refLogp: NumArray,
  estimator: KlEstimator,
  mask?: NumArray,
): { kl: Float64Array; dLogp: Float64Array } {
  const fn = 'klPerToken';
  checkArray(fn, 'logp', logp);
  checkArray(fn, 'refLogp', refLogp);
  sameLength(fn, 'logp', logp, 'refLogp', refLogp);
  const est = checkOneOf(fn, 'estimator', estimator, KL_ESTIMATORS);
  if (mask !== undefined) {
    checkMask(fn, 'mask', mask);
    sameLength(fn, 'logp', logp, 'mask', mask);
  }
  const kl = new Float64Array(logp.length),
    dLogp = new Float64Array(logp.length);
  for (let i = 0; i < logp.length; i++) {
    if (mask && !mask[i]) continue;
    [kl[i], dLogp[i]] = klAt(logp[i] - refLogp[i], est);
  }
  return { kl, dLogp };
}

/**
 * KL as a loss term (GRPO / `use_kl_loss` placement, instead of the reward placement of
 * {@link klPerToken} + tokenRewards): `loss = coef · Σ_t w_t k(logp_t − refLogp_t)` with the
 * aggregation weights w of common.ts (`token-mean` by default). `meanKl` is the token-mean
 * estimate over valid tokens, for logging.
 */
export function klLoss(input: {
  logp: NumArray;
  refLogp: NumArray;
  mask: NumArray;
  coef: number;
  estimator?: KlEstimator;
  aggregation?: Aggregation;
  seqLengths?: NumArray;
  /** the constant of 'seq-mean-token-sum-norm' */
  lengthNormalizer?: number;
}): { loss: number; dLogp: Float64Array; meanKl: number } {
  const fn = 'klLoss';
  const a = args(fn, input, [
    'logp',
    'refLogp',
    'mask',
    'coef',
    'estimator',
    'aggregation',
    'seqLengths',
    'lengthNormalizer',
  ]);
  const logp = a.array('logp');
  const refLogp = a.array('refLogp');
  const mask = a.mask('mask');
  sameLength(fn, 'logp', logp, 'refLogp', refLogp);
  sameLength(fn, 'logp', logp, 'mask', mask);
  const coef = a.number('coef', { min: 0 });
  const est = a.oneOf('estimator', KL_ESTIMATORS, 'k3');
  const agg = a.oneOf('aggregation', AGGREGATIONS, 'token-mean');
  const w = aggregationWeights(fn, mask, agg, input.seqLengths, input.lengthNormalizer);
  const { kl, dLogp } = klPerToken(logp, refLogp, est, mask);
  let loss = 0;
  for (let i = 0; i < logp.length; i++) {
    loss += coef * w[i] * kl[i];
    dLogp[i] *= coef * w[i];
  }
  return { loss, dLogp, meanKl: maskedMean(kl, mask) };
}
