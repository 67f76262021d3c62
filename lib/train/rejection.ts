/**
 * Rejection sampling / best-of-n (the SFT-data side of RLHF pipelines): for every prompt, n samples
 * from the policy are scored by a reward source and the highest-scoring one becomes an SFT record
 * {prompt, completion}, ready for SFTTrainer (and, with `writeTo`, a JSONL file that loadSftFile
 * reads). Sampling is a function of (policy weights, prompts, seed): row r of the rollout draws from
 * Philox stream r, the n samples of prompt p being rows p·n … p·n + n − 1.
 */
import { parseSftRecord, writeJsonl, type Prompt, type SftRecord } from '../data/index.js';
import { options } from '../validate.js';
import { bestWorst, sampleAndScore, type SampleOptions } from './preference-online.js';

/** Options of {@link bestOfN}: the sampling options plus an optional output path. */
export interface BestOfNOptions extends SampleOptions {
  /** also write the records as JSONL here ({prompt, completion, score, spread} per line) */
  writeTo?: string;
}

/** The best of n samples of one prompt. */
export interface BestOfNRecord {
  prompt: Prompt;
  /** the highest-scoring sample (the first one among equal maxima) */
  completion: string;
  score: number;
  /** max − min of the prompt's n scores (0: the reward could not tell the samples apart) */
  spread: number;
  /** why the chosen sample ended: its stop token, or maxNewTokens */
  finishReason: 'stop' | 'length';
}

const KEYS = ['policy', 'tokenizer', 'prompts', 'reward', 'n', 'sampling', 'seed', 'batchSize', 'writeTo'] as const;

/**
 * Best-of-n rejection sampling. Returns one record per prompt (in prompt order) and the same data
 * as SFTTrainer records (`sft`: a string prompt gives a {prompt, completion} record, a message
 * prompt a conversation ending with the completion as the assistant turn).
 */
export async function bestOfN(opts: BestOfNOptions): Promise<{ records: BestOfNRecord[]; sft: SftRecord[] }> {
  const fn = 'bestOfN';
  const o = options(fn, 'options', opts);
  o.known(KEYS);
  const writeTo = o.has('writeTo') ? o.string('writeTo') : undefined;
  const groups = await sampleAndScore(fn, opts, 'n');
  const records = groups.map((g): BestOfNRecord => {
    const { best, worst } = bestWorst(g.scores);
    return {
      prompt: g.record.prompt,
      completion: g.responses[best],
      score: g.scores[best],
      spread: g.scores[best] - g.scores[worst],
      finishReason: g.finishReasons[best],
    };
  });
  const sft = records.map((r, i) =>
    parseSftRecord({ prompt: r.prompt, completion: r.completion }, `${fn}: record ${i}`),
  );
  if (writeTo)
    await writeJsonl(
      writeTo,
      records.map(({ prompt, completion, score, spread }) => ({ prompt, completion, score, spread })),
    );
  return { records, sft };
}
