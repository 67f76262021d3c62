/**
 * A model's Hugging Face checkpoint directory, both ways: config.json (+ a PEFT adapter's
 * adapter_config.json) to a ModelConfig, safetensors into the model's parameters, and the model
 * back to an atomic directory (weights, config, adapter, tokenizer files). File formats only: the
 * model is reached through its public parameter API ({@link CheckpointModel}).
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RlhfError, ErrorCode } from '../errors.js';
import { options } from '../validate.js';
import { pathExists as exists, replaceDirAtomic, writeFileAtomic } from './atomic.js';
import { configFromHF, configToHF, type ModelConfig } from '../engine/config.js';
import {
  readCheckpointIndex,
  readSafetensorsHeader,
  readTensorBf16,
  readTensorF32,
  writeCheckpointTensors,
  writeSafetensors,
  type Bf16TensorToWrite,
  type TensorToWrite,
} from './safetensors.js';
import {
  ADAPTER_DIR,
  ADAPTER_PREFIX,
  adapterConfigJson,
  adapterTarget,
  isAdapterTensor,
  loraFromAdapterConfig,
  mergeAdapter,
  type LoraConfig,
  type LoraOptions,
} from '../engine/lora.js';
import type { ParameterInfo, SaveOptions } from '../engine/model.js';
import { saveTokenizerFiles } from '../tokenizer/load.js';

/** What checkpoint I/O needs of a model (Model has it). */
export interface CheckpointModel {
  readonly config: ModelConfig;
  readonly lora?: LoraConfig;
  tokenizer?: { save(dir: string): Promise<void> };
  parameters(): ParameterInfo[];
  getParameter(name: string): Promise<Float32Array>;
  setParameter(name: string, data: Float32Array): Promise<void>;
  /** bf16 bits in and out (Model: a bf16-only weight moves its bits as they are; others widen / round) */
  getParameterBf16?(name: string): Promise<Uint16Array>;
  setParameterBf16?(name: string, bits: Uint16Array): Promise<void>;
}

/** Tensors a checkpoint may hold that no model parameter stands for. */
const IGNORABLE = /rotary_emb\.inv_freq$/;

/**
 * `<dir>/config.json` as a ModelConfig (as `architecture` when given), and the LoRA options: `loraOpt`,
 * else those of a PEFT adapter in `<dir>/adapter/`. Unreadable files are RlhfErrors naming the path.
 */
