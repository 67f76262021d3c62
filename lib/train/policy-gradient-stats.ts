/**
 * Per-iteration helpers of the policy-gradient loop (lib/train/policy-gradient.ts): the 'rollout'
 * event, row masks, whitening over the policy's tokens, truncated-IS statistics, reward spread.
 */
import type { PromptRecord } from '../data/index.js';
import { tokenRewards, whiten } from '../losses/index.js';
import type { EpisodeSample } from '../rollout/environment.js';
import { responseSlice, type SequenceBatch } from '../rollout/sequences.js';
import type { RolloutEvent } from './events.js';
import type { IterationData } from './policy-gradient-config.js';

/** The 'rollout' event of an iteration: each sample with its reward, KL, mean advantage and length. */
export function rolloutEvent(stage: string, step: number, d: IterationData): RolloutEvent {
  const text = (p: PromptRecord['prompt']) => (typeof p === 'string' ? p : p.map((m) => m.content).join('\n'));
  const samples = d.rollout.samples.map((s, b) => {
    const adv = responseSlice(d.advantages, d.sb, b);
    return {
      prompt: text(d.rollout.prompts[s.promptIndex].prompt),
      // an episode: its turns after the prompt, one "role: text" line each
      response: s.turns ? s.turns.map((m) => `${m.role}: ${m.content}`).join('\n') : s.text,
      reward: d.scores[b],
      kl: d.klPerResponse[b],
      advantage: meanOverPolicyTokens(adv, s.lossMask),
      length: s.responseIds.length,
    };
  });
  return { stage, step, samplesPerPrompt: d.rollout.samplesPerPrompt, samples };
}

/** Mean of a response's values over the policy's tokens (all of them when there is no lossMask; 0 if none). */
function meanOverPolicyTokens(x: Float64Array, lossMask?: Uint8Array): number {
  let sum = 0,
    n = 0;
  x.forEach((v, i) => (!lossMask || lossMask[i]) && ((sum += v), n++));
  return n ? sum / n : 0;
}

/**
 * PPO's per-token rewards of one sample (its response tokens): tokenRewards of its shaped score
 * R, −klCoef·kl on the policy's tokens (`mask`); for an episode with per-turn rewards
 * (turnRewards 'per-turn'), each turn's reward ρ_k at the last token of the policy turn it follows
 * and R − Σ_k ρ_k (the reward source's score and any shaping) at the last token, so the rewards
 * sum to R − klCoef·Σ kl either way.
 */
export function sampleTokenRewards(
  sample: EpisodeSample,
  score: number,
  kl: Float64Array,
  klCoef: number,
  mask: Float64Array,
): Float64Array {
  const steps = sample.turnRewards;
  return tokenRewards({
    score: steps ? score - steps.reduce((a, x) => a + x, 0) : score,
    kl,
    klCoef,
    mask,
    ...(steps ? { stepRewards: steps } : {}),
  }).rewards;
}

/** `mask` (batch layout) with the rows where drop[b] is true zeroed. */
export function maskRows(mask: Float32Array, sb: SequenceBatch, drop: boolean[]): Float32Array {
  return mask.map((m, i) => (drop[Math.floor(i / sb.seqLen)] ? 0 : m));
}

/** The rows' values whitened together (mean 0, std 1 over the policy's tokens, `mask` in batch layout; lib/losses whiten). */
export function whitenRows(rows: Float64Array[], mask: Float32Array, sb: SequenceBatch): Float64Array[] {
  const flat = new Float64Array(rows.reduce((a, r) => a + r.length, 0));
  let o = 0;
  for (const r of rows) (flat.set(r, o), (o += r.length));
  const flatMask = Uint8Array.from(rows.flatMap((_, b) => Array.from(responseSlice(mask, sb, b))));
  const w = whiten(flat, flatMask);
  o = 0;
  return rows.map((r) => w.subarray(o, (o += r.length)));
}

/** Mean and max of the truncated importance weights over response tokens, and the truncated fraction. */
export function isStats(w: Float32Array, sb: SequenceBatch, cap: number): Record<string, number> {
  let sum = 0,
    max = 0,
    capped = 0,
    count = 0;
  for (let b = 0; b < sb.batch; b++)
    for (let i = 0; i < sb.responseLength[b]; i++) {
      const x = w[sb.responseStart[b] + i];
      ((sum += x), (max = Math.max(max, x)), (capped += x >= Math.fround(cap) ? 1 : 0), count++);
    }
  return { isWeightMean: sum / count, isWeightMax: max, isTruncatedFraction: capped / count };
}

/** True when every consecutive group of `size` values is constant. */
export function zeroVariance(x: number[], size: number): boolean {
  for (let i = 0; i < x.length; i++) if (x[i] !== x[i - (i % size)]) return false;
  return true;
}

export function std(x: number[]): number {
  const m = x.reduce((a, b) => a + b, 0) / x.length;
  return Math.sqrt(x.reduce((a, b) => a + (b - m) * (b - m), 0) / x.length);
}
