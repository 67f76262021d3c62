/**
 * Reward-model losses: Bradley-Terry with margin and the ChatGLM-RLHF squared-score penalty
 * (docs/algorithms.md §1.1, 2.2), binary correctness cross-entropy for multi-task RMs and per-step
 * cross-entropy for process reward models ("Does RLHF Scale?", docs/algorithms.md §4).
 *
 * All losses are means over the examples; the returned gradients are those of the returned loss.
 */
import { checkOneOf, rangeError } from '../validate.js';
import { args, checkArray, logSigmoid, sameLength, sigmoid, type NumArray } from './common.js';

export interface BradleyTerryResult {
  loss: number;
  /** ∂loss/∂chosen[i] */
  dChosen: Float64Array;
  /** ∂loss/∂rejected[i] */
  dRejected: Float64Array;
  /** fraction of pairs with chosen > rejected (ties count as wrong) */
  accuracy: number;
  /** mean of chosen − rejected (without the margin) */
  meanMargin: number;
}

/**
 * Bradley-Terry pairwise loss (docs/algorithms.md §1.1) with an optional per-pair margin (Llama-2 style) and the
 * squared-score regulariser of ChatGLM-RLHF (docs/algorithms.md §2.2, a zero-mean Gaussian prior on RM scores):
 *
 *   L = mean_i −log σ(r_w,i − r_l,i − m_i) + λ_reg · mean_i (r_w,i² + r_l,i²)
 *
 *   ∂L/∂r_w,i = (−σ(−(r_w,i − r_l,i − m_i)) + 2λ_reg r_w,i) / N,
 *   ∂L/∂r_l,i = ( σ(−(r_w,i − r_l,i − m_i)) + 2λ_reg r_l,i) / N.
 *
 * Without the regulariser the loss is invariant to adding a constant to every score (property 17).
 * @param input.chosen RM scores of the preferred responses
 * @param input.rejected RM scores of the other responses (same length)
 * @param input.margin optional per-pair margins m_i (same length; default 0)
 * @param input.scoreRegularization λ_reg >= 0 (default 0; spec's small-scale default 0.01)
 */
export function bradleyTerryLoss(input: {
  chosen: NumArray;
  rejected: NumArray;
  margin?: NumArray;
  scoreRegularization?: number;
}): BradleyTerryResult {
  const fn = 'bradleyTerryLoss';
  const a = args(fn, input, ['chosen', 'rejected', 'margin', 'scoreRegularization']);
  const chosen = a.array('chosen', undefined, 1);
  const rejected = a.array('rejected');
  sameLength(fn, 'chosen', chosen, 'rejected', rejected);
  const margin = a.has('margin') ? a.array('margin') : undefined;
  if (margin) sameLength(fn, 'chosen', chosen, 'margin', margin);
  const lambda = a.number('scoreRegularization', { min: 0 }, 0);

  const n = chosen.length;
  const dChosen = new Float64Array(n),
    dRejected = new Float64Array(n);
  let loss = 0,
    correct = 0,
    marginSum = 0;
  for (let i = 0; i < n; i++) {
    const w = chosen[i],
      l = rejected[i];
    const d = w - l - (margin ? margin[i] : 0);
    const s = sigmoid(-d);
    loss += (-logSigmoid(d) + lambda * (w * w + l * l)) / n;
    dChosen[i] = (-s + 2 * lambda * w) / n;
    dRejected[i] = (s + 2 * lambda * l) / n;
    if (w > l) correct++;
    marginSum += w - l;
  }
  return { loss, dChosen, dRejected, accuracy: correct / n, meanMargin: marginSum / n };
}

