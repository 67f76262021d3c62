/**
 * The KV pools of a generation: the bytes a GenerationSession allocates (native/model/session.h,
 * kv_block_pool.h), and the pools Model.generate's session takes for a rollout
 * (generate_on_session in native/model/session_step.cc: every request admitted at once, blocks of
 * 16 positions, each prompt prefilled in one chunk, each request's worst case reserved).
 *
 * The layers are grouped by attention window, one pool per group; a block of a group holds
 * blockSize positions of k and v of the group's layers. A request's worst case, as the session
 * reserves it (kv_blocks_kept / kv_blocks_sliding):
 *   - global layers: ⌈(promptLen + maxNewTokens − 1) / blockSize⌉, + 1 copied on write when the
 *     prompt ends mid-block;
 *   - sliding layers (window W): the blocks n = max(W, min(promptLen, W − 1 + chunk)) consecutive
 *     positions touch, ⌊(n − 2) / blockSize⌋ + 2 (chunk: the longest prefill chunk, min(promptLen,
 *     tokenBudget)), at most ⌈(promptLen + maxNewTokens − 1) / blockSize⌉; the pool has one zero
 *     block more.
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
  /** the session's tokenBudget (default: at least promptLen, as Model.generate: one prefill chunk) */
  tokenBudget?: number;
}

/** One pool: the layers of one attention window. */
export interface KvPoolGroup {
  /** the layers' sliding window (0: global layers) */
  window: number;
  layers: number;
  /** blocks that hold every sequence's worst case at once */
  blocks: number;
  /** one block: blockSize positions of the group's layers, k and v */
  blockBytes: number;
  /** blocks · blockBytes, plus one zero block when the group slides */
  bytes: number;
}

export interface KvPoolEstimate {
  /** the session's numBlocks: the global layers' pool (the sliding one's when every layer slides) */
  blocks: number;
  /** the session's windowBlocks: the sliding-window layers' pool (= blocks when no layer slides) */
  windowBlocks: number;
  /** bytes of blockSize positions of every layer (k and v) */
  blockBytes: number;
  /** bytes allocated: every pool's */
  bytes: number;
  /** per pool, the global layers' first */
  groups: KvPoolGroup[];
}

/** The global layers' worst case of one sequence: ⌈(promptLen + maxNewTokens − 1) / blockSize⌉, + 1 copied on write when the prompt ends mid-block. */
export function kvBlocksPerSequence(promptLen: number, maxNewTokens: number, blockSize: number): number {
  return Math.ceil((promptLen + maxNewTokens - 1) / blockSize) + (promptLen % blockSize !== 0 ? 1 : 0);
}

/** The sliding-window layers' worst case of one sequence (window W, prefill chunks of at most tokenBudget). */
export function kvWindowBlocksPerSequence(
  promptLen: number,
  maxNewTokens: number,
  blockSize: number,
  window: number,
  tokenBudget: number,
): number {
  const chunk = Math.min(promptLen, tokenBudget);
  const n = Math.max(window, Math.min(promptLen, window - 1 + chunk));
  return Math.min(
    Math.ceil((promptLen + maxNewTokens - 1) / blockSize),
    Math.floor((n + 2 * blockSize - 2) / blockSize),
  );
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
  const tokenBudget =
    o.tokenBudget === undefined ? promptLen : checkInt(fn, 'options.tokenBudget', o.tokenBudget, { min: 1 });
  const kvDtype = o.kvDtype === undefined ? 'f32' : o.kvDtype;
  if (kvDtype !== 'f32' && kvDtype !== 'bf16')
    throw new TypeError(`${fn}: expected options.kvDtype to be 'f32' or 'bf16', received ${JSON.stringify(kvDtype)}`);
  const W = config.slidingWindow;
  const slides = (l: number) => W > 0 && (config.slidingLayers.length === 0 || config.slidingLayers[l] !== 0);
  const layerBlockBytes = 2 * blockSize * config.kvHeads * config.headDim * (kvDtype === 'bf16' ? 2 : 4);
  const groups: KvPoolGroup[] = [];
  for (const sliding of [false, true]) {
    let layers = 0;
    for (let l = 0; l < config.layers; l++) layers += +(slides(l) === sliding);
    if (layers === 0) continue;
    const perSequence = sliding
      ? kvWindowBlocksPerSequence(promptLen, maxNewTokens, blockSize, W, tokenBudget)
      : kvBlocksPerSequence(promptLen, maxNewTokens, blockSize);
    const blocks = sequences * perSequence;
    const blockBytes = layers * layerBlockBytes;
    groups.push({
      window: sliding ? W : 0,
      layers,
      blocks,
      blockBytes,
      bytes: (blocks + (sliding ? 1 : 0)) * blockBytes,
    });
  }
  return {
    blocks: groups[0].blocks,
    windowBlocks: groups[groups.length - 1].blocks,
    blockBytes: config.layers * layerBlockBytes,
    bytes: groups.reduce((a, g) => a + g.bytes, 0),
    groups,
  };
}
