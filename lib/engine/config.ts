/**
 * Model configuration: Hugging Face `config.json` in, the engine's normalised {@link ModelConfig}
 * out (and back). Supported: Llama, Qwen2, Qwen3, Mistral, Gemma 2, Gemma 3 (text) and GLM-4 (transformers' `glm`) causal LMs and their
 * `*ForSequenceClassification` variants with one label (a scalar head: reward models, critics).
 * Missing keys take the transformers defaults of that architecture; RoPE scaling (`rope_scaling` or
 * `rope_parameters`: linear, dynamic within the trained length, llama3, yarn) is read by rope.ts;
 * settings the engine does not implement (other rope types, sliding windows, MLP biases,
 * activations other than SiLU, num_labels > 1) are errors that name the key.
 */
import { ErrorCode } from '../errors.js';
import { parseRope, ropeFrequencies, ropeToHF, type RopeScaling } from './rope.js';
import { fail, int, num, type Json } from '../io/config-read.js';
import { GEMMA_DEFAULTS, gemma3RopePerLayerType, gemmaFields } from './config-gemma.js';

export const SUPPORTED_ARCHITECTURES = [
  'LlamaForCausalLM',
  'Qwen2ForCausalLM',
  'GlmForCausalLM',
  'Qwen3ForCausalLM',
  'MistralForCausalLM',
  'Gemma2ForCausalLM',
  'Gemma3ForCausalLM',
  'Glm4ForCausalLM',
  'LlamaForSequenceClassification',
  'Qwen2ForSequenceClassification',
  'GlmForSequenceClassification',
  'Qwen3ForSequenceClassification',
  'MistralForSequenceClassification',
  'Gemma2ForSequenceClassification',
  'Gemma3ForSequenceClassification',
  'Glm4ForSequenceClassification',
] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];
export type Family = 'llama' | 'qwen2' | 'glm' | 'qwen3' | 'mistral' | 'gemma2' | 'gemma3' | 'glm4';

/** Architecture name prefix of each family (`${prefix}ForCausalLM`, `${prefix}ForSequenceClassification`). */
const ARCH_PREFIX: Record<Family, string> = {
  llama: 'Llama',
  qwen2: 'Qwen2',
  glm: 'Glm',
  qwen3: 'Qwen3',
  mistral: 'Mistral',
  gemma2: 'Gemma2',
  gemma3: 'Gemma3',
  glm4: 'Glm4',
};

/** The engine's view of a model (what native/model/config.h receives, plus token ids). */
export interface ModelConfig {
  architecture: Architecture;
  family: Family;
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  rmsEps: number;
  ropeTheta: number;
  /** RoPE scaling (rope_scaling / rope_parameters); `{type: 'default', factor: 1}` when none */
  rope: RopeScaling;
  rotaryDim: number;
  ropeInterleaved: boolean;
  qkvBias: boolean;
  oBias: boolean;
  fusedGateUp: boolean;
  /** Qwen3: RMSNorm over each query and key head (q_norm, k_norm of head_dim) before RoPE */
  qkNorm: boolean;
  /** Mistral, Gemma: each query of a sliding layer attends to at most this many keys, itself included (0: no window) */
  slidingWindow: number;
  /** 1 per sliding (local) layer, 0 per global one (Gemma's layer_types); empty: every layer slides when slidingWindow > 0 */
  slidingLayers: number[];
  /** Gemma: RMSNorm multiplies by (normOffset + w) = (1 + w); 0 elsewhere */
  normOffset: number;
  /** Gemma: the embeddings are multiplied by this (sqrt(hidden_size) in float32); 1 elsewhere */
  embedScale: number;
  /** norms on the attention and MLP outputs: 0 none, 1 Gemma's names, 2 GLM-4-0414's (native/model/config.h) */
  sandwichNorms: 0 | 1 | 2;
  /** Gemma: GeGLU with the tanh GELU (hidden_activation gelu_pytorch_tanh) instead of SwiGLU */
  geluTanh: boolean;
  /** Gemma: query_pre_attn_scalar^-1/2; 0: head_dim^-1/2 */
  attnScale: number;
  /** Gemma 2: attention logits c·tanh(s/c) (attn_logit_softcapping); 0: none */
  attnSoftcap: number;
  /** Gemma 2: LM logits c·tanh(z/c) (final_logit_softcapping); 0: none */
  finalSoftcap: number;
  /** Gemma 3: the RoPE base of the sliding layers (rope_local_base_freq); 0: the one RoPE of rope_theta */
  ropeLocalTheta: number;
  tieEmbeddings: boolean;
  lmHead: boolean;
  valueHead: boolean;
  maxPositions: number;
  initializerRange: number;
  bosTokenId?: number;
  eosTokenId: number[];
  padTokenId?: number;
  /** the config.json this came from (kept so save() writes back what it did not interpret) */
  hf: Record<string, unknown>;
}

