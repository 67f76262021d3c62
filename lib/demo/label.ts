/**
 * ChatGLM-RLHF's collection step on the demo task: the SFT model answers each training prompt
 * twice, the simulated annotator picks the better answer (with its stated noise), identical pairs
 * are dropped. Also the held-out pairs labelled by the noise-free gold function, on which the
 * reward model's accuracy is measured (pairs whose gold scores tie are left out).
 */
import type { Model } from '../engine/model.js';
import type { PreferenceRecord } from '../data/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { generateRolloutInChunks } from '../rollout/chunked.js';
import type { TrainerEmitter } from '../train/events.js';
import { annotate, goldScore, rng, type TaskPrompt } from './task.js';

export interface LabelledPairs {
  /** annotator-labelled pairs (noisy), for training */
  pairs: PreferenceRecord[];
  /** how often the annotator agreed with the noise-free gold ordering (non-tied pairs) */
  annotatorAgreement: number;
  /** pairs dropped because both answers were identical */
  identical: number;
}

export async function samplePairs(
  opts: {
    model: Model;
    tokenizer: Tokenizer;
    prompts: TaskPrompt[];
    rounds: number;
    maxNewTokens: number;
    seed: number;
    noise?: number;
    gold?: boolean;
  },
  progress?: { emitter: TrainerEmitter; stage: string },
): Promise<LabelledPairs> {
  const { prompts } = opts;
  const roll = await generateRolloutInChunks(
    {
      policy: opts.model,
      tokenizer: opts.tokenizer,
      prompts: Array.from({ length: opts.rounds }, () => prompts.map((p) => ({ prompt: p.messages }))).flat(),
      samplesPerPrompt: 2,
      sampling: { maxNewTokens: opts.maxNewTokens, temperature: 1 },
      seed: opts.seed,
    },
    progress,
  );
  const r = rng(opts.seed + 17);
  const pairs: PreferenceRecord[] = [];
  let identical = 0,
    agree = 0,
    decided = 0;
  for (let i = 0; i < roll.samples.length; i += 2) {
    const p = prompts[roll.samples[i].promptIndex % prompts.length];
    const a = roll.samples[i].text,
      b = roll.samples[i + 1].text;
    if (a === b) {
      identical++;
      continue;
    }
    const ga = goldScore(p, a).total,
      gb = goldScore(p, b).total;
    if (opts.gold && Math.abs(ga - gb) < 0.05) continue; // no gold preference
    const prefersA = opts.gold ? ga > gb : annotate(p, a, b, r, opts.noise ?? 0.1);
    if (Math.abs(ga - gb) >= 0.05) {
      decided++;
      if (prefersA === ga > gb) agree++;
    }
    pairs.push({ prompt: p.messages, chosen: prefersA ? a : b, rejected: prefersA ? b : a });
  }
  return { pairs, annotatorAgreement: decided ? agree / decided : NaN, identical };
}
