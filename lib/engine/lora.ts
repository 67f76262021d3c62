/**
 * LoRA (Hu et al. 2021) as PEFT defines it: on each targeted projection W (out × in) of every
 * layer, y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ with A (r × in) and B (out × r); B starts at 0 (the model is
 * unchanged at first), A at PEFT's kaiming-uniform variance 1/(3·in). The base weights are frozen:
 * only the adapters (and a scalar head) are trained (native/model/layout.h trainable_begin).
 *
 * On disk (Model.save): the base checkpoint as usual in the directory, the adapter in PEFT's format
 * in `<dir>/adapter/` (adapter_config.json, adapter_model.safetensors with PEFT's tensor names),
 * so `PeftModel.from_pretrained(AutoModel.from_pretrained(dir), dir + "/adapter")` reads it, and
 * Model.load(dir) finds it again. `save(dir, {mergeLora: true})` writes W + (α/r)·B·A instead.
 */
import type { ModelConfig } from './config.js';
import { options, typeError } from '../validate.js';

/** Module names in native bit order (native/model/config.h kLoraModuleNames). */
export const LORA_MODULES = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'gate_up_proj',
  'down_proj',
] as const;
export type LoraModuleName = (typeof LORA_MODULES)[number];

export interface LoraOptions {
  /** r */
  rank: number;
  /** α (default 2·rank); the adapters are scaled by α / r */
  alpha?: number;
  /** the projections to adapt (default ['q_proj', 'v_proj'], PEFT's for Llama), or 'all-linear' */
  modules?: readonly LoraModuleName[] | 'all-linear';
}

export interface LoraConfig {
  rank: number;
  alpha: number;
  modules: LoraModuleName[];
}

/** The tensor-name prefix of adapter weights (PEFT's). */
export const ADAPTER_PREFIX = 'base_model.model.';
export const ADAPTER_DIR = 'adapter';

export function isAdapterTensor(name: string): boolean {
  return name.startsWith(ADAPTER_PREFIX) && /\.lora_[AB]\.weight$/.test(name);
}

/** Every projection of the family (GLM-4 has a fused gate_up_proj; Llama and Qwen2 gate_proj and up_proj). */
export function allLinearModules(cfg: ModelConfig): LoraModuleName[] {
  return cfg.fusedGateUp
    ? ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_up_proj', 'down_proj']
    : ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
}

/** Validates LoRA options against the model; undefined stays undefined. */
export function resolveLora(fn: string, value: unknown, cfg: ModelConfig): LoraConfig | undefined {
  if (value === undefined) return undefined;
  const o = options(fn, 'options.lora', value);
  o.known(['rank', 'alpha', 'modules']);
  const rank = o.int('rank', { min: 1, max: 4096 });
  const alpha = o.number('alpha', { gt: 0 }, 2 * rank);
  const allowed = allLinearModules(cfg);
  let modules: LoraModuleName[];
  if (o.obj.modules === undefined) modules = ['q_proj', 'v_proj'];
  else if (o.obj.modules === 'all-linear') modules = allowed;
  else {
    if (!Array.isArray(o.obj.modules) || o.obj.modules.length === 0)
      throw typeError(
        fn,
        'options.lora.modules',
        `'all-linear' or a non-empty array of ${allowed.join(', ')}`,
        o.obj.modules,
      );
    modules = (o.obj.modules as unknown[]).map((m, i) => {
      if (!allowed.includes(m as LoraModuleName))
        throw typeError(fn, `options.lora.modules[${i}]`, `one of ${allowed.join(', ')} (a ${cfg.architecture})`, m);
      return m as LoraModuleName;
    });
    modules = [...new Set(modules)];
  }
  return { rank, alpha, modules };
}

/** The native config fields for a LoRA config. */
export function nativeLoraFields(lora: LoraConfig | undefined): {
  loraRank: number;
  loraAlpha: number;
  loraModules: number;
} {
  if (!lora) return { loraRank: 0, loraAlpha: 0, loraModules: 0 };
  return {
    loraRank: lora.rank,
    loraAlpha: lora.alpha,
    loraModules: lora.modules.reduce((m, name) => m | (1 << LORA_MODULES.indexOf(name)), 0),
  };
}

/** PEFT's adapter_config.json for this adapter. */
export function adapterConfigJson(lora: LoraConfig, cfg: ModelConfig): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: cfg.valueHead ? 'SEQ_CLS' : 'CAUSAL_LM',
    r: lora.rank,
    lora_alpha: lora.alpha,
    lora_dropout: 0,
    target_modules: lora.modules,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: false,
    inference_mode: false,
    modules_to_save: cfg.valueHead ? ['score'] : null,
    base_model_name_or_path: '..',
  };
}

/** LoRA options back from PEFT's adapter_config.json (`where` names the file in errors). */
export function loraFromAdapterConfig(json: unknown, where: string): LoraOptions {
  const j = json as Record<string, unknown>;
  if (typeof j !== 'object' || j === null || j.peft_type !== 'LORA')
    throw new TypeError(`${where}: not a PEFT LoRA adapter config (peft_type ${JSON.stringify(j?.peft_type)})`);
  if (j.use_rslora === true) throw new TypeError(`${where}: rsLoRA (use_rslora) is not supported`);
  if (j.use_dora === true) throw new TypeError(`${where}: DoRA (use_dora) is not supported`);
  const modules = Array.isArray(j.target_modules)
    ? (j.target_modules as LoraModuleName[])
    : j.target_modules === 'all-linear'
      ? 'all-linear'
      : undefined;
  return { rank: j.r as number, alpha: j.lora_alpha as number, modules: modules as LoraOptions['modules'] };
}

/** The base weight an adapter tensor belongs to, and which of A, B it is. */
export function adapterTarget(name: string): { base: string; which: 'A' | 'B' } {
  const m = /^base_model\.model\.(.*)\.lora_([AB])\.weight$/.exec(name);
  if (!m) throw new TypeError(`not a LoRA adapter tensor: ${name}`);
  return { base: `${m[1]}.weight`, which: m[2] as 'A' | 'B' };
}

/** W (out × in) += scale · B (out × r) · A (r × in), in place. */
export function mergeAdapter(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  out: number,
  inDim: number,
  rank: number,
  scale: number,
): void {
  for (let i = 0; i < out; i++)
    for (let j = 0; j < inDim; j++) {
      let acc = 0;
      for (let k = 0; k < rank; k++) acc += b[i * rank + k] * a[k * inDim + j];
      w[i * inDim + j] += scale * acc;
    }
}
