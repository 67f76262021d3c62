/**
 * Memory of a training step before it runs: an exact account of the native engine's own buffers
 * (what nativeMemoryInUse / nativeMemoryPeak count) for one model — or, with `tensorParallel`, for
 * one process's shard of a model split over processes — from the
 * formulas the engine allocates by (native/model: transformer.cc forward, backward.cc, heads.cc;
 * native/napi: forward outputs, AdamW moments). Node's own heap and allocator overhead come on
 * top. test/model/memory.test.ts checks every figure against the engine's counters.
 *
 * One step = forward(save) → backward → AdamW. Timeline of the engine's bytes:
 *   resident    parameters + gradients (+ AdamW moments)
 *   forward     + saved activations + LM-head state + forward outputs + forward scratch
 *               (+ LM-head chunks while the logits are computed, freed after)
 *   backward    scratch grows to backward's size (the old buffer is freed first),
 *               + LM-head gradient chunks while the head's backward runs
 * `peak` is the largest of those moments.
 */
import { configFromHF, isModelConfig, type ModelConfig } from './config.js';
import type { LoraConfig } from './lora.js';
import { checkBoolean, checkInt, checkObject } from '../validate.js';
import { estimateKvPool, type KvPoolOptions } from './kv-memory.js';

/** native/model/heads.cc: logits cached for backward while they fit in this many bytes */
const LOGITS_CACHE_BUDGET = 256 * 2 ** 20;
/** native/model/heads.cc kChunkFloats: logits per chunk when they are not cached */
const CHUNK_FLOATS = 8 * 2 ** 20;
const F32 = 4;

export interface TrainingMemoryOptions {
  batch: number;
  seqLen: number;
  /** model.gradientCheckpointing (default false) */
  gradientCheckpointing?: boolean;
  /** an AdamW on the model (default true) */
  optimizer?: boolean;
  /** rows with a target (default batch·seqLen: the upper bound; 0 for a reward model's value-only step) */
  targetRows?: number;
  /** forward({entropy: true}) (default false) */
  entropy?: boolean;
  /** forward({values: true}) (default: the model has a scalar head) */
  values?: boolean;
  /** the model's LoRA adapters (model.lora): moments only for what trains */
  lora?: LoraConfig;
  /**
   * data-parallel ranks (default 1; `--nproc`): `batch` is then the global micro-batch and the
   * estimate is rank 0's, the largest: its share of the rows (⌈batch / nproc⌉, lib/distributed
   * shardRange; targetRows counts its rows) and, with shardOptimizer, AdamW moments for its share of
   * the trainable parameters
   */
  nproc?: number;
  /** ZeRO stage 1 over the nproc ranks (default true, the trainers' default; no effect at nproc 1) */
  shardOptimizer?: boolean;
  /**
   * the model's dtype (default 'f32'). 'bf16': a bf16 copy (2 bytes per parameter) beside the f32 masters
   * of what trains; the frozen matrices (LoRA's base, or all with trainable false) in bf16 only
   */
  dtype?: 'f32' | 'bf16';
  /** model.trainable (default true); false: no gradients, no optimizer (a frozen reference or reward model) */
  trainable?: boolean;
  /** the rollout's generation (Model.generate on a session): sets `kvPool` (lib/engine/kv-memory.ts) */
  rollout?: KvPoolOptions;
  /**
   * tensor-parallel ranks the model is split over (default 1; `--tp`): the estimate is then that of
   * rank 0's shard, the largest (see {@link tensorParallelShard}), which is what each process of a
   * model split over processes holds (`--nproc N --tp K`); thread ranks keep K shards in one process.
   * `batch` stays the data-parallel micro-batch (every rank of a tensor-parallel group runs all of its rows).
   */
  tensorParallel?: number;
}

/**
 * The config of rank `rank`'s shard of a model split over `size` tensor-parallel ranks, as
 * native/model/tensor_parallel.cc ShardPlan::shard_config cuts it: heads / size; KV heads / size,
 * or 1 when size is a multiple of them (each replicated on size / kvHeads ranks); FFN columns and
 * the vocabulary (embedding and LM head rows) split into contiguous ranges, the first ranks one
 * larger. Norms, biases of the row-parallel outputs and a scalar head stay whole on every rank.
 */
