/**
 * Evaluating the demo's policies with the gold function (noise-free) as judge.
 *
 * Each policy answers every eval prompt `samples` times (temperature 1: the policy's distribution,
 * not just its mode). Sample k of the policy is compared with sample k of the SFT policy on the
 * same prompt: a win when its gold score is higher, a tie when equal. winRate counts ties as half.
 * KL(π‖π_sft) per response is estimated by Monte Carlo on the policy's own samples:
 * Σ_t log π(y_t) − log π_sft(y_t), with log π from generation and log π_sft from a forward pass.
 */
import type { Model } from '../engine/model.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { generateRollout } from '../rollout/generate.js';
import { sequenceBatch } from '../rollout/sequences.js';
import { goldScore, type TaskPrompt } from './task.js';

export interface PolicySamples {
  texts: string[][]; // [prompt][k]
  gold: number[][];
  kl: number; // mean per response
  length: number; // mean characters
  /** per prompt: mean KL per response and mean characters over its samples */
  klPerPrompt: number[];
  lengthPerPrompt: number[];
}

export async function samplePolicy(opts: {
  policy: Model;
  sft: Model;
  tokenizer: Tokenizer;
  prompts: TaskPrompt[];
  samples: number;
  maxNewTokens: number;
  seed: number;
}): Promise<PolicySamples> {
  const { policy, sft, tokenizer, prompts, samples } = opts;
  const roll = await generateRollout({
    policy,
    tokenizer,
    prompts: prompts.map((p) => ({ prompt: p.messages })),
    samplesPerPrompt: samples,
    sampling: { maxNewTokens: opts.maxNewTokens, temperature: 1 },
    seed: opts.seed,
  });
  const texts = prompts.map(() => [] as string[]),
    gold = prompts.map(() => [] as number[]);
  for (const s of roll.samples) {
    texts[s.promptIndex].push(s.text);
    gold[s.promptIndex].push(goldScore(prompts[s.promptIndex], s.text).total);
  }
  let kl = 0;
  const klPerPrompt = prompts.map(() => 0),
    lengthPerPrompt = prompts.map(() => 0);
  const chunk = 64;
  for (let i = 0; i < roll.samples.length; i += chunk) {
    const part = roll.samples.slice(i, i + chunk);
    const sb = sequenceBatch(part, tokenizer.padId);
    const f = await sft.forward({
      tokens: sb.tokens,
      targets: sb.targets,
      batch: sb.batch,
      seqLen: sb.seqLen,
      lengths: sb.lengths,
      saveForBackward: false,
    });
    part.forEach((s, b) => {
      let k = 0;
      for (let t = 0; t < s.responseIds.length; t++) k += s.logprobs[t] - f.logprobs[sb.responseStart[b] + t];
      kl += k;
      klPerPrompt[s.promptIndex] += k / samples;
      lengthPerPrompt[s.promptIndex] += s.text.length / samples;
    });
  }
  const n = roll.samples.length;
  return {
    texts,
    gold,
    kl: kl / n,
    length: roll.samples.reduce((a, s) => a + s.text.length, 0) / n,
    klPerPrompt,
    lengthPerPrompt,
  };
}

export interface Comparison {
  winRate: number;
  tieRate: number;
  lossRate: number;
  goldScore: number;
}

export function compare(policy: PolicySamples, baseline: PolicySamples): Comparison {
  let win = 0,
    tie = 0,
    loss = 0,
    total = 0,
    n = 0;
  policy.gold.forEach((row, p) =>
    row.forEach((g, k) => {
      const b = baseline.gold[p][k];
      if (Math.abs(g - b) < 1e-9) tie++;
      else if (g > b) win++;
      else loss++;
      total += g;
      n++;
    }),
  );
  return { winRate: (win + 0.5 * tie) / n, tieRate: tie / n, lossRate: loss / n, goldScore: total / n };
}

export function meanGold(s: PolicySamples): number {
  const all = s.gold.flat();
  return all.reduce((a, b) => a + b, 0) / all.length;
}
