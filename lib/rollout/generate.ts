/**
 * Rollouts: n samples per prompt from a policy, with the log-prob of every sampled token (the
 * policy at sampling time, π_old — bit-identical to what forward recomputes), the decoded text and
 * the finish reason. Samples of prompt p are rows p·n … p·n + n − 1 (group-contiguous, as the group
 * advantages expect). Row r samples from Philox stream streamBase + r of `seed` (or streams[r]), so a
 * rollout is a function of (weights, prompts, seed, streams) alone — what makes resumed runs identical.
 */
import type { Model } from '../engine/model.js';
import { options, typeError } from '../validate.js';
import { encodePrompt, type Prompt, type PromptRecord } from '../data/index.js';
import type { ChatMessage, Tokenizer } from '../tokenizer/index.js';

export interface SamplingOptions {
  maxNewTokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
}

export interface RolloutSample {
  promptIndex: number;
  promptIds: Int32Array;
  responseIds: Int32Array;
  /** log π_old(token) per response token */
  logprobs: Float32Array;
  text: string;
  finishReason: 'stop' | 'length';
  /** multi-turn (lib/rollout/environment.ts): 1 for each response token the policy sampled, 0 for
   * the environment's (observations and the chat template around them); absent: every token is the policy's */
  lossMask?: Uint8Array;
  /** multi-turn: the episode's reward from the environment (added to the reward source's score) */
  envReward?: number;
  /** multi-turn: the conversation after the prompt, assistant turns and observations (`text` is the last assistant turn) */
  turns?: ChatMessage[];
}

export interface Rollout {
  prompts: PromptRecord[];
  samplesPerPrompt: number;
  samples: RolloutSample[];
}

/**
 * Decodes a response, dropping ids the tokenizer does not know: a model's vocabulary is often
 * padded beyond its tokenizer's (Qwen2: 151936 vs 151665), and a sampled padding id has no text.
 */
export function decodeResponse(tokenizer: Tokenizer, ids: Int32Array): string {
  const known = ids.filter((id) => id < tokenizer.vocabSize);
  return tokenizer.decode(known, { skipSpecialTokens: true });
}

export async function generateRollout(opts: {
  policy: Model;
  tokenizer: Tokenizer;
  prompts: PromptRecord[];
  /** n (default 1) */
  samplesPerPrompt?: number;
  sampling: SamplingOptions;
  /** default 0 */
  seed?: number;
  streamBase?: number;
  /** one Philox stream per row (prompt p, sample j is row p·n + j) instead of streamBase + r */
  streams?: number[];
  /** rows per generate() call (default: all; rounded down to whole groups of n when >= n) */
  batchSize?: number;
}): Promise<Rollout> {
  const fn = 'generateRollout';
  const o = options(fn, 'options', opts);
  o.known([
    'policy',
    'tokenizer',
    'prompts',
    'samplesPerPrompt',
    'sampling',
    'seed',
    'streamBase',
    'streams',
    'batchSize',
  ]);
  const { policy, tokenizer, prompts } = opts;
  if (!Array.isArray(prompts) || prompts.length === 0)
    throw typeError(fn, 'options.prompts', 'a non-empty array of {prompt} records', prompts);
  const n = o.int('samplesPerPrompt', { min: 1 }, 1);
  const seed = o.int('seed', { min: 0 }, 0);
  const batch0 = o.int('batchSize', { min: 1 }, Number.MAX_SAFE_INTEGER);
  options(fn, 'options.sampling', opts.sampling).int('maxNewTokens', { min: 1 });
  const promptIds = prompts.map((p) => Int32Array.from(encodePrompt(tokenizer, p.prompt as Prompt)));
  const rows = prompts.flatMap((_, p) => Array.from({ length: n }, () => p));
  if (opts.streams !== undefined) {
    if (o.has('streamBase'))
      throw typeError(fn, 'options.streams', 'not given together with options.streamBase', opts.streams);
    if (!Array.isArray(opts.streams) || opts.streams.length !== rows.length)
      throw typeError(fn, 'options.streams', `an array of ${rows.length} stream ids (one per row)`, opts.streams);
  }
  // whole groups per generate() call where batchSize allows: the n samples of a prompt then share
  // one prefill (Model.generate prefills identical prompts once); the samples do not depend on it
  const batch = Math.min(batch0 >= n ? Math.floor(batch0 / n) * n : batch0, rows.length);
  const samples: RolloutSample[] = [];
  for (let r0 = 0; r0 < rows.length; r0 += batch) {
    const chunk = rows.slice(r0, r0 + batch);
    const out = await policy.generate({
      prompts: chunk.map((p) => promptIds[p]),
      maxNewTokens: opts.sampling.maxNewTokens,
      temperature: opts.sampling.temperature ?? 1,
      topP: opts.sampling.topP ?? 1,
      topK: opts.sampling.topK ?? 0,
      seed,
      ...(opts.streams
        ? { streams: opts.streams.slice(r0, r0 + batch) }
        : { streamOffset: (opts.streamBase ?? 0) + r0 }),
      stopTokens: tokenizer.stopIds,
    });
    out.forEach((g, i) => {
      const stop = g.finishReason === 'stop';
      samples.push({
        promptIndex: chunk[i],
        promptIds: promptIds[chunk[i]],
        responseIds: g.tokens,
        logprobs: g.logprobs,
        text: decodeResponse(tokenizer, stop ? g.tokens.subarray(0, g.tokens.length - 1) : g.tokens),
        finishReason: g.finishReason,
      });
    });
  }
  return { prompts, samplesPerPrompt: n, samples };
}
