/**
 * The shapes Model's calls take and return (lib/engine/model.ts re-exports every one): forward's
 * batch and result, backward's gradients, generate's options and sequences, parameter metadata,
 * and the options of Model.load / Model.save. Types only; the checks live in model-args.ts.
 */
import type { DeviceName } from './device.js';
import type { LoraOptions } from './lora.js';
import type { GgufDType } from '../io/gguf-export.js';

export interface ForwardBatch {
  tokens: Int32Array;
  /** next-token targets, −1 = none (default: no log-probs computed) */
  targets?: Int32Array;
  batch: number;
  seqLen: number;
  /** real length of each row (right padding after it); default seqLen */
  lengths?: Int32Array | number[];
  /** RoPE positions (default 0..seqLen−1 per row; packing restarts them per document) */
  positions?: Int32Array;
  /** packed documents: attention stays within equal ids */
  segments?: Int32Array;
  /** compute the entropy of each next-token distribution */
  entropy?: boolean;
  /** return the scalar head's values (default: true when the model has one) */
  values?: boolean;
  /** return the raw logits (batch·seqLen·vocab floats; small models and tests) */
  logits?: boolean;
  /** divide logits by this before the softmax (default 1) */
  temperature?: number;
  /** keep activations for backward (default true); false for inference-only passes */
  saveForBackward?: boolean;
}

export interface ForwardResult {
  logprobs: Float32Array;
  entropy?: Float32Array;
  values?: Float32Array;
  logits?: Float32Array;
}

export interface BackwardGrads {
  dLogprobs?: Float32Array;
  dEntropy?: Float32Array;
  dValues?: Float32Array;
}

export interface GenerateOptions {
  prompts: Array<Int32Array | number[]>;
  maxNewTokens: number;
  /** 0 = greedy (default 1) */
  temperature?: number;
  /** keep the k most likely tokens (0 = off) */
  topK?: number;
  /** nucleus sampling mass in (0, 1] (1 = off) */
  topP?: number;
  /** row r draws from Philox stream (streamOffset + r) of this seed */
  seed?: number;
  streamOffset?: number;
  /** one Philox stream per prompt, instead of streamOffset + r (rows that must sample as they would alone or in another batch) */
  streams?: number[];
  /** tokens that end a row (default: the config's eos ids) */
  stopTokens?: number[];
  /**
   * true: the static batch (one contiguous KV cache, every prompt prefilled, kept for comparison
   * and benches); default false: a GenerationSession on a paged KV cache where the model allows it
   * (one rank; CPU or CUDA), which prefills identical prompts once. Both give the same tokens and log-probs.
   */
  staticBatch?: boolean;
  /** the session's KV pool dtype (default 'f32'; GenerationSessionOptions.kvDtype); 'bf16' is refused with staticBatch or where no session runs */
  kvDtype?: 'f32' | 'bf16';
}

export interface GeneratedSequence {
  tokens: Int32Array;
  /** log π_T(token) for each generated token: the full tempered distribution softmax(z/T), before top-k/top-p (T = 1 when greedy); forward({temperature: T}) reproduces it */
  logprobs: Float32Array;
  finishReason: 'stop' | 'length';
}

export interface ParameterInfo {
  name: string;
  shape: number[];
  offset: number;
  size: number;
  weightDecayScale: number;
}

/** Where tensor-parallel ranks live: threads of this process, or the processes of the MPI job. */
export type TensorParallelGroup = 'threads' | 'mpi';

export interface LoadOptions {
  /** split the model over this many tensor-parallel ranks (default 1; see native/model/tensor_parallel.h) */
  tensorParallel?: number;
  /**
   * 'threads' (default): the ranks are threads of this process. 'mpi': this process is one rank of
   * its MPI tensor-parallel group (initDistributed({tensorParallel}) first) and holds its shard
   * only (native/model/tensor_parallel_process.h); then forward, backward, generate, getParameter
   * and save are collective over the group, and save writes from the group's rank 0 only.
   */
  tensorParallelGroup?: TensorParallelGroup;
  /** where the weights live and the model runs (default 'cpu'); 'cuda' throws RlhfError ERR_RLHF_UNSUPPORTED,
   * saying why, where the addon has no CUDA backend or no GPU is present (see buildInfo()) */
  device?: DeviceName;
  /** the weights' compute type (default 'f32'). 'bf16' (CPU only): every product with a weight matrix runs
   * the bf16 GEMM (f32 accumulation). Matrices that train keep f32 masters (what AdamW updates) and a bf16
   * copy re-rounded from them after each change (mixed precision); frozen matrices — a LoRA base's, or every
   * one with `trainable: false` — are stored in bf16 only (no f32 copy: getParameter widens them exactly,
   * setParameter rounds to nearest even, a BF16 checkpoint loads its bits as they are) */
  dtype?: WeightDType;
  /** false: a frozen model (a reference or a reward model used for scoring): no gradient storage, and
   * backward, AdamW and a default saveForBackward are refused or off (default true) */
  trainable?: boolean;
  /** load as another supported architecture of the same family, e.g. a CausalLM checkpoint as
   * *ForSequenceClassification for a critic (the LM head is dropped, the score head initialised) */
  architecture?: string;
  /** seed for tensors the checkpoint lacks (the score head of a converted model, new LoRA adapters) */
  seed?: number;
  /** add LoRA adapters (lib/engine/lora.ts); default: those in `<dir>/adapter/` if it holds a PEFT adapter */
  lora?: LoraOptions;
}

export interface SaveOptions {
  /**
   * 'safetensors' (default): a Hugging Face checkpoint directory. 'gguf': one GGUF file at the path
   * given to save() for llama.cpp and Ollama (lib/io/gguf-export.ts: Llama and Qwen2 causal LMs, LoRA
   * merged); then only dtype ('f32' | 'bf16' | 'q8_0'), tokenizer and name apply
   */
  format?: 'safetensors' | 'gguf';
  /** stored dtype: safetensors 'F32' (default) | 'BF16' | 'F16'; gguf 'f32' (default) | 'bf16' | 'q8_0' */
  dtype?: 'F32' | 'BF16' | 'F16' | GgufDType;
  /** gguf: general.name */
  name?: string;
  /** shard above this many bytes (default 2 GiB) */
  maxShardBytes?: number;
  /** extra files to write into the directory (e.g. tokenizer files), called inside the atomic write */
  extraFiles?: (dir: string) => Promise<void>;
  /** the tokenizer to save beside the weights (default: {@link Model.tokenizer}, see {@link Model.save}) */
  tokenizer?: { save(dir: string): Promise<void> };
  /** a LoRA model: write W + (α/r)·B·A as plain weights, no adapter (default false: base + `adapter/`) */
  mergeLora?: boolean;
}

/** The weights' compute type: see {@link LoadOptions.dtype}. */
export type WeightDType = 'f32' | 'bf16';
