/**
 * Rewards and advantages for token-level PPO (docs/algorithms.md §1.3, 2.4; properties 13–15): the per-token
 * reward with the KL penalty and the sequence score on the last response token (OpenRLHF
 * `compute_reward`), generalised advantage estimation, masked whitening, and ChatGLM-RLHF's
 * reference-baseline score.
 *
 * Arrays are over ONE sequence's action positions (tokens the policy generated); `mask = 1` marks
 * valid response tokens, 0 marks padding (or anything else that is not an action).
 */
import { checkBoolean, rangeError } from '../validate.js';
import { args, checkArray, checkMask, maskCount, sameLength, type NumArray } from './common.js';

/** Index of the last position with mask = 1 (−1 if none). */
export function lastValidIndex(mask: NumArray): number {
  for (let i = mask.length - 1; i >= 0; i--) if (mask[i]) return i;
  return -1;
}

/**
 * Per-token rewards of one sequence (docs/algorithms.md §1.3,):
 *
 *   r_t = −klCoef · kl_t · m_t + s_t + 1[t = T] · clip(score, −clipScore, clipScore)
 *
 * where T is the last position with mask = 1 (the EOS index) and `kl_t` is the per-token KL
 * estimate (k1 = logπ_old − logπ_ref in the spec; see klPerToken). Masked positions get 0.
 * `stepRewards` s_t (default 0) are rewards at their own positions, e.g. a multi-turn episode's
 * per-turn rewards at the last token of the policy turn each follows; they must be 0 where m_t = 0.
 * Hence Σ_t r_t = R + Σ_t s_t − klCoef · Σ_t m_t kl_t (property 13).
 * @param input.score the sequence score R (e.g. r_φ(x,y) − r_φ(x,y_ref), docs/algorithms.md §2.4)
 * @param input.clipScore optional c > 0: R is clamped to [−c, c] first (OpenRLHF's optional clamp)
 * @throws RangeError when the mask has no valid token (the score would have nowhere to go)
 */
export function tokenRewards(input: {
  score: number;
  kl: NumArray;
  klCoef: number;
  mask: NumArray;
  clipScore?: number;
  stepRewards?: NumArray;
}): {
  rewards: Float64Array;
  /** the position that received the score */
  lastIndex: number;
} {
  const fn = 'tokenRewards';
  const a = args(fn, input, ['score', 'kl', 'klCoef', 'mask', 'clipScore', 'stepRewards']);
  let score = a.number('score');
  const kl = a.array('kl');
  const klCoef = a.number('klCoef', { min: 0 });
  const mask = a.mask('mask');
  sameLength(fn, 'kl', kl, 'mask', mask);
  if (a.has('clipScore')) {
    const c = a.number('clipScore', { gt: 0 });
    score = Math.min(c, Math.max(-c, score));
  }
  const last = lastValidIndex(mask);
  if (last < 0) throw rangeError(fn, 'mask', 'a mask with at least one 1', 'no 1');
  const rewards = new Float64Array(kl.length);
  for (let i = 0; i < kl.length; i++) if (mask[i]) rewards[i] = -klCoef * kl[i];
  rewards[last] += score;
  if (a.has('stepRewards')) {
    const s = a.array('stepRewards');
    sameLength(fn, 'stepRewards', s, 'mask', mask);
    for (let i = 0; i < s.length; i++) {
      if (s[i] !== 0 && !mask[i]) throw rangeError(fn, `stepRewards[${i}]`, '0 where mask is 0', s[i]);
      rewards[i] += s[i];
    }
  }
  return { rewards, lastIndex: last };
}

/**
 * Generalised advantage estimation over the valid positions of one sequence (docs/algorithms.md §1.3):
 *
 *   δ_t = r_t + γ V(s_{t+1}) − V(s_t),   V after the last valid token = 0,
 *   A_t = Σ_{l≥0} (γλ)^l δ_{t+l},        G_t = A_t + V(s_t).
 *
 * Convention: masked positions are not time steps. The recursion runs over the valid positions in
 * order ("t+1" is the next valid position), so a hole in the mask does not leak values; outputs
 * are 0 at masked positions. For the usual right-padded mask this equals OpenRLHF/TRL's GAE.
 * Claim 14: γ = λ = 1 gives A_t = Σ_{t'≥t} r_t' − V_t; λ = 0 gives A_t = δ_t.
 */