export function tensorParallelShard(config: ModelConfig, size: number, rank = 0): ModelConfig {
  const fn = 'tensorParallelShard';
  checkInt(fn, 'size', size, { min: 1 });
  checkInt(fn, 'rank', rank, { min: 0, max: size - 1 });
  if (config.heads % size !== 0 || (config.kvHeads % size !== 0 && size % config.kvHeads !== 0))
    throw new RangeError(
      `${fn}: expected size to divide num_attention_heads (${config.heads}) and to divide num_key_value_heads (${config.kvHeads}) or be a multiple of it, received ${size}`,
    );
  const part = (n: number) => Math.floor(n / size) + (rank < n % size ? 1 : 0);
  return {
    ...config,
    heads: config.heads / size,
    kvHeads: config.kvHeads % size === 0 ? config.kvHeads / size : 1,
    ffn: part(config.ffn),
    vocab: part(config.vocab),
  };
}

/** Bytes, by what holds them. */
export interface MemoryEstimate {
  /** the f32 parameter store (with dtype 'bf16': the masters; the bf16-only matrices are not in it) */
  parameters: number;
  /** dtype 'bf16': the bf16 weights every weight product reads (a copy, or the only store of frozen matrices; 0 at f32) */
  weightCopy: number;
  /** the gradient store: what trains (with LoRA: the adapters, a scalar head, and the frozen norms' sink) */
  gradients: number;
  /** AdamW's first and second moments */
  optimizer: number;
  /** what forward saves for backward (every layer's activations, or only its input when checkpointing) */
  activations: number;
  /** log-sum-exp and entropy per target row, and the cached logits when they fit in 256 MiB */
  lmHead: number;
  /** per-token outputs handed to JavaScript (log-probs, entropy, values) */
  outputs: number;
  /** working memory of forward and backward at its largest (LM-head chunks included) */
  scratchPeak: number;
  /** the most the engine holds at once during the step */
  peak: number;
  /**
   * the KV pool of the rollout's generation (0 without `rollout`). Not in `peak`: generation runs
   * before the step and frees its pool; the most at once while generating is at least resident
   * (parameters … optimizer) + kvPool, plus the session's packed weights and activations
   */
  kvPool: number;
}

/** Parameters of the full (unsharded) model, as native/model/layout.cc lays them out. */
export function parameterCount(c: ModelConfig): number {
  const C = c.hidden,
    qd = c.heads * c.headDim,
    kvd = c.kvHeads * c.headDim;
  const perLayer =
    2 * C +
    (qd + 2 * kvd) * C +
    (c.qkvBias ? qd + 2 * kvd : 0) +
    C * qd +
    (c.oBias ? C : 0) +
    (c.qkNorm ? 2 * c.headDim : 0) +
    (c.sandwichNorms ? 2 * C : 0) +
    3 * c.ffn * C;
  return (
    c.vocab * C + c.layers * perLayer + C + (c.lmHead && !c.tieEmbeddings ? c.vocab * C : 0) + (c.valueHead ? C : 0)
  );
}

/** Parameters of LoRA adapters on the model (A: rank × in and B: out × rank per targeted projection and layer). */
export function loraParameterCount(c: ModelConfig, lora: LoraConfig): number {
  const C = c.hidden,
    qd = c.heads * c.headDim,
    kvd = c.kvHeads * c.headDim,
    F = c.ffn;
  const dims: Record<string, [number, number]> = {
    q_proj: [C, qd],
    k_proj: [C, kvd],
    v_proj: [C, kvd],
    o_proj: [qd, C],
    gate_proj: [C, F],
    up_proj: [C, F],
    gate_up_proj: [C, 2 * F],
    down_proj: [F, C],
  };
  return c.layers * lora.modules.reduce((s, m) => s + lora.rank * (dims[m][0] + dims[m][1]), 0);
}

