/**
 * RoPE scaling as transformers computes it (modeling_rope_utils.py), from config.json in either
 * form: the Hub's `rope_theta` + `rope_scaling: {rope_type | type, ...}`, or the newer
 * `rope_parameters: {rope_type, rope_theta, ...}`.
 *
 * rope_type (dim = the rotary dimension, base = rope_theta, default frequencies
 * inv[i] = 1 / base^(2i/dim)):
 * - `default`: inv.
 * - `linear`: inv / factor.
 * - `llama3` (Llama 3.1/3.2/3.3): with wavelen = 2π / inv, L = original_max_position_embeddings:
 *   wavelen > L / low_freq_factor: inv / factor; wavelen < L / high_freq_factor: inv; between:
 *   (1 − s)·inv/factor + s·inv with s = (L / wavelen − low_freq_factor) / (high_freq_factor − low_freq_factor).
 * - `yarn` (Qwen2.5/Qwen3 long context): inv_extrapolation = inv, inv_interpolation = inv / factor,
 *   mixed by a linear ramp over dims between the correction dims of beta_fast (32) and beta_slow (1)
 *   rotations at original_max_position_embeddings (default max_position_embeddings), floored/ceiled
 *   unless `truncate: false`; cos and sin are multiplied by attention_factor (default
 *   0.1·mscale·ln(factor) + 1, or the ratio of the mscale / mscale_all_dim forms when both are given).
 *   `factor` is taken as given (transformers ≥ 4.50; earlier versions derived it from
 *   max_position_embeddings / original_max_position_embeddings when the latter was present).
 * - `dynamic` (dynamic NTK): transformers leaves the frequencies at their default while the sequence
 *   is within max_position_embeddings and rescales the base beyond it, per forward pass. The engine
 *   implements the first part exactly and refuses positions at or past max_position_embeddings
 *   (RlhfError UNSUPPORTED from the native RoPE table) rather than silently differ.
 * Any other rope_type (longrope, ntk, ...), any key a type does not define, and per-layer-type
 * rope_parameters are errors that name the key.
 */
import { ErrorCode, RlhfError } from '../errors.js';

export type RopeType = 'default' | 'linear' | 'dynamic' | 'llama3' | 'yarn';
export const ROPE_TYPES: readonly RopeType[] = ['default', 'linear', 'dynamic', 'llama3', 'yarn'];

/** The RoPE settings of a model (`type: 'default'` and factor 1 when the config has no scaling). */
export interface RopeScaling {
  type: RopeType;
  factor: number;
  /** llama3 */
  lowFreqFactor?: number;
  highFreqFactor?: number;
  /** llama3 (required), yarn and dynamic (optional) */
  originalMaxPositions?: number;
  /** yarn */
  attentionFactor?: number;
  betaFast?: number;
  betaSlow?: number;
  mscale?: number;
  mscaleAllDim?: number;
  truncate?: boolean;
}

type Json = Record<string, unknown>;

const KEYS: Record<RopeType, string[]> = {
  default: [],
  linear: ['factor'],
  dynamic: ['factor', 'original_max_position_embeddings'],
  llama3: ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'],
  yarn: [
    'factor',
    'original_max_position_embeddings',
    'attention_factor',
    'beta_fast',
    'beta_slow',
    'mscale',
    'mscale_all_dim',
    'truncate',
  ],
};
const REQUIRED: Record<RopeType, string[]> = {
  default: [],
  linear: ['factor'],
  dynamic: ['factor'],
  llama3: ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'],
  yarn: ['factor'],
};

function fail(source: string, message: string, code: ErrorCode = ErrorCode.UNSUPPORTED): never {
  throw new RlhfError(code, `${source}: ${message}`);
}

/**
 * Reads rope_theta and the scaling of a config.json object. `defaultTheta`: the architecture's
 * default when neither form gives one. Returns the theta, the scaling, and the partial rotary factor
 * when rope_parameters carries one (transformers ≥ 5 moves it there).
 */
