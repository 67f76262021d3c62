/**
 * Gemma 2 / Gemma 3 text configs (lib/engine/config.ts calls these): transformers' Gemma2Config and
 * Gemma3TextConfig defaults, layer types, soft-caps, query_pre_attn_scalar and Gemma 3's RoPE per
 * layer type.
 */
import { ErrorCode } from '../errors.js';
import { fail, int, num, type Json } from '../io/config-read.js';

/** Gemma2Config / Gemma3TextConfig defaults for the keys the engine reads. */
export const GEMMA_DEFAULTS: Record<'gemma2' | 'gemma3', Json> = {
  gemma2: {
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    attention_bias: false,
    tie_word_embeddings: true,
    max_position_embeddings: 8192,
    initializer_range: 0.02,
    partial_rotary_factor: 1,
    head_dim: 256,
    hidden_activation: 'gelu_pytorch_tanh',
    query_pre_attn_scalar: 256,
    sliding_window: 4096,
    final_logit_softcapping: 30.0,
    attn_logit_softcapping: 50.0,
  },
  gemma3: {
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    attention_bias: false,
    tie_word_embeddings: true,
    max_position_embeddings: 131072,
    initializer_range: 0.02,
    partial_rotary_factor: 1,
    head_dim: 256,
    hidden_activation: 'gelu_pytorch_tanh',
    query_pre_attn_scalar: 256,
    sliding_window: 4096,
    final_logit_softcapping: null,
    attn_logit_softcapping: null,
    rope_local_base_freq: 10000,
    sliding_window_pattern: 6,
  },
};

/**
 * Gemma 3 in the form newer transformers write: rope_parameters per layer type,
 * `{full_attention: {rope_type, rope_theta, ...scaling}, sliding_attention: {rope_type: 'default', rope_theta}}`.
 * Returns the config to read the global RoPE from and the local base, or undefined for the flat form.
 */
export function gemma3RopePerLayerType(source: string, j: Json): { global: Json; localTheta: unknown } | undefined {
  const rp = j.rope_parameters;
  const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(rp) || !(isObject(rp.full_attention) || isObject(rp.sliding_attention))) return undefined;
  for (const k of Object.keys(rp))
    if (k !== 'full_attention' && k !== 'sliding_attention')
      fail(source, `rope_parameters.${k}: expected only full_attention and sliding_attention`, ErrorCode.FORMAT);
  const local = isObject(rp.sliding_attention) ? rp.sliding_attention : {};
  const localType = local.rope_type ?? local.type ?? 'default';
  if (localType !== 'default')
    fail(
      source,
      `rope_parameters.sliding_attention.rope_type ${JSON.stringify(localType)} is not supported (only "default")`,
    );
  for (const k of Object.keys(local))
    if (!['rope_type', 'type', 'rope_theta'].includes(k))
      fail(source, `rope_parameters.sliding_attention.${k} is not supported (it would change the model's math)`);
  return {
    global: { ...j, rope_parameters: isObject(rp.full_attention) ? rp.full_attention : null },
    localTheta: local.rope_theta ?? j.rope_local_base_freq,
  };
}

/** Gemma 2 / 3: layer types (layer_types, else Gemma 2's alternation or Gemma 3's sliding_window_pattern),
 * query_pre_attn_scalar, soft-caps and the local RoPE base. */
export function gemmaFields(source: string, j: Json, family: 'gemma2' | 'gemma3', layers: number) {
  let slidingLayers: number[];
  if (j.layer_types !== undefined && j.layer_types !== null) {
    const t = j.layer_types;
    if (
      !Array.isArray(t) ||
      t.length !== layers ||
      !t.every((x) => x === 'sliding_attention' || x === 'full_attention')
    )
      fail(
        source,
        `layer_types must list num_hidden_layers (${layers}) entries of "sliding_attention" or "full_attention", got ${JSON.stringify(t)}`,
        ErrorCode.FORMAT,
      );
    slidingLayers = t.map((x) => (x === 'sliding_attention' ? 1 : 0));
  } else {
    // Gemma 2: even layers slide; Gemma 3: every layer but each sliding_window_pattern-th
    const pattern = family === 'gemma2' ? 2 : int(source, j, 'sliding_window_pattern');
    slidingLayers = Array.from({ length: layers }, (_, i) => ((i + 1) % pattern !== 0 ? 1 : 0));
  }
  const cap = (key: string) => (j[key] === null || j[key] === undefined ? 0 : num(source, j, key));
  return {
    slidingLayers,
    attnScale: num(source, j, 'query_pre_attn_scalar') ** -0.5,
    attnSoftcap: cap('attn_logit_softcapping'),
    finalSoftcap: cap('final_logit_softcapping'),
    ropeLocalTheta: family === 'gemma3' ? num(source, j, 'rope_local_base_freq') : 0,
  };
}