const DEFAULTS: Record<Family, Json> = {
  // transformers LlamaConfig / Qwen2Config / GlmConfig defaults for the keys we read
  llama: {
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    attention_bias: false,
    tie_word_embeddings: false,
    max_position_embeddings: 2048,
    initializer_range: 0.02,
    partial_rotary_factor: 1,
  },
  qwen2: {
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
    max_position_embeddings: 32768,
    initializer_range: 0.02,
    partial_rotary_factor: 1,
  },
  glm: {
    rms_norm_eps: 1.5625e-7,
    rope_theta: 10000,
    attention_bias: true,
    tie_word_embeddings: false,
    max_position_embeddings: 131072,
    initializer_range: 0.02,
    partial_rotary_factor: 0.5,
    head_dim: 128,
  },
  glm4: {
    rms_norm_eps: 1.5625e-7,
    rope_theta: 10000,
    attention_bias: true,
    tie_word_embeddings: false,
    max_position_embeddings: 131072,
    initializer_range: 0.02,
    partial_rotary_factor: 0.5,
    head_dim: 128,
  },
  qwen3: {
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    attention_bias: false,
    tie_word_embeddings: false,
    max_position_embeddings: 32768,
    initializer_range: 0.02,
    partial_rotary_factor: 1,
    head_dim: 128,
  },
  mistral: {
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
    max_position_embeddings: 4096 * 32,
    initializer_range: 0.02,
    partial_rotary_factor: 1,
    sliding_window: 4096,
  },
  ...GEMMA_DEFAULTS,
};

/** Keys a family interprets itself (so MATH_KEYS does not refuse them). */
const FAMILY_KEYS: Partial<Record<Family, string[]>> = {
  gemma2: ['attn_logit_softcapping', 'final_logit_softcapping', 'query_pre_attn_scalar', 'layer_types'],
  gemma3: ['attn_logit_softcapping', 'final_logit_softcapping', 'query_pre_attn_scalar', 'layer_types'],
};
const isGemma = (f: Family) => f === 'gemma2' || f === 'gemma3';
/** GLM-4 and GLM-4-0414: partial interleaved RoPE, fused gate_up_proj, q/k/v biases only */
const isGlm = (f: Family) => f === 'glm' || f === 'glm4';

/**
 * Keys other architectures use that would change the math of these families if set: each maps to
 * the test of a value that leaves the math unchanged (absent, null, or the neutral value).
 */
const MATH_KEYS: Record<string, (v: unknown) => boolean> = {
  attn_logit_softcapping: (v) => v === null,
  final_logit_softcapping: (v) => v === null,
  query_pre_attn_scalar: (v) => v === null,
  layer_types: (v) => Array.isArray(v) && v.every((t) => t === 'full_attention'),
  use_qk_norm: (v) => v === false || v === null,
  qk_layernorm: (v) => v === false || v === null,
  embedding_multiplier: (v) => v === null || v === 1,
  logits_scaling: (v) => v === null || v === 1,
  residual_multiplier: (v) => v === null || v === 1,
  attention_multiplier: (v) => v === null,
  pretraining_tp: (v) => v === null || v === 1,
  use_bidirectional_attention: (v) => v === false || v === null,
};

