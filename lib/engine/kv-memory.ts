/**
 * The KV pool of a generation: the bytes a GenerationSession allocates for its block pool
 * (native/model/session.cc), and the pool Model.generate's session takes for a rollout
 * (generate_on_session in native/model/session_step.cc: every request admitted at once, blocks of
 * 16 positions, each request's worst case — GenerationSession::total_blocks: prompt + maxNewTokens
 * − 1 positions, plus one block copied on write when the prompt ends mid-block).
 */
import { configFromHF, isModelConfig, type ModelConfig } from './config.js';
import { checkInt, checkObject } from '../validate.js';

export interface KvPoolOptions {
  /** sequences generated at once: prompts × samples per prompt */
  sequences: number;
  /** prompt tokens (the longest prompt: the pool is then an upper bound) */
  promptLen: number;
  maxNewTokens: number;
  /** token positions per block (default 16, what Model.generate uses) */
  blockSize?: number;
  /** what the pool stores k/v as (default 'f32') */
  kvDtype?: 'f32' | 'bf16';
}

export interface KvPoolEstimate {
  /** blocks that hold every sequence's worst case at once (the session's numBlocks) */
  blocks: number;
  /** bytes of one block: every layer's k and v for blockSize positions */
  blockBytes: number;
  /** bytes allocated: blocks · blockBytes, plus one zero block when every layer slides */
  bytes: number;
}

/** Blocks one sequence may hold: ⌈(promptLen + maxNewTokens − 1) / blockSize⌉, + 1 copied on write when the prompt ends mid-block. */
export function kvBlocksPerSequence(promptLen: number, maxNewTokens: number, blockSize: number): number {
  return Math.ceil((promptLen + maxNewTokens - 1) / blockSize) + (promptLen % blockSize !== 0 ? 1 : 0);
}

/** `config`: a ModelConfig (model.config) or a Hugging Face config.json object. */
export function estimateKvPool(
  modelConfig: ModelConfig | Record<string, unknown>,
  opts: KvPoolOptions,
): KvPoolEstimate {
  const fn = 'estimateKvPool';
  checkObject(fn, 'config', modelConfig);
  const config = isModelConfig(modelConfig) ? modelConfig : configFromHF(modelConfig, `${fn}: config`);
  const o = checkObject(fn, 'options', opts);
  const sequences = checkInt(fn, 'options.sequences', o.sequences, { min: 1 });
  const promptLen = checkInt(fn, 'options.promptLen', o.promptLen, { min: 1 });
  const maxNewTokens = checkInt(fn, 'options.maxNewTokens', o.maxNewTokens, { min: 1 });
  const blockSize = o.blockSize === undefined ? 16 : checkInt(fn, 'options.blockSize', o.blockSize, { min: 1 });
  const kvDtype = o.kvDtype === undefined ? 'f32' : o.kvDtype;
  if (kvDtype !== 'f32' && kvDtype !== 'bf16')
    throw new TypeError(`${fn}: expected options.kvDtype to be 'f32' or 'bf16', received ${JSON.stringify(kvDtype)}`);
  const blocks = sequences * kvBlocksPerSequence(promptLen, maxNewTokens, blockSize);
  const blockBytes = 2 * config.layers * blockSize * config.kvHeads * config.headDim * (kvDtype === 'bf16' ? 2 : 4);
  const everyLayerSlides =
    config.slidingWindow > 0 && (config.slidingLayers.length === 0 || config.slidingLayers.every((s) => s !== 0));
  return { blocks, blockBytes, bytes: (blocks + (everyLayerSlides ? 1 : 0)) * blockBytes };
}