export function parseRope(
  source: string,
  j: Json,
  defaultTheta: number,
): { theta: number; rope: RopeScaling; partialRotaryFactor?: number } {
  const params = j.rope_parameters;
  const scaling = j.rope_scaling;
  let spec: Json | undefined;
  let where = 'rope_scaling';
  let theta: unknown = j.rope_theta ?? defaultTheta;
  let partialRotaryFactor: number | undefined;
  const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (params !== undefined && params !== null) {
    where = 'rope_parameters';
    if (!isObject(params))
      fail(source, `expected rope_parameters to be an object, got ${JSON.stringify(params)}`, ErrorCode.FORMAT);
    const nested = Object.entries(params)
      .filter(([, v]) => isObject(v))
      .map(([k]) => k);
    if (nested.length)
      fail(source, `rope_parameters per layer type (${nested.join(', ')}) is not supported by this architecture`);
    spec = params;
    if (params.rope_theta !== undefined) theta = params.rope_theta;
    if (params.partial_rotary_factor !== undefined) {
      const p = params.partial_rotary_factor;
      if (typeof p !== 'number' || !(p > 0 && p <= 1))
        fail(
          source,
          `rope_parameters.partial_rotary_factor must be in (0, 1], got ${JSON.stringify(p)}`,
          ErrorCode.FORMAT,
        );
      partialRotaryFactor = p;
    }
    if (isObject(scaling)) {
      const a = scaling.rope_type ?? scaling.type ?? 'default',
        b = params.rope_type ?? params.type ?? 'default';
      if (a !== b || scaling.factor !== params.factor)
        fail(
          source,
          `rope_scaling ${JSON.stringify(scaling)} disagrees with rope_parameters ${JSON.stringify(params)}`,
          ErrorCode.FORMAT,
        );
    }
  } else if (scaling !== undefined && scaling !== null) {
    if (!isObject(scaling))
      fail(source, `expected rope_scaling to be an object or null, got ${JSON.stringify(scaling)}`, ErrorCode.FORMAT);
    spec = scaling;
  }
  if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0)
    fail(source, `rope_theta must be a positive number, got ${JSON.stringify(theta)}`, ErrorCode.FORMAT);
  if (spec === undefined) return { theta, rope: { type: 'default', factor: 1 }, partialRotaryFactor };

  const rawType = spec.rope_type ?? spec.type ?? 'default';
  if (typeof rawType !== 'string' || !(ROPE_TYPES as readonly string[]).includes(rawType))
    fail(
      source,
      `${where}.rope_type ${JSON.stringify(rawType)} is not supported (supported: ${ROPE_TYPES.join(', ')})`,
    );
  const type = rawType as RopeType;
  const allowed = new Set([
    'rope_type',
    'type',
    ...(where === 'rope_parameters' ? ['rope_theta', 'partial_rotary_factor'] : []),
    ...KEYS[type],
  ]);
  for (const key of Object.keys(spec))
    if (!allowed.has(key))
      fail(source, `${where}.${key} is not supported with rope_type "${type}" (it would change the model's math)`);
  for (const key of REQUIRED[type])
    if (spec[key] === undefined || spec[key] === null)
      fail(source, `${where}.${key} is required with rope_type "${type}"`, ErrorCode.FORMAT);
  const number = (key: string, min: number, strict = true): number | undefined => {
    const v = spec![key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || (strict ? v <= min : v < min))
      fail(
        source,
        `${where}.${key} must be a number ${strict ? '>' : '>='} ${min}, got ${JSON.stringify(v)}`,
        ErrorCode.FORMAT,
      );
    return v;
  };
  const rope: RopeScaling = { type, factor: type === 'default' ? 1 : number('factor', 0)! };
  if (type !== 'default' && rope.factor < 1)
    fail(source, `${where}.factor must be >= 1, got ${rope.factor}`, ErrorCode.FORMAT);
  const original = number('original_max_position_embeddings', 0);
  if (original !== undefined) {
    if (!Number.isInteger(original))
      fail(source, `${where}.original_max_position_embeddings must be an integer, got ${original}`, ErrorCode.FORMAT);
    rope.originalMaxPositions = original;
  }
  if (type === 'llama3') {
    rope.lowFreqFactor = number('low_freq_factor', 0);
    rope.highFreqFactor = number('high_freq_factor', 0);
    if (rope.highFreqFactor! <= rope.lowFreqFactor!)
      fail(
        source,
        `${where}.high_freq_factor (${rope.highFreqFactor}) must be greater than low_freq_factor (${rope.lowFreqFactor})`,
        ErrorCode.FORMAT,
      );
  }
  if (type === 'yarn') {
    rope.attentionFactor = number('attention_factor', 0);
    rope.betaFast = number('beta_fast', 0);
    rope.betaSlow = number('beta_slow', 0);
    rope.mscale = number('mscale', 0, false);
    rope.mscaleAllDim = number('mscale_all_dim', 0, false);
    const truncate = spec.truncate;
    if (truncate !== undefined && typeof truncate !== 'boolean')
      fail(source, `${where}.truncate must be a boolean, got ${JSON.stringify(truncate)}`, ErrorCode.FORMAT);
    rope.truncate = truncate as boolean | undefined;
    for (const k of Object.keys(rope) as (keyof RopeScaling)[]) if (rope[k] === undefined) delete rope[k];
  }
  return { theta, rope, partialRotaryFactor };
}