const MODEL_TYPE: Record<Family, string> = {
  llama: 'llama',
  qwen2: 'qwen2',
  glm: 'glm',
  qwen3: 'qwen3',
  mistral: 'mistral',
  gemma2: 'gemma2',
  gemma3: 'gemma3_text',
  glm4: 'glm4',
};

function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/** Parses a transformers config.json object. `source` names the file in errors. */
/** A parsed ModelConfig (as opposed to a Hugging Face config.json object). */
export function isModelConfig(c: unknown): c is ModelConfig {
  return typeof c === 'object' && c !== null && 'architecture' in c && 'hidden' in c && 'hf' in c;
}

export function configFromHF(hf: unknown, source = 'config.json', architectureOverride?: string): ModelConfig {
  if (hf === null || typeof hf !== 'object' || Array.isArray(hf))
    fail(source, 'expected a JSON object', ErrorCode.FORMAT);
  const raw = hf as Json;
  const archs = raw.architectures;
  const arch = architectureOverride ?? (Array.isArray(archs) ? archs[0] : undefined);
  if (typeof arch !== 'string' || !(SUPPORTED_ARCHITECTURES as readonly string[]).includes(arch))
    fail(
      source,
      `architecture ${JSON.stringify(arch)} is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`,
    );
  const family = (Object.keys(ARCH_PREFIX) as Family[]).find((f) =>
    [`${ARCH_PREFIX[f]}ForCausalLM`, `${ARCH_PREFIX[f]}ForSequenceClassification`].includes(arch),
  )!;
  const j: Json = { ...DEFAULTS[family], ...raw };
  const rejectIf = (cond: boolean, what: string) =>
    cond && fail(source, `${what} is not supported by the engine (architecture ${arch})`);
  rejectIf(j.mlp_bias === true, 'mlp_bias: true');
  rejectIf(j.use_sliding_window === true, 'use_sliding_window: true');
  if (isGemma(family))
    rejectIf(
      j.hidden_activation !== 'gelu_pytorch_tanh',
      `hidden_activation ${JSON.stringify(j.hidden_activation)} (only "gelu_pytorch_tanh")`,
    );
  else
    rejectIf(
      j.hidden_act !== undefined && j.hidden_act !== 'silu',
      `hidden_act ${JSON.stringify(j.hidden_act)} (only "silu")`,
    );
  for (const [key, inert] of Object.entries(MATH_KEYS)) {
    const v = raw[key];
    if (v !== undefined && !FAMILY_KEYS[family]?.includes(key) && !inert(v))
      fail(source, `${key} ${JSON.stringify(v)} changes the model's math and is not implemented for ${arch}`);
  }
  const seqCls = arch.endsWith('ForSequenceClassification');
  if (seqCls) {
    const labels =
      j.num_labels ?? (j.id2label && typeof j.id2label === 'object' ? Object.keys(j.id2label as object).length : 1);
    rejectIf(labels !== 1, `num_labels ${JSON.stringify(labels)} (only 1: a scalar reward or value)`);
  }
  const hidden = int(source, j, 'hidden_size');
  const heads = int(source, j, 'num_attention_heads');
  const kvHeads =
    j.num_key_value_heads === undefined || j.num_key_value_heads === null
      ? heads
      : int(source, j, 'num_key_value_heads');
  // head_dim: the family's default (GLM, Qwen3) or hidden / heads when absent
  const headDim =
    raw.head_dim === undefined || raw.head_dim === null
      ? ((DEFAULTS[family].head_dim as number | undefined) ?? Math.floor(hidden / heads))
      : int(source, j, 'head_dim');
  const perType = family === 'gemma3' ? gemma3RopePerLayerType(source, j) : undefined;
  const { theta, rope, partialRotaryFactor } = parseRope(
    source,
    perType ? perType.global : j,
    DEFAULTS[family].rope_theta as number,
  );
  if (
    partialRotaryFactor !== undefined &&
    raw.partial_rotary_factor !== undefined &&
    raw.partial_rotary_factor !== partialRotaryFactor
  )
    fail(
      source,
      `partial_rotary_factor ${JSON.stringify(raw.partial_rotary_factor)} disagrees with rope_parameters.partial_rotary_factor ${partialRotaryFactor}`,
      ErrorCode.FORMAT,
    );
  const partial = partialRotaryFactor ?? num(source, j, 'partial_rotary_factor');
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0 || rotaryDim > headDim)
    fail(
      source,
      `head_dim × partial_rotary_factor = ${headDim} × ${partial} must give an even rotary dimension in [2, head_dim]`,
      ErrorCode.FORMAT,
    );
  if (heads % kvHeads !== 0)
    fail(
      source,
      `num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`,
      ErrorCode.FORMAT,
    );
  const attentionBias = j.attention_bias === true && family !== 'mistral'; // Mistral's projections have no bias
  // Mistral: sliding_window (MistralConfig default 4096 when absent, null: none) on every layer
  const layers = int(source, j, 'num_hidden_layers');
  const gemma = isGemma(family)
    ? gemmaFields(source, perType ? { ...j, rope_local_base_freq: perType.localTheta } : j, family, layers)
    : undefined;
  const slidingWindow =
    (family === 'mistral' && j.sliding_window !== null) || gemma ? int(source, j, 'sliding_window') : 0;
  return {
    architecture: arch as Architecture,
    family,
    vocab: int(source, j, 'vocab_size'),
    hidden,
    layers,
    heads,
    kvHeads,
    headDim,
    ffn: int(source, j, 'intermediate_size'),
    rmsEps: num(source, j, 'rms_norm_eps'),
    ropeTheta: theta,
    rope,
    rotaryDim,
    ropeInterleaved: isGlm(family),
    qkvBias: family === 'qwen2' ? true : attentionBias,
    oBias: family === 'llama' || family === 'qwen3' || gemma ? attentionBias : false,
    fusedGateUp: isGlm(family),
    qkNorm: family === 'qwen3' || family === 'gemma3',
    slidingWindow,
    slidingLayers: gemma?.slidingLayers ?? [],
    normOffset: gemma ? 1 : 0,
    embedScale: gemma ? Math.fround(Math.sqrt(hidden)) : 1,
    sandwichNorms: gemma ? 1 : family === 'glm4' ? 2 : 0,
    geluTanh: !!gemma,
    attnScale: gemma?.attnScale ?? 0,
    attnSoftcap: gemma?.attnSoftcap ?? 0,
    finalSoftcap: gemma?.finalSoftcap ?? 0,
    ropeLocalTheta: gemma?.ropeLocalTheta ?? 0,
    tieEmbeddings: !seqCls && j.tie_word_embeddings === true,
    lmHead: !seqCls,
    valueHead: seqCls,
    maxPositions: int(source, j, 'max_position_embeddings'),
    initializerRange: typeof j.initializer_range === 'number' ? j.initializer_range : 0.02,
    bosTokenId: typeof j.bos_token_id === 'number' ? j.bos_token_id : undefined,
    eosTokenId: ids(j.eos_token_id),
    padTokenId: typeof j.pad_token_id === 'number' ? j.pad_token_id : undefined,
    hf: { ...raw, architectures: [arch] },
  };
}

