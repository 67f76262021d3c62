/**
 * Critic-free advantages from sequence rewards ("Does RLHF Scale?", docs/algorithms.md §4: GRPO and
 * group sampling; RLOO; REINFORCE++) and ChatGLM-RLHF's prompt filter (docs/algorithms.md §2.3, property 19).
 *
 * Layout: rewards are group-contiguous, prompt p's n samples at p·n … p·n + n − 1. Each function
 * returns one advantage per sequence; a trainer broadcasts it to the sequence's tokens.
 */
import { checkBoolean, checkNumber, rangeError } from '../validate.js';
import { args, checkArray, checkGroups, type NumArray } from './common.js';

function groupStats(r: NumArray, off: number, n: number): { mean: number; sumSq: number } {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += r[off + i] / n;
  let sumSq = 0;
  for (let i = 0; i < n; i++) sumSq += (r[off + i] - mean) ** 2;
  return { mean, sumSq };
}

/**
 * GRPO advantages (Shao et al. 2024, DeepSeekMath; docs/algorithms.md §4):
 *
 *   A_i = (R_i − mean_g R) / (std_g R + eps)      (scale = true)
 *   A_i =  R_i − mean_g R                          (scale = false: Dr. GRPO, no std division)
 *
 * Convention: std_g is the SAMPLE standard deviation (divide by n − 1), as `torch.std` in TRL's
 * GRPOTrainer, veRL `compute_grpo_outcome_advantage` and OpenRLHF `group_norm`; eps = 1e-6 as in
 * the spec and veRL. A group of identical rewards gets all-zero advantages. With groupSize 1 the
 * std is undefined; following veRL, mean = 0 and std = 1, so A_i = R_i / (1 + eps) (A_i = R_i unscaled).
 */
export function grpoAdvantages(
  rewards: NumArray,
  groupSize: number,
  opts: { eps?: number; scale?: boolean } = {},
): Float64Array {
  const fn = 'grpoAdvantages';
  const r = checkArray(fn, 'rewards', rewards);
  const n = checkGroups(fn, 'rewards', r.length, groupSize);
  const o = args(fn, opts, ['eps', 'scale']);
  const eps = o.number('eps', { min: 0 }, 1e-6);
  const scale = opts.scale === undefined ? true : checkBoolean(fn, 'scale', opts.scale);
  const out = new Float64Array(r.length);
  for (let off = 0; off < r.length; off += n) {
    let mean = 0,
      std = 1;
    if (n > 1) {
      const s = groupStats(r, off, n);
      ((mean = s.mean), (std = Math.sqrt(s.sumSq / (n - 1))));
    }
    for (let i = 0; i < n; i++) out[off + i] = scale ? (r[off + i] - mean) / (std + eps) : r[off + i] - mean;
  }
  return out;
}

/**
 * RLOO advantages (Ahmadian et al. 2024, leave-one-out baseline; TRL RLOOTrainer, veRL `rloo`):
 *
 *   A_i = R_i − (1/(n−1)) Σ_{j≠i} R_j = n/(n−1) · (R_i − mean_g R).
 *
 * Requires groupSize >= 2. Advantages of a group sum to 0.
 */
export function rlooAdvantages(rewards: NumArray, groupSize: number): Float64Array {
  const fn = 'rlooAdvantages';
  const r = checkArray(fn, 'rewards', rewards);
  const n = checkGroups(fn, 'rewards', r.length, groupSize, 2);
  const out = new Float64Array(r.length);
  for (let off = 0; off < r.length; off += n) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += r[off + i];
    for (let i = 0; i < n; i++) out[off + i] = r[off + i] - (sum - r[off + i]) / (n - 1);
  }
  return out;
}

/**
 * REINFORCE++ advantages (Hu 2025; OpenRLHF `reinforce`): batch-level normalisation
 *
 *   A_i = (R_i − mean_batch R) / (std_batch R + eps),   eps = 1e-8 by default,
 *
 * with the POPULATION std (OpenRLHF normalises with the masked population variance). With
 * `groupSize` it is REINFORCE++-baseline (OpenRLHF `reinforce_baseline`): the group mean is
 * subtracted first, then the result is normalised over the batch. A batch of identical values gives 0.
 * (The token-level variant with per-token KL rewards is `whiten` over the discounted returns.)
 */
export function reinforcePlusPlusAdvantages(
  rewards: NumArray,
  opts: { eps?: number; groupSize?: number } = {},
): Float64Array {
  const fn = 'reinforcePlusPlusAdvantages';
  const r = checkArray(fn, 'rewards', rewards, undefined, 1);
  const o = args(fn, opts, ['eps', 'groupSize']);
  const eps = o.number('eps', { min: 0 }, 1e-8);
  const x = Float64Array.from(r);
  if (o.has('groupSize')) {
    const n = checkGroups(fn, 'rewards', r.length, opts.groupSize);
    for (let off = 0; off < r.length; off += n) {
      const { mean } = groupStats(r, off, n);
      for (let i = 0; i < n; i++) x[off + i] -= mean;
    }
  }
  const { mean, sumSq } = groupStats(x, 0, x.length);
  const std = Math.sqrt(sumSq / x.length);
  for (let i = 0; i < x.length; i++) x[i] = (x[i] - mean) / (std + eps);
  return x;
}

/**
 * ChatGLM-RLHF prompt selection (docs/algorithms.md §2.3, property 19): sample k responses per prompt, score them,
 * keep the prompts whose score variance is >= tau (prompts with near-identical responses carry no
 * signal). Convention: the POPULATION variance (divide by k, NumPy's `np.var` default).
 * The spec's small-scale default tau is the 10th percentile of the variances; see
 * {@link varianceQuantile}.
 * @returns the kept prompt indices (ascending) and every prompt's variance
 */
export function filterPromptsByVariance(
  scores: NumArray,
  groupSize: number,
  tau: number,
): { kept: number[]; variances: Float64Array } {
  const fn = 'filterPromptsByVariance';
  const s = checkArray(fn, 'scores', scores);
  const n = checkGroups(fn, 'scores', s.length, groupSize);
  const threshold = checkNumber(fn, 'tau', tau, { min: 0 });
  const variances = new Float64Array(s.length / n);
  const kept: number[] = [];
  for (let p = 0; p < variances.length; p++) {
    variances[p] = groupStats(s, p * n, n).sumSq / n;
    if (variances[p] >= threshold) kept.push(p);
  }
  return { kept, variances };
}

/** The q-quantile (0 ≤ q ≤ 1, linear interpolation as `np.quantile`) of a list of variances. */
export function varianceQuantile(variances: NumArray, q: number): number {
  const fn = 'varianceQuantile';
  const v = Float64Array.from(checkArray(fn, 'variances', variances)).sort();
  const qq = checkNumber(fn, 'q', q, { min: 0, max: 1 });
  if (v.length === 0) throw rangeError(fn, 'variances.length', '>= 1', 0);
  const pos = qq * (v.length - 1),
    lo = Math.floor(pos),
    hi = Math.ceil(pos);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}