/** The rope_scaling object to write back to config.json (null for default). */
export function ropeToHF(rope: RopeScaling): Json | null {
  if (rope.type === 'default') return null;
  const out: Json = { rope_type: rope.type, factor: rope.factor };
  if (rope.lowFreqFactor !== undefined) out.low_freq_factor = rope.lowFreqFactor;
  if (rope.highFreqFactor !== undefined) out.high_freq_factor = rope.highFreqFactor;
  if (rope.originalMaxPositions !== undefined) out.original_max_position_embeddings = rope.originalMaxPositions;
  if (rope.attentionFactor !== undefined) out.attention_factor = rope.attentionFactor;
  if (rope.betaFast !== undefined) out.beta_fast = rope.betaFast;
  if (rope.betaSlow !== undefined) out.beta_slow = rope.betaSlow;
  if (rope.mscale !== undefined) out.mscale = rope.mscale;
  if (rope.mscaleAllDim !== undefined) out.mscale_all_dim = rope.mscaleAllDim;
  if (rope.truncate !== undefined) out.truncate = rope.truncate;
  return out;
}

const f32 = Math.fround;

/** The default frequencies in transformers' float32 arithmetic. */
function defaultInvFreq(dim: number, theta: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < dim / 2; i++) out.push(f32(1 / f32(theta ** f32((2 * i) / dim))));
  return out;
}

/**
 * The frequencies (rotaryDim/2, float32), the cos/sin factor and the position limit (0: none) of a
 * scaled RoPE; `invFreq` is undefined for the default (the native table computes it from theta).
 */
export function ropeFrequencies(
  rotaryDim: number,
  theta: number,
  rope: RopeScaling,
  maxPositions: number,
): { invFreq: Float32Array | undefined; attentionScaling: number; positionLimit: number } {
  const dim = rotaryDim;
  const inv = defaultInvFreq(dim, theta);
  const factor = rope.factor;
  switch (rope.type) {
    case 'default':
      return { invFreq: undefined, attentionScaling: 1, positionLimit: 0 };
    case 'dynamic':
      return {
        invFreq: undefined,
        attentionScaling: 1,
        positionLimit: Math.min(maxPositions, rope.originalMaxPositions ?? maxPositions),
      };
    case 'linear':
      return { invFreq: Float32Array.from(inv, (v) => v / factor), attentionScaling: 1, positionLimit: 0 };
    case 'llama3': {
      const old = rope.originalMaxPositions!,
        low = rope.lowFreqFactor!,
        high = rope.highFreqFactor!;
      const lowWavelen = old / low,
        highWavelen = old / high;
      const out = inv.map((v) => {
        const wavelen = (2 * Math.PI) / v;
        const scaled = wavelen > lowWavelen ? v / factor : v;
        if (wavelen < highWavelen || wavelen > lowWavelen) return scaled;
        const s = (old / wavelen - low) / (high - low);
        return ((1 - s) * scaled) / factor + s * scaled;
      });
      return { invFreq: Float32Array.from(out), attentionScaling: 1, positionLimit: 0 };
    }
    case 'yarn': {
      const original = rope.originalMaxPositions ?? maxPositions;
      const mscaleOf = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      const attention =
        rope.attentionFactor ??
        (rope.mscale && rope.mscaleAllDim
          ? mscaleOf(factor, rope.mscale) / mscaleOf(factor, rope.mscaleAllDim)
          : mscaleOf(factor));
      const betaFast = rope.betaFast || 32,
        betaSlow = rope.betaSlow || 1;
      const correctionDim = (rotations: number) =>
        (dim * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
      let lo = correctionDim(betaFast),
        hi = correctionDim(betaSlow);
      if (rope.truncate !== false) ((lo = Math.floor(lo)), (hi = Math.ceil(hi)));
      lo = Math.max(lo, 0);
      hi = Math.min(hi, dim - 1);
      if (lo === hi) hi += 0.001;
      const out = inv.map((v, i) => {
        const posFreq = f32(theta ** f32((2 * i) / dim));
        const extrapolation = 1 / posFreq,
          interpolation = 1 / (factor * posFreq);
        const ramp = Math.min(1, Math.max(0, (i - lo) / (hi - lo)));
        const extra = 1 - ramp;
        return interpolation * (1 - extra) + extrapolation * extra;
      });
      return { invFreq: Float32Array.from(out), attentionScaling: attention, positionLimit: 0 };
    }
  }
}