/** The config.json to write for a model (the original keys, with the engine's values). */
export function configToHF(c: ModelConfig): Json {
  const out: Json = {
    ...c.hf,
    architectures: [c.architecture],
    model_type: MODEL_TYPE[c.family],
    vocab_size: c.vocab,
    hidden_size: c.hidden,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    head_dim: c.headDim,
    intermediate_size: c.ffn,
    rms_norm_eps: c.rmsEps,
    rope_theta: c.ropeTheta,
    max_position_embeddings: c.maxPositions,
    ...('rope_parameters' in c.hf ? {} : { rope_scaling: ropeToHF(c.rope) }),
    tie_word_embeddings: c.tieEmbeddings,
    ...(isGemma(c.family) ? { hidden_activation: 'gelu_pytorch_tanh' } : { hidden_act: 'silu' }),
    initializer_range: c.initializerRange,
    torch_dtype: 'float32',
  };
  if (isGlm(c.family)) out.partial_rotary_factor = c.rotaryDim / c.headDim;
  if (c.family === 'mistral') out.sliding_window = c.slidingWindow || null;
  if (isGemma(c.family)) {
    out.sliding_window = c.slidingWindow;
    out.layer_types = c.slidingLayers.map((s) => (s ? 'sliding_attention' : 'full_attention'));
  }
  if (c.family !== 'qwen2') out.attention_bias = isGlm(c.family) ? c.qkvBias : c.qkvBias || c.oBias;
  if (c.valueHead) out.num_labels = 1;
  if (c.bosTokenId !== undefined) out.bos_token_id = c.bosTokenId;
  if (c.eosTokenId.length) out.eos_token_id = c.eosTokenId.length === 1 ? c.eosTokenId[0] : c.eosTokenId;
  if (c.padTokenId !== undefined) out.pad_token_id = c.padTokenId;
  return out;
}