/** Mean binary cross-entropy on σ(score) with its gradient; shared by the two BCE losses. */
function bce(scores: NumArray, labels: NumArray, mask: NumArray | undefined) {
  let count = 0;
  for (let i = 0; i < scores.length; i++) if (!mask || mask[i]) count++;
  const d = new Float64Array(scores.length);
  let loss = 0,
    correct = 0;
  for (let i = 0; i < scores.length; i++) {
    if (mask && !mask[i]) continue;
    const s = scores[i],
      c = labels[i];
    // −[c log σ(s) + (1 − c) log σ(−s)], ∂/∂s = σ(s) − c
    loss -= (c * logSigmoid(s) + (1 - c) * logSigmoid(-s)) / count;
    d[i] = (sigmoid(s) - c) / count;
    if (s > 0 === c >= 0.5) correct++;
  }
  return { loss, d, accuracy: count > 0 ? correct / count : 0, count };
}

/**
 * Binary correctness loss of the multi-task reward model ("Does RLHF Scale?", docs/algorithms.md §4):
 *
 *   L = mean_i −[c_i log σ(s_i) + (1 − c_i) log(1 − σ(s_i))],   ∂L/∂s_i = (σ(s_i) − c_i) / N.
 *
 * Labels are in [0, 1] (soft labels allowed). `accuracy`: fraction with (s > 0) == (c >= 0.5).
 */
export function correctnessLoss(input: { scores: NumArray; labels: NumArray }): {
  loss: number;
  dScores: Float64Array;
  accuracy: number;
} {
  const fn = 'correctnessLoss';
  const a = args(fn, input, ['scores', 'labels']);
  const scores = a.array('scores', undefined, 1);
  const labels = a.array('labels', { min: 0, max: 1 });
  sameLength(fn, 'scores', scores, 'labels', labels);
  const r = bce(scores, labels, undefined);
  return { loss: r.loss, dScores: r.d, accuracy: r.accuracy };
}

/**
 * Process-reward-model loss (docs/algorithms.md §4 PRM): one score per reasoning step (read at the step
 * separator token), binary cross-entropy against step labels in [0, 1] (e.g. from Monte-Carlo
 * rollouts), averaged over the steps with `mask = 1` (default: all). Same formula and gradient as
 * {@link correctnessLoss}, with N = number of counted steps; loss 0 if none.
 */
export function processRewardLoss(input: { stepScores: NumArray; stepLabels: NumArray; mask?: NumArray }): {
  loss: number;
  dStepScores: Float64Array;
  accuracy: number;
  steps: number;
} {
  const fn = 'processRewardLoss';
  const a = args(fn, input, ['stepScores', 'stepLabels', 'mask']);
  const scores = a.array('stepScores');
  const labels = a.array('stepLabels', { min: 0, max: 1 });
  sameLength(fn, 'stepScores', scores, 'stepLabels', labels);
  const mask = a.has('mask') ? a.mask('mask') : undefined;
  if (mask) sameLength(fn, 'stepScores', scores, 'mask', mask);
  const r = bce(scores, labels, mask);
  return { loss: r.loss, dStepScores: r.d, accuracy: r.accuracy, steps: r.count };
}

/** How per-step scores become one sequence reward (docs/algorithms.md §4: min over steps or last step). */
export type ProcessAggregation = 'min' | 'last' | 'mean';

/**
 * Aggregates one response's step scores to a sequence reward: `min` (the weakest step), `last`
 * (the final step) or `mean`. Values are aggregated as given: pass σ(score) to aggregate step
 * probabilities (min and last commute with σ; mean does not).
 */
export function aggregateProcessScores(stepScores: NumArray, how: ProcessAggregation): number {
  const fn = 'aggregateProcessScores';
  const s = checkArray(fn, 'stepScores', stepScores);
  const mode = checkOneOf(fn, 'how', how, ['min', 'last', 'mean'] as const);
  if (s.length === 0) throw rangeError(fn, 'stepScores.length', '>= 1', 0);
  if (mode === 'last') return s[s.length - 1];
  if (mode === 'min') {
    let m = Infinity;
    for (let i = 0; i < s.length; i++) m = Math.min(m, s[i]);
    return m;
  }
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i];
  return sum / s.length;
}