export async function readCheckpointConfig(
  fn: string,
  dir: string,
  architecture: string | undefined,
  loraOpt: LoraOptions | undefined,
): Promise<{ config: ModelConfig; lora: LoraOptions | undefined }> {
  const configPath = join(dir, 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(configPath, 'utf8'));
  } catch (err) {
    const code =
      (err as NodeJS.ErrnoException).code === 'ENOENT' || err instanceof SyntaxError
        ? err instanceof SyntaxError
          ? ErrorCode.FORMAT
          : ErrorCode.IO
        : ErrorCode.IO;
    throw new RlhfError(code, `${fn}: cannot read ${configPath}: ${(err as Error).message}`, { cause: err });
  }
  const cfg = configFromHF(json, configPath, architecture);
  let lora = loraOpt;
  const adapterConfig = join(dir, ADAPTER_DIR, 'adapter_config.json');
  if (lora === undefined && (await exists(adapterConfig))) {
    try {
      lora = loraFromAdapterConfig(JSON.parse(await readFile(adapterConfig, 'utf8')), adapterConfig);
    } catch (err) {
      throw new RlhfError(ErrorCode.FORMAT, `${fn}: ${adapterConfig}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  return { config: cfg, lora };
}

/**
 * Reads every parameter from a checkpoint directory's safetensors into `model` (shapes must match
 * its config). A missing score head is initialised from `seed` (CausalLM → critic); every other
 * missing or unexpected tensor is an error naming it. LoRA adapters come from
 * `<dir>/adapter/adapter_model.safetensors`, or start as PEFT starts them (B = 0).
 */
export async function readCheckpointWeights(model: CheckpointModel, dir: string, seed: number): Promise<void> {
  const cfg = model.config;
  const tensors = await readCheckpointIndex(dir);
  const all = model.parameters();
  const params = all.filter((p) => !isAdapterTensor(p.name));
  if (model.lora)
    await readAdapter(
      model,
      dir,
      all.filter((p) => isAdapterTensor(p.name)),
      seed,
    );
  const wanted = new Set(params.map((p) => p.name));
  const unexpected = [...tensors.keys()].filter(
    (n) => !wanted.has(n) && !IGNORABLE.test(n) && !(n === 'lm_head.weight' && (cfg.tieEmbeddings || !cfg.lmHead)),
  );
  if (unexpected.length)
    throw new RlhfError(
      ErrorCode.FORMAT,
      `Model.load: ${dir} holds tensors a ${cfg.architecture} does not have: ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ` (+${unexpected.length - 5} more)` : ''}`,
    );
  const missing: string[] = [];
  for (const p of params) {
    const entry = tensors.get(p.name);
    if (!entry) {
      missing.push(p.name);
      continue;
    }
    const shape = entry.info.shape;
    if (shape.length !== p.shape.length || shape.some((d, i) => d !== p.shape[i]))
      throw new RlhfError(
        ErrorCode.FORMAT,
        `Model.load: ${entry.header.path}: tensor "${p.name}" has shape [${shape.join(', ')}], but config.json (${cfg.architecture}, hidden_size ${cfg.hidden}, vocab_size ${cfg.vocab}) needs [${p.shape.join(', ')}]`,
      );
    // a BF16 tensor goes in as its bits (widening is exact, so the values are those of readTensorF32):
    // a bf16 model keeps them without an f32 round trip
    if (entry.info.dtype === 'BF16' && model.setParameterBf16)
      await model.setParameterBf16(p.name, await readTensorBf16(entry.header, p.name));
    else await model.setParameter(p.name, await readTensorF32(entry.header, p.name));
  }
  const fatal = missing.filter((n) => n !== 'score.weight');
  if (fatal.length)
    throw new RlhfError(
      ErrorCode.FORMAT,
      `Model.load: ${dir} lacks tensors: ${fatal.slice(0, 5).join(', ')}${fatal.length > 5 ? ` (+${fatal.length - 5} more)` : ''}`,
    );
  for (const name of missing.filter((n) => n === 'score.weight'))
    await model.setParameter(name, normalInit(params.find((p) => p.name === name)!.size, cfg.initializerRange, seed));
}

async function readAdapter(
  model: CheckpointModel,
  dir: string,
  adapters: ParameterInfo[],
  seed: number,
): Promise<void> {
  const path = join(dir, ADAPTER_DIR, 'adapter_model.safetensors');
  if (!(await exists(path))) {
    for (const [i, p] of adapters.entries())
      await model.setParameter(
        p.name,
        adapterTarget(p.name).which === 'B'
          ? new Float32Array(p.size)
          : normalInit(p.size, 1 / Math.sqrt(3 * p.shape[1]), seed + 7919 * (i + 1)),
      );
    return;
  }
  const header = await readSafetensorsHeader(path);
  for (const p of adapters) {
    const info = header.tensors.get(p.name);
    if (!info)
      throw new RlhfError(
        ErrorCode.FORMAT,
        `Model.load: ${path} lacks "${p.name}" (rank ${model.lora!.rank}, modules ${model.lora!.modules.join(', ')})`,
      );
    if (info.shape.length !== 2 || info.shape[0] !== p.shape[0] || info.shape[1] !== p.shape[1])
      throw new RlhfError(
        ErrorCode.FORMAT,
        `Model.load: ${path}: "${p.name}" has shape [${info.shape.join(', ')}], the adapter needs [${p.shape.join(', ')}]`,
      );
    await model.setParameter(p.name, await readTensorF32(header, p.name));
  }
}

/**
 * Writes `model` as a Hugging Face checkpoint directory, atomically (see Model.save). `writer` false:
 * the parameters are read (a collective under tensor parallelism over processes) but nothing is written.
 */
export async function writeCheckpoint(
  model: CheckpointModel,
  dir: string,
  opts: SaveOptions,
  ctx: { loadedFrom?: string; writer: boolean },
): Promise<void> {
  const fn = 'Model.save';
  const o = options(fn, 'options', opts);
  o.known(['format', 'dtype', 'maxShardBytes', 'extraFiles', 'mergeLora', 'tokenizer']);
  o.oneOf('format', ['safetensors', 'gguf'] as const, 'safetensors');
  const dtype = o.oneOf('dtype', ['F32', 'BF16', 'F16'] as const, 'F32');
  const maxShardBytes = o.int('maxShardBytes', { min: 1 }, 2 ** 31);
  const merge = o.bool('mergeLora', false);
  const tensors: Array<TensorToWrite | Bf16TensorToWrite> = [],
    adapter: TensorToWrite[] = [];
  const byName = new Map<string, TensorToWrite | Bf16TensorToWrite>();
  // BF16 (unmerged): the model's bf16 bits (a bf16-only weight's own, others rounded to nearest even as
  // f32ToBf16 does), so a bf16 model saves without an f32 copy of its weights
  const bits = dtype === 'BF16' && !merge && model.getParameterBf16 !== undefined;
  for (const p of model.parameters()) {
    const adapterTensor = isAdapterTensor(p.name);
    const f32 = adapterTensor || (model.lora !== undefined && p.name === 'score.weight'); // saved F32 beside the adapter
    const t: TensorToWrite | Bf16TensorToWrite =
      bits && !f32
        ? { name: p.name, shape: p.shape, data: await model.getParameterBf16!(p.name), dtype: 'BF16' }
        : { name: p.name, shape: p.shape, data: await model.getParameter(p.name), dtype };
    if (adapterTensor) adapter.push({ ...(t as TensorToWrite), dtype: 'F32' });
    else (tensors.push(t), byName.set(p.name, t));
  }
  if (!ctx.writer) return; // tensor parallelism over processes: another rank of the group writes
  if (model.lora && merge) {
    // W (out × in) += (α/r)·B·A for every adapter pair
    for (const a of adapter.filter((t) => adapterTarget(t.name).which === 'A')) {
      const b = adapter.find((t) => t.name === a.name.replace('.lora_A.', '.lora_B.'))!;
      const w = byName.get(adapterTarget(a.name).base)!;
      mergeAdapter(
        w.data as Float32Array,
        a.data as Float32Array,
        b.data as Float32Array,
        b.shape[0],
        a.shape[1],
        model.lora.rank,
        model.lora.alpha / model.lora.rank,
      );
    }
  }
  const config = configToHF(model.config);
  config.torch_dtype = dtype === 'F32' ? 'float32' : dtype === 'BF16' ? 'bfloat16' : 'float16';
  await replaceDirAtomic(dir, async (tmp) => {
    await writeCheckpointTensors(tmp, tensors, { maxShardBytes, metadata: { format: 'pt' } });
    await writeFileAtomic(join(tmp, 'config.json'), JSON.stringify(config, null, 2) + '\n');
    if (model.lora && !merge) {
      const sub = join(tmp, ADAPTER_DIR);
      await mkdir(sub, { recursive: true });
      // PEFT keeps a trained head with the adapter (modules_to_save); with LoRA it is read as f32 above
      const score = byName.get('score.weight') as TensorToWrite | undefined;
      const extra = score ? [{ ...score, name: `${ADAPTER_PREFIX}score.weight`, dtype: 'F32' as const }] : [];
      await writeSafetensors(join(sub, 'adapter_model.safetensors'), [...adapter, ...extra], { format: 'pt' });
      await writeFileAtomic(
        join(sub, 'adapter_config.json'),
        JSON.stringify(adapterConfigJson(model.lora, model.config), null, 2) + '\n',
      );
    }
    await saveTokenizerFiles(tmp, opts.tokenizer ?? model.tokenizer, ctx.loadedFrom, model.config.vocab);
    if (opts.extraFiles) await opts.extraFiles(tmp);
  });
}

/** n draws of N(0, std²) from a seeded generator (the initial score head and LoRA A matrices). */
function normalInit(n: number, std: number, seed: number): Float32Array {
  let s = (seed ^ 0x9e3779b9) >>> 0 || 1;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  return out;
}