/** A config for a model trained from scratch here, in transformers' format (Llama by default). */
export function tinyConfig(o: {
  family?: Family;
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads?: number;
  ffn: number;
  maxPositions?: number;
  valueHead?: boolean;
  tieEmbeddings?: boolean;
  eosTokenId?: number | number[];
  bosTokenId?: number;
  padTokenId?: number;
}): Json {
  const family = o.family ?? 'llama';
  const base = ARCH_PREFIX[family];
  const hf: Json = {
    architectures: [`${base}${o.valueHead ? 'ForSequenceClassification' : 'ForCausalLM'}`],
    model_type: MODEL_TYPE[family],
    vocab_size: o.vocab,
    hidden_size: o.hidden,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads ?? o.heads,
    head_dim: Math.floor(o.hidden / o.heads),
    intermediate_size: o.ffn,
    max_position_embeddings: o.maxPositions ?? 2048,
    tie_word_embeddings: o.tieEmbeddings ?? false,
    rms_norm_eps: 1e-6,
    hidden_act: 'silu',
  };
  if (o.valueHead) hf.num_labels = 1;
  if (o.eosTokenId !== undefined) hf.eos_token_id = o.eosTokenId;
  if (o.bosTokenId !== undefined) hf.bos_token_id = o.bosTokenId;
  if (o.padTokenId !== undefined) hf.pad_token_id = o.padTokenId;
  return hf;
}

/** The per-layer window flags as the native model reads them (an Int32Array). */
export function nativeLayerFields(c: ModelConfig): { slidingLayers: Int32Array } {
  return { slidingLayers: Int32Array.from(c.slidingLayers) };
}

/** The RoPE fields the native model reads beside the config (see native/model/config.h). */
export function nativeRopeFields(c: ModelConfig): {
  ropeInvFreq?: Float32Array;
  ropeAttentionScaling: number;
  ropePositionLimit: number;
} {
  const { invFreq, attentionScaling, positionLimit } = ropeFrequencies(
    c.rotaryDim,
    c.ropeTheta,
    c.rope,
    c.maxPositions,
  );
  return {
    ...(invFreq ? { ropeInvFreq: invFreq } : {}),
    ropeAttentionScaling: attentionScaling,
    ropePositionLimit: positionLimit,
  };
}