/** Parameters of the 2-D weight matrices (embedding, projections, an untied LM head; not the scalar head). */
export function matrixParameterCount(c: ModelConfig): number {
  const C = c.hidden,
    qd = c.heads * c.headDim,
    kvd = c.kvHeads * c.headDim;
  return (
    c.vocab * C +
    c.layers * ((qd + 2 * kvd) * C + C * qd + 3 * c.ffn * C) +
    (c.lmHead && !c.tieEmbeddings ? c.vocab * C : 0)
  );
}

/** Floats per token per layer that forward saves without checkpointing (native activation_floats_per_token_per_layer). */
export function activationFloatsPerTokenPerLayer(c: ModelConfig): number {
  const qkNorm = c.qkNorm ? (c.heads + c.kvHeads) * (c.headDim + 1) : 0; // raw q, k and their per-head rstd
  const sandwich = c.sandwichNorms ? 2 * c.hidden + 2 : 0; // attention / MLP outputs before their norms, rstd
  return (
    2 * c.hidden +
    2 +
    (c.heads + 2 * c.kvHeads) * c.headDim +
    c.heads +
    c.heads * c.headDim +
    2 * c.ffn +
    qkNorm +
    sandwich
  );
}

/** `config`: a ModelConfig (model.config) or a Hugging Face config.json object. */
export function estimateTrainingMemory(
  modelConfig: ModelConfig | Record<string, unknown>,
  opts: TrainingMemoryOptions,
): MemoryEstimate {
  const fn = 'estimateTrainingMemory';
  checkObject(fn, 'config', modelConfig);
  const full = isModelConfig(modelConfig) ? modelConfig : configFromHF(modelConfig, `${fn}: config`);
  const o = checkObject(fn, 'options', opts);
  const tp = o.tensorParallel === undefined ? 1 : checkInt(fn, 'options.tensorParallel', o.tensorParallel, { min: 1 });
  if (tp > 1 && o.lora !== undefined)
    throw new RangeError(
      `${fn}: options.lora with options.tensorParallel > 1 (LoRA under tensor parallelism is not implemented)`,
    );
  if (tp > 1 && (full.heads % tp !== 0 || (full.kvHeads % tp !== 0 && tp % full.kvHeads !== 0)))
    throw new RangeError(
      `${fn}: expected options.tensorParallel to divide num_attention_heads (${full.heads}) and to divide num_key_value_heads (${full.kvHeads}) or be a multiple of it, received ${tp}`,
    );
  const config = tp > 1 ? tensorParallelShard(full, tp) : full;
  const nproc = o.nproc === undefined ? 1 : checkInt(fn, 'options.nproc', o.nproc, { min: 1 });
  const shard = o.shardOptimizer === undefined ? true : checkBoolean(fn, 'options.shardOptimizer', o.shardOptimizer);
  // rank 0's share of n items over nproc ranks (shardRange: the first n mod nproc ranks take one more)
  const share = (n: number) => Math.floor(n / nproc) + (n % nproc > 0 ? 1 : 0);
  const B = share(checkInt(fn, 'options.batch', o.batch, { min: 1 }));
  const T = checkInt(fn, 'options.seqLen', o.seqLen, { min: 1 });
  const N = B * T;
  const ckpt =
    o.gradientCheckpointing === undefined
      ? false
      : checkBoolean(fn, 'options.gradientCheckpointing', o.gradientCheckpointing);
  const adam = o.optimizer === undefined ? true : checkBoolean(fn, 'options.optimizer', o.optimizer);
  const entropy = o.entropy === undefined ? false : checkBoolean(fn, 'options.entropy', o.entropy);
  const values = o.values === undefined ? config.valueHead : checkBoolean(fn, 'options.values', o.values);
  const M = config.lmHead
    ? o.targetRows === undefined
      ? N
      : checkInt(fn, 'options.targetRows', o.targetRows, { min: 0, max: N })
    : 0;
  const C = config.hidden,
    F = config.ffn,
    V = config.vocab,
    L = config.layers;
  const QW = (config.heads + 2 * config.kvHeads) * config.headDim,
    AD = config.heads * config.headDim;
  const perLayer = N * activationFloatsPerTokenPerLayer(config);

  const lora = o.lora as LoraConfig | undefined;
  const adapters = lora ? loraParameterCount(config, lora) : 0;
  const P = parameterCount(config) + adapters;
  const isTrainable = o.trainable === undefined ? true : checkBoolean(fn, 'options.trainable', o.trainable);
  // native/model/weight_store.cc allocate_storage: [0, frozen) has no gradients (LoRA's base, or all)
  const frozen = !isTrainable ? P : lora ? parameterCount(config) - (config.valueHead ? C : 0) : 0;
  // with LoRA only the adapters and a scalar head have gradients and moments
  const trainable = P - frozen;
  const dtype = o.dtype === undefined ? 'f32' : o.dtype;
  if (dtype !== 'f32' && dtype !== 'bf16')
    throw new TypeError(`${fn}: expected options.dtype to be 'f32' or 'bf16', received ${JSON.stringify(dtype)}`);
  // bf16 with frozen weights: the frozen matrices in bf16 only (the bf16 store covers [0, frozen)); else a
  // bf16 copy of every parameter beside the f32 masters
  const bf16Only = dtype === 'bf16' && frozen > 0;
  const weightCopy = dtype === 'bf16' ? 2 * (bf16Only ? Math.max(1, frozen) : P) : 0;
  // LoRA: the frozen norms' weight gradients land in a sink as large as the largest of them (or a q bias)
  const qd = config.heads * config.headDim;
  const sink = isTrainable && frozen > 0 ? F32 * Math.max(C, config.qkvBias ? qd : 0) : 0;
  const parameters = F32 * (P - (bf16Only ? matrixParameterCount(config) : 0)),
    gradients = F32 * trainable + sink,
    optimizer = adam && isTrainable ? 2 * F32 * (shard ? share(trainable) : trainable) : 0;
  const activations = F32 * (L * (ckpt ? N * C : perLayer) + N * (2 * C + 1));
  const cached = M * V * F32 <= LOGITS_CACHE_BUDGET;
  const lmHead = M > 0 ? F32 * (2 * M + (cached ? M * V : 0)) : 0;
  const outputs = F32 * N * (1 + (entropy ? 1 : 0) + (values ? 1 : 0));

  // scratch() keeps one buffer that only grows; the layer working set is added when checkpointing
  const layerSet = ckpt ? perLayer + N * C : 0;
  const fwdScratch = F32 * (N * (C + F) + layerSet);
  const bwdScratch = F32 * (N * (3 * C + 4 * F + QW + AD) + layerSet);
  const scratchAfterBwd = Math.max(fwdScratch, bwdScratch);
  // LM-head chunks of R rows: forward z (unless cached) and x; backward z (unless cached), dz, x, dx
  // chunks of the same rows on every rank: sized by the whole vocabulary (heads.cc vocab_total)
  const R = Math.max(1, Math.min(M, Math.floor(CHUNK_FLOATS / full.vocab)));
  const fwdChunks = M > 0 ? F32 * ((cached ? 0 : R * V) + R * C) : 0;
  const bwdChunks = M > 0 ? F32 * ((cached ? 0 : R * V) + R * V + 2 * R * C) : 0;
  // LoRA: x·Aᵀ and its gradient (N × rank each), from the first adapter of the forward on
  const loraBuf = lora ? F32 * 2 * N * lora.rank : 0;
  const scratchPeak = loraBuf + Math.max(fwdScratch + fwdChunks, scratchAfterBwd + bwdChunks);

  const resident = parameters + weightCopy + gradients + optimizer;
  const peak = resident + activations + lmHead + outputs + scratchPeak;
  const kvPool = o.rollout === undefined ? 0 : estimateKvPool(config, o.rollout as KvPoolOptions).bytes;
  return { parameters, weightCopy, gradients, optimizer, activations, lmHead, outputs, scratchPeak, peak, kvPool };
}