export function gae(input: { rewards: NumArray; values: NumArray; mask: NumArray; gamma: number; lambda: number }): {
  advantages: Float64Array;
  returns: Float64Array;
} {
  const fn = 'gae';
  const a = args(fn, input, ['rewards', 'values', 'mask', 'gamma', 'lambda']);
  const rewards = a.array('rewards');
  const values = a.array('values');
  const mask = a.mask('mask');
  sameLength(fn, 'rewards', rewards, 'values', values);
  sameLength(fn, 'rewards', rewards, 'mask', mask);
  const gamma = a.number('gamma', { min: 0, max: 1 });
  const lambda = a.number('lambda', { min: 0, max: 1 });
  const n = rewards.length;
  const advantages = new Float64Array(n),
    returns = new Float64Array(n);
  let nextValue = 0,
    nextAdv = 0;
  for (let t = n - 1; t >= 0; t--) {
    if (!mask[t]) continue;
    const delta = rewards[t] + gamma * nextValue - values[t];
    const adv = delta + gamma * lambda * nextAdv;
    advantages[t] = adv;
    returns[t] = adv + values[t];
    nextValue = values[t];
    nextAdv = adv;
  }
  return { advantages, returns };
}

/**
 * Masked whitening (TRL `masked_whiten`, OpenRLHF advantage normalisation):
 *
 *   y_t = (x_t − μ) / sqrt(σ² + eps)   (+ μ again when shiftMean = false),   masked positions 0,
 *
 * with μ and σ² the mean and POPULATION variance (divide by the count, as OpenRLHF) over
 * positions with mask = 1. TRL uses the Bessel-corrected variance instead; the two differ by a
 * factor n/(n−1), negligible over a batch of tokens. eps defaults to 1e-8.
 * Any finite input is whitened to finite output: when the variance overflows float64 (|x| beyond
 * ~1e154) the same formula is evaluated on x / max|x| (σ² + eps becomes σ²/s² + eps/s²).
 */
export function whiten(x: NumArray, mask: NumArray, opts: { shiftMean?: boolean; eps?: number } = {}): Float64Array {
  const fn = 'whiten';
  checkArray(fn, 'x', x);
  checkMask(fn, 'mask', mask);
  sameLength(fn, 'x', x, 'mask', mask);
  const o = args(fn, opts, ['shiftMean', 'eps']);
  const shiftMean = opts.shiftMean === undefined ? true : checkBoolean(fn, 'shiftMean', opts.shiftMean);
  const eps = o.number('eps', { gt: 0 }, 1e-8);
  const n = maskCount(mask);
  const out = new Float64Array(x.length);
  if (n === 0) return out;
  let mean = 0;
  for (let i = 0; i < x.length; i++) if (mask[i]) mean += x[i] / n;
  let v = 0;
  for (let i = 0; i < x.length; i++) if (mask[i]) v += (x[i] - mean) ** 2 / n;
  if (Number.isFinite(v)) {
    const rstd = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < x.length; i++) if (mask[i]) out[i] = (x[i] - mean) * rstd + (shiftMean ? 0 : mean);
    return out;
  }
  let s = 0;
  for (let i = 0; i < x.length; i++) if (mask[i]) s = Math.max(s, Math.abs(x[i]));
  let ms = 0;
  for (let i = 0; i < x.length; i++) if (mask[i]) ms += x[i] / s / n;
  let vs = 0;
  for (let i = 0; i < x.length; i++) if (mask[i]) vs += (x[i] / s - ms) ** 2 / n;
  const rstd = 1 / Math.sqrt(vs + eps / s / s);
  for (let i = 0; i < x.length; i++) if (mask[i]) out[i] = (x[i] / s - ms) * rstd + (shiftMean ? 0 : mean);
  return out;
}

/**
 * ChatGLM-RLHF's reference baseline (docs/algorithms.md §2.4, property 15): `R_i = score_i − refScore_i`, where
 * refScore is the cached RM score of a response sampled once from the reference policy for the
 * same prompt. A response identical to the cached one gets exactly 0, and at initialisation
 * (π_θ = π_ref) the shaped scores are centred on 0 for every prompt and task.
 */
export function referenceBaselineScores(scores: NumArray, refScores: NumArray): Float64Array {
  const fn = 'referenceBaselineScores';
  checkArray(fn, 'scores', scores);
  checkArray(fn, 'refScores', refScores);
  sameLength(fn, 'scores', scores, 'refScores', refScores);
  const out = new Float64Array(scores.length);
  for (let i = 0; i < scores.length; i++) out[i] = scores[i] - refScores[i];
  return out;
}
