/**
 * Online data from a policy and a reward source (private to lib/train; the public entry points are
 * PreferenceTrainer.buildPairs and bestOfN):
 *
 *   sampleAndScore   n samples per prompt (generateRollout: group-contiguous, row r on Philox stream
 *                    r of `seed`, so the result is a function of (weights, prompts, seed)), each
 *                    scored by the reward source with its prompt record
 *   pairsFromGroups  best vs worst per prompt (ChatGLM-RLHF DPO data, docs/algorithms.md §2.6; LongReward 5.6),
 *                    prompts whose best and worst scores are equal dropped
 */
import type { Model } from '../engine/model.js';
import {
  loadPromptFile,
  parsePromptRecord,
  type PreferenceRecord,
  type Prompt,
  type PromptRecord,
  type ScoredRecord,
} from '../data/index.js';
import { checkScores, type RewardSource, type ScoreRequest } from '../rewards/types.js';
import { generateRollout, type SamplingOptions } from '../rollout/generate.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { checkInt, checkObject, options, typeError } from '../validate.js';

/** What the online helpers take. */
export interface SampleOptions {
  policy: Model;
  tokenizer: Tokenizer;
  /** prompt records, plain prompt strings, or a JSONL path of {prompt, ...} records */
  prompts: string | Array<PromptRecord | string>;
  reward: RewardSource;
  /** samples per prompt */
  n: number;
  sampling: SamplingOptions;
  seed?: number;
  /** rows per generate() call (default: all) */
  batchSize?: number;
}

/** One prompt's samples: texts (decoded without the stop token), scores and finish reasons. */
export interface SampledGroup {
  record: PromptRecord;
  responses: string[];
  scores: number[];
  finishReasons: Array<'stop' | 'length'>;
}

/** Samples `n` responses per prompt and scores them; one group per prompt, in prompt order. */
export async function sampleAndScore(fn: string, opts: SampleOptions, nKey = 'n'): Promise<SampledGroup[]> {
  const o = options(fn, 'options', opts);
  const n = checkInt(fn, `options.${nKey}`, o.obj[nKey], { min: 1 });
  const seed = o.int('seed', { min: 0 }, 0);
  const batchSize = o.has('batchSize') ? o.int('batchSize', { min: 1 }) : undefined;
  const sampling = checkObject(fn, 'options.sampling', opts.sampling) as unknown as SamplingOptions;
  checkInt(fn, 'options.sampling.maxNewTokens', sampling.maxNewTokens, { min: 1 });
  if (!opts.policy?.config?.lmHead) throw typeError(fn, 'options.policy', 'a causal LM Model', opts.policy);
  if (!opts.reward || typeof opts.reward.score !== 'function')
    throw typeError(fn, 'options.reward', 'a RewardSource ({name, score(batch)})', opts.reward);
  let prompts: PromptRecord[];
  if (typeof opts.prompts === 'string') prompts = await loadPromptFile(opts.prompts);
  else if (Array.isArray(opts.prompts) && opts.prompts.length)
    prompts = opts.prompts.map((p, i) =>
      parsePromptRecord(typeof p === 'string' ? { prompt: p } : p, `${fn}: options.prompts[${i}]`),
    );
  else throw typeError(fn, 'options.prompts', 'a JSONL path or a non-empty array of prompts', opts.prompts);

  const rollout = await generateRollout({
    policy: opts.policy,
    tokenizer: opts.tokenizer,
    prompts,
    samplesPerPrompt: n,
    sampling,
    seed,
    batchSize,
  });
  const requests: ScoreRequest[] = rollout.samples.map((s) => ({
    prompt: prompts[s.promptIndex].prompt as Prompt,
    response: s.text,
    promptIds: s.promptIds,
    responseIds: s.responseIds,
    record: prompts[s.promptIndex],
  }));
  const scores = checkScores(opts.reward, await opts.reward.score(requests), requests.length);
  return prompts.map((record, p) => {
    const rows = rollout.samples.slice(p * n, p * n + n);
    return {
      record,
      responses: rows.map((s) => s.text),
      scores: scores.slice(p * n, p * n + n),
      finishReasons: rows.map((s) => s.finishReason),
    };
  });
}

/** Index of the first maximal and the last minimal score (the stable-sort convention of LongReward's pairs). */
export function bestWorst(scores: ArrayLike<number>): { best: number; worst: number } {
  let best = 0,
    worst = 0;
  for (let i = 1; i < scores.length; i++) {
    if (scores[i] > scores[best]) best = i;
    if (scores[i] <= scores[worst]) worst = i;
  }
  return { best, worst };
}

/** A preference pair built online, with the two scores. */
export interface OnlinePair extends PreferenceRecord {
  chosenScore: number;
  rejectedScore: number;
}

/** Best-vs-worst pairs of the groups (ties dropped) and the groups as scored records. */
export function pairsFromGroups(groups: SampledGroup[]): {
  pairs: OnlinePair[];
  groups: ScoredRecord[];
  droppedTies: number;
} {
  const pairs: OnlinePair[] = [];
  let droppedTies = 0;
  for (const g of groups) {
    const { best, worst } = bestWorst(g.scores);
    if (g.scores[best] === g.scores[worst]) {
      droppedTies++;
      continue;
    }
    pairs.push({
      prompt: g.record.prompt,
      chosen: g.responses[best],
      rejected: g.responses[worst],
      chosenScore: g.scores[best],
      rejectedScore: g.scores[worst],
    });
  }
  return {
    pairs,
    groups: groups.map((g) => ({ prompt: g.record.prompt, responses: g.responses, scores: g.scores })),
    droppedTies,
  };
}
