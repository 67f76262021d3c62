/**
 * Reward sources. Anything that scores (prompt, response) pairs: a reward model, a rule function,
 * an LLM judge, a remote service. Scores are per response; the trainers turn them into advantages.
 */
import type { Prompt, PromptRecord } from '../data/index.js';

export interface ScoreRequest {
  prompt: Prompt;
  response: string;
  promptIds: Int32Array;
  responseIds: Int32Array;
  /** the prompt's dataset record (extra fields such as a reference answer) */
  record?: PromptRecord;
}

export interface RewardSource {
  readonly name: string;
  score(batch: ScoreRequest[]): Promise<number[]>;
}

/** A plain function (sync or async) as a reward source. */
export function rewardFunction(name: string, fn: (r: ScoreRequest) => number | Promise<number>): RewardSource {
  return {
    name,
    score: async (batch) => Promise.all(batch.map((r) => fn(r))),
  };
}

/**
 * Checks a source returned one finite number per request (with allowNonFinite: one number per
 * request, NaN and ±Infinity let through for the caller's invalid-reward policy).
 */
export function checkScores(
  source: RewardSource,
  scores: unknown,
  n: number,
  opts: { allowNonFinite?: boolean } = {},
): number[] {
  if (!Array.isArray(scores) || scores.length !== n)
    throw new TypeError(
      `reward source "${source.name}": expected ${n} scores, received ${Array.isArray(scores) ? scores.length : typeof scores}`,
    );
  scores.forEach((s, i) => {
    if (typeof s !== 'number' || (!opts.allowNonFinite && !Number.isFinite(s)))
      throw new TypeError(`reward source "${source.name}": score ${i} is ${s}, expected a finite number`);
  });
  return scores as number[];
}
