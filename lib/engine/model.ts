/**
 * The native transformer from TypeScript. Every RLHF loss meets the model at per-token "heads":
 *
 *   forward({tokens, targets, batch, seqLen})  -> logprobs of the targets (log-softmax + gather,
 *                                                 fused), optional entropy, values (scalar head)
 *   backward({dLogprobs, dEntropy?, dValues?}) -> parameter gradients (accumulated; zeroGrad resets);
 *     once per forward: a second backward on the same forward is RlhfError ERR_RLHF_INVALID_STATE
 *   generate({prompts, maxNewTokens, ...})     -> tokens + their log-probs (bit-identical to forward's)
 *
 * `tokens`/`targets` are Int32Array of batch·seqLen, row-major; a target of −1 means "no target
 * here". Rows are right-padded to seqLen; `lengths` gives each row's real length. Checkpoints are
 * Hugging Face directories (config.json + safetensors), so models move to and from transformers.
 */
import { RlhfError, ErrorCode, withCallerStack } from '../errors.js';
import { native, type NativeModel } from '../native.js';
import { releaseCachedMemory, type DeviceName } from './device.js';
import { checkBoolean, checkFloat32Array, checkObject, options, typeError } from '../validate.js';
import { resolveCheckpoint } from '../io/hub.js';
import { configFromHF, isModelConfig, nativeLayerFields, nativeRopeFields, type ModelConfig } from './config.js';
import { isAdapterTensor, nativeLoraFields, resolveLora, type LoraConfig, type LoraOptions } from './lora.js';
import type { OptimizerTarget } from './adamw.js';
import { readCheckpointConfig, readCheckpointWeights, writeCheckpoint } from '../io/checkpoint.js';
import { exportGguf, GGUF_DTYPES } from '../io/gguf-export.js';
import { ByteTokenizer } from '../tokenizer/byte.js';
import { forwardArgs, generateArgs, type ArgsTarget } from './model-args.js';
import type {
  BackwardGrads,
  ForwardBatch,
  ForwardResult,
  GenerateOptions,
  GeneratedSequence,
  LoadOptions,
  ParameterInfo,
  SaveOptions,
  TensorParallelGroup,
  WeightDType,
} from './model-types.js';

export type {
  ForwardBatch,
  ForwardResult,
  BackwardGrads,
  GenerateOptions,
  GeneratedSequence,
  ParameterInfo,
  TensorParallelGroup,
  LoadOptions,
  SaveOptions,
  WeightDType,
} from './model-types.js';

export class Model implements OptimizerTarget {
  readonly config: ModelConfig;
  /** ranks the weights are split over (1: not tensor-parallel); clones keep it */
  readonly tensorParallel: number;
  /** where those ranks are (threads of this process or MPI processes); clones keep it */
  readonly tensorParallelGroup: TensorParallelGroup;
  /** where the weights live and the model runs; clones keep it */
  readonly device: DeviceName;
  /** the weights' compute type (see {@link LoadOptions.dtype}); clones keep it */
  readonly dtype: WeightDType;
  /** false: frozen, without gradients (see {@link LoadOptions.trainable}); clones keep it */
  readonly trainable: boolean;
  #native: NativeModel | undefined;

  /** the LoRA adapters (undefined: none); with them only the adapters and a scalar head train */
  readonly lora?: LoraConfig;

  /** set on a withoutAdapters() view: the LoRA model whose weights it runs without the adapters */
  readonly adaptersOf?: Model;

  /** the tokenizer save() writes beside the weights (clones keep it); set it to the one the model is trained with */
  tokenizer?: { save(dir: string): Promise<void> };
  /** the folder Model.load read: save() copies its tokenizer files when no tokenizer is set */
  #loadedFrom?: string;

  private constructor(
    config: ModelConfig,
    tp: number | { size: number; group: TensorParallelGroup } = 1,
    lora?: LoraConfig,
    viewOf?: { model: Model; native: NativeModel },
    device: DeviceName = 'cpu',
    dtype: WeightDType = 'f32',
    trainable = true,
  ) {
    const tensorParallel = typeof tp === 'number' ? tp : tp.size;
    this.config = config;
    this.tensorParallel = tensorParallel;
    this.tensorParallelGroup = typeof tp === 'number' ? 'threads' : tp.group;
    this.device = viewOf ? viewOf.model.device : device;
    this.dtype = viewOf ? viewOf.model.dtype : dtype;
    this.trainable = viewOf ? viewOf.model.trainable : trainable;
    this.lora = viewOf ? undefined : lora;
    if (viewOf) {
      this.adaptersOf = viewOf.model;
      this.#native = viewOf.native;
      return;
    }
    if (lora && tensorParallel > 1) throw new RangeError('Model: LoRA with tensorParallel > 1 is not implemented');
    this.#native = new (native().NativeModel)({
      ...config,
      ...nativeRopeFields(config),
      ...nativeLayerFields(config),
      tensorParallel,
      ...(this.tensorParallelGroup === 'mpi' ? { tensorParallelGroup: 'mpi' } : {}),
      device,
      dtype,
      trainable,
      ...nativeLoraFields(lora),
    });
  }

  /**
   * The base model under this model's LoRA adapters, sharing its weights (nothing is copied):
   * forward and generate run without the adapters. A LoRA policy's reference model, as TRL does
   * with PEFT models. Inference only (saveForBackward false, no backward, no weight writes);
   * disposing the view frees nothing, disposing this model ends the view too.
   */
  withoutAdapters(): Model {
    if (!this.lora) throw new TypeError('Model.withoutAdapters: the model has no LoRA adapters');
    return new Model(this.config, this.#tp, undefined, {
      model: this,
      native: this.#handle('withoutAdapters'),
    });
  }

  /** A view's calls fail once its model is disposed. */
  #checkView(call: string): void {
    if (this.adaptersOf && !this.adaptersOf.#native)
      throw new RlhfError(ErrorCode.DISPOSED, `Model.${call}: the model under this view was disposed`);
  }

  #refuseFrozen(call: string): void {
    if (!this.trainable && !this.adaptersOf)
      throw new TypeError(`Model.${call}: the model was made with trainable: false (frozen: it has no gradients)`);
  }

  #refuseOnView(call: string): void {
    if (this.adaptersOf)
      throw new TypeError(`Model.${call}: a withoutAdapters() view is for inference; train or change the model itself`);
  }

  static #device(o: ReturnType<typeof options>): DeviceName {
    return o.oneOf('device', ['cpu', 'cuda'] as const, 'cpu');
  }

  static #dtype(o: ReturnType<typeof options>): WeightDType {
    return o.oneOf('dtype', ['f32', 'bf16'] as const, 'f32');
  }

  static #trainable(o: ReturnType<typeof options>): boolean {
    return o.bool('trainable', true);
  }

  static #tensorParallel(
    fn: string,
    o: ReturnType<typeof options>,
    cfg: ModelConfig,
  ): { size: number; group: TensorParallelGroup } {
    const tp = o.int('tensorParallel', { min: 1, max: 64 }, 1);
    const group = o.oneOf('tensorParallelGroup', ['threads', 'mpi'] as const, 'threads');
    // KV heads: each rank owns kvHeads / tp of them, or (tp a multiple of kvHeads) ranks share copies
    if (tp > 1 && (cfg.heads % tp !== 0 || (cfg.kvHeads % tp !== 0 && tp % cfg.kvHeads !== 0)))
      throw new RangeError(
        `${fn}: expected options.tensorParallel to divide num_attention_heads (${cfg.heads}) and to divide num_key_value_heads (${cfg.kvHeads}) or be a multiple of it, received ${tp}`,
      );
    if (tp > 1 && (cfg.ffn < tp || cfg.vocab < tp))
      throw new RangeError(
        `${fn}: expected options.tensorParallel to be at most intermediate_size (${cfg.ffn}) and vocab_size (${cfg.vocab}), received ${tp}`,
      );
    return { size: tp, group };
  }

  /** The tensor-parallel layout clones and views take over. */
  get #tp(): { size: number; group: TensorParallelGroup } {
    return { size: this.tensorParallel, group: this.tensorParallelGroup };
  }

  /** A new model with random weights (normal(0, initializer_range); norms 1, biases 0). `config` is a transformers config.json object. */
  static async create(
    config: Record<string, unknown> | ModelConfig,
    opts: {
      seed?: number;
      initStd?: number;
      tensorParallel?: number;
      tensorParallelGroup?: TensorParallelGroup;
      lora?: LoraOptions;
      device?: DeviceName;
      dtype?: WeightDType;
      trainable?: boolean;
    } = {},
  ): Promise<Model> {
    const o = options('Model.create', 'options', opts);
    o.known(['seed', 'initStd', 'tensorParallel', 'tensorParallelGroup', 'lora', 'device', 'dtype', 'trainable']);
    const seed = o.int('seed', { min: 0 }, 0);
    const cfg = isModelConfig(config) ? config : configFromHF(config, 'Model.create: config');
    const std = o.number('initStd', { min: 0 }, cfg.initializerRange);
    const m = new Model(
      cfg,
      Model.#tensorParallel('Model.create', o, cfg),
      resolveLora('Model.create', opts.lora, cfg),
      undefined,
      Model.#device(o),
      Model.#dtype(o),
      Model.#trainable(o),
    );
    await withCallerStack(() => m.#handle('create').initRandom(seed, std));
    return m;
  }

  /**
   * Loads a Hugging Face checkpoint directory (config.json + model.safetensors or a sharded index),
   * or a hub id (`org/name[@revision]`) found in the local Hugging Face cache (see io/hub.ts).
   */
  static async load(dir: string, opts: LoadOptions = {}): Promise<Model> {
    const o = options('Model.load', 'options', opts);
    o.known(['architecture', 'seed', 'tensorParallel', 'tensorParallelGroup', 'lora', 'device', 'dtype', 'trainable']);
    dir = resolveCheckpoint('Model.load', dir);
    const { config: cfg, lora } = await readCheckpointConfig('Model.load', dir, opts.architecture, opts.lora);
    const m = new Model(
      cfg,
      Model.#tensorParallel('Model.load', o, cfg),
      resolveLora('Model.load', lora, cfg),
      undefined,
      Model.#device(o),
      Model.#dtype(o),
      Model.#trainable(o),
    );
    try {
      await m.loadWeights(dir, { seed: opts.seed });
    } catch (err) {
      m.dispose();
      throw err;
    }
    m.#loadedFrom = dir;
    return m;
  }

  /**
   * Reads every parameter from a checkpoint directory's safetensors into this model (shapes must
   * match this model's config). A missing score head is initialised (CausalLM → critic); every
   * other missing or unexpected tensor is an error naming it.
   */
  async loadWeights(dir: string, opts: { seed?: number } = {}): Promise<void> {
    await readCheckpointWeights(this, dir, opts.seed ?? 0);
  }

  get numParameters(): number {
    if (this.adaptersOf) return this.parameters().reduce((s, p) => s + p.size, 0);
    return this.#handle('numParameters').numParameters;
  }

  /** Parameters the optimizer updates: all of them, or with LoRA the adapters and a scalar head. */
  get numTrainableParameters(): number {
    if (!this.trainable) return 0;
    if (!this.lora) return this.numParameters;
    return this.parameters()
      .filter((p) => isAdapterTensor(p.name) || p.name === 'score.weight')
      .reduce((s, p) => s + p.size, 0);
  }

  /** Bytes of the weights and gradients: the f32 store, the bf16 weights (dtype 'bf16'), the gradient store. */
  get storageBytes(): { parameters: number; weightCopy: number; gradients: number } {
    return this.#handle('storageBytes').storageBytes;
  }

  /** Bytes of saved activations and scratch currently held. */
  get activationBytes(): number {
    return this.#handle('activationBytes').activationBytes;
  }

  #checkpointing = false;
  /**
   * Gradient (activation) checkpointing: forwards that save for backward keep only each layer's
   * input (hidden floats per token per layer instead of the full set), and backward recomputes
   * each layer from it — about one more forward of compute, gradients bit-identical. Takes effect
   * from the next forward; clones inherit it. Default false.
   */
  get gradientCheckpointing(): boolean {
    return this.#checkpointing;
  }
  set gradientCheckpointing(on: boolean) {
    this.#refuseOnView('gradientCheckpointing');
    checkBoolean('Model.gradientCheckpointing', 'value', on);
    this.#handle('gradientCheckpointing').setGradientCheckpointing(on);
    this.#checkpointing = on;
  }

  parameters(): ParameterInfo[] {
    const all = this.#handle('parameters').parameters();
    return this.adaptersOf ? all.filter((p) => !isAdapterTensor(p.name)) : all; // a view is the base model
  }

  /** For `new AdamW(model, options)`: the model's flat parameters, decay 0 on norms and biases. */
  /** @internal the native engine a GenerationSession runs on, and whether it samples with the LoRA adapters */
  get generationTarget(): { native: NativeModel; adapters: boolean } {
    return { native: this.#handle('GenerationSession'), adapters: !this.adaptersOf };
  }

  get optimizerTarget(): NativeModel {
    this.#refuseOnView('optimizerTarget');
    this.#refuseFrozen('optimizerTarget');
    return this.#handle('optimizerTarget');
  }

  /** What forward's and generate's argument checks know of this model. */
  get #argsTarget(): ArgsTarget {
    return { config: this.config, trainable: this.trainable, view: this.adaptersOf !== undefined };
  }

  forward(batch: ForwardBatch): Promise<ForwardResult> {
    const h = this.#handle('forward');
    const args = forwardArgs(batch, this.#argsTarget);
    return withCallerStack(() => h.forward(args));
  }

  backward(grads: BackwardGrads): Promise<void>;
  /**
   * `internal.allReduceBucketBytes`: sum the gradients over the MPI data-parallel group in buckets
   * of that size while backward runs (ProcessGroup.backwardAllReduce; call that instead).
   */
  backward(
    grads: BackwardGrads,
    internal: { allReduceBucketBytes: number },
  ): Promise<{ readyPoints: number; earlyBuckets: number }>;
  backward(
    grads: BackwardGrads,
    internal?: { allReduceBucketBytes: number },
  ): Promise<void | { readyPoints: number; earlyBuckets: number }> {
    this.#refuseOnView('backward');
    this.#refuseFrozen('backward');
    const h = this.#handle('backward');
    const fn = 'Model.backward';
    const g = checkObject(fn, 'grads', grads);
    options(fn, 'grads', g).known(['dLogprobs', 'dEntropy', 'dValues']);
    for (const k of ['dLogprobs', 'dEntropy', 'dValues'] as const)
      if (g[k] !== undefined) checkFloat32Array(fn, `grads.${k}`, g[k]);
    if (g.dLogprobs === undefined && g.dEntropy === undefined && g.dValues === undefined)
      throw typeError(fn, 'grads', 'an object with dLogprobs, dEntropy or dValues', grads);
    return withCallerStack(() => h.backward(g, internal?.allReduceBucketBytes));
  }

  zeroGrad(): Promise<void> {
    const h = this.#handle('zeroGrad');
    return withCallerStack(() => h.zeroGrad());
  }

  generate(opts: GenerateOptions): Promise<GeneratedSequence[]> {
    const h = this.#handle('generate');
    const args = generateArgs(opts, this.#argsTarget);
    return withCallerStack(async () => {
      const r = await h.generate(args);
      return r.tokens.map((tokens, i) => ({
        tokens,
        logprobs: r.logprobs[i],
        finishReason: r.stopped[i] ? ('stop' as const) : ('length' as const),
      }));
    });
  }

  /** A copy of one parameter (Hugging Face name). */
  getParameter(name: string): Promise<Float32Array> {
    const h = this.#handle('getParameter');
    return withCallerStack(() => h.readParameter(name, 'param'));
  }

  /** A copy of one parameter's accumulated gradient. */
  getGradient(name: string): Promise<Float32Array> {
    const h = this.#handle('getGradient');
    return withCallerStack(() => h.readParameter(name, 'grad'));
  }

  /** One parameter as bf16 bits: a bf16-only weight's own bits (no f32 round trip), others rounded to nearest even. */
  getParameterBf16(name: string): Promise<Uint16Array> {
    const h = this.#handle('getParameterBf16');
    return withCallerStack(() => h.readParameter(name, 'bf16'));
  }

  /** Sets one parameter from bf16 bits: a bf16-only weight takes them as they are, others widen them (exact). */
  setParameterBf16(name: string, bits: Uint16Array): Promise<void> {
    this.#refuseOnView('setParameterBf16');
    const h = this.#handle('setParameterBf16');
    if (!(bits instanceof Uint16Array))
      throw typeError('Model.setParameterBf16', 'bits', 'a Uint16Array of bf16 bits', bits);
    return withCallerStack(() => h.writeParameter(name, bits));
  }

  setParameter(name: string, data: Float32Array): Promise<void> {
    this.#refuseOnView('setParameter');
    const h = this.#handle('setParameter');
    checkFloat32Array('Model.setParameter', 'data', data);
    return withCallerStack(() => h.writeParameter(name, data));
  }

  /**
   * A new model with the same config and weights (a frozen reference, a critic's start).
   * `trainable` (default: this model's): false makes the copy frozen — no gradient storage and, at
   * dtype 'bf16', its matrices in bf16 only (rounded from this model's f32 masters, which a
   * mixed-precision model's products already read, except its f32 embedding).
   */
  async clone(opts: { trainable?: boolean } = {}): Promise<Model> {
    const o = options('Model.clone', 'options', opts);
    o.known(['trainable']);
    const trainable = o.bool('trainable', this.trainable);
    const m = new Model(this.config, this.#tp, this.lora, undefined, this.device, this.dtype, trainable);
    // bf16 bits where the clone stores bf16 only (no f32 round trip), f32 otherwise
    const bits = m.#bf16Only();
    for (const p of this.parameters())
      if (bits.has(p.name)) await m.setParameterBf16(p.name, await this.getParameterBf16(p.name));
      else await m.setParameter(p.name, await this.getParameter(p.name));
    m.gradientCheckpointing = this.#checkpointing;
    m.tokenizer = this.tokenizer;
    m.#loadedFrom = this.#loadedFrom;
    return m;
  }

  /**
   * Names of the parameters stored in bf16 only (native/model/weight_store.cc allocate_storage): with
   * dtype 'bf16', the frozen matrices — every 2-D parameter but the scalar head and the LoRA adapters,
   * when LoRA freezes the base or the model is not trainable.
   */
  #bf16Only(): Set<string> {
    if (this.dtype !== 'bf16' || (this.trainable && !this.lora)) return new Set();
    return new Set(
      this.parameters()
        .filter((p) => p.shape.length === 2 && p.name !== 'score.weight' && !isAdapterTensor(p.name))
        .map((p) => p.name),
    );
  }

  /** @internal names of the bf16-only parameters (checkpoint I/O moves their bits without an f32 round trip) */
  get bf16OnlyParameters(): Set<string> {
    return this.#bf16Only();
  }

  /** Copies every weight from a model of the same layout (e.g. a policy into its reference). */
  async copyWeightsFrom(other: Model): Promise<void> {
    for (const p of this.parameters()) await this.setParameter(p.name, await other.getParameter(p.name));
  }

  /**
   * Writes a Hugging Face checkpoint directory atomically: the files are written to a temporary
   * sibling and swapped in, so a crash leaves either the old directory or the new one. The
   * tokenizer goes with it, so every command can load the folder: `opts.tokenizer`, else
   * {@link Model.tokenizer}, else the tokenizer files of the folder the model was loaded from,
   * else — for a model with the byte tokenizer's vocabulary (263) — the byte tokenizer.
   */
  async save(dir: string, opts: SaveOptions = {}): Promise<void> {
    if (opts?.format === 'gguf') return this.#saveGguf(dir, opts);
    // tensor parallelism over MPI: every rank takes part in the gathers; rank 0 of the group writes
    const writer = this.tensorParallelGroup !== 'mpi' || this.#handle('save').tensorParallelRank === 0;
    await writeCheckpoint(this, dir, opts, { loadedFrom: this.#loadedFrom, writer });
  }

  /**
   * One GGUF file at `file`. The tokenizer: opts.tokenizer or {@link Model.tokenizer} when it is the
   * built-in byte tokenizer, else the tokenizer files of the folder the model was loaded from.
   */
  async #saveGguf(file: string, opts: SaveOptions): Promise<void> {
    const o = options('Model.save', 'options', opts);
    o.known(['format', 'dtype', 'tokenizer', 'name']);
    const dtype = o.oneOf('dtype', GGUF_DTYPES, 'f32');
    const given = opts.tokenizer ?? this.tokenizer;
    const tokenizer = given instanceof ByteTokenizer ? given : this.#loadedFrom;
    if (tokenizer === undefined)
      throw new TypeError(
        "Model.save: format 'gguf' needs options.tokenizer to be a ByteTokenizer, or a model loaded from a folder with tokenizer.json",
      );
    await exportGguf(this, file, { dtype, tokenizer, ...(opts.name !== undefined ? { name: opts.name } : {}) });
  }

  /** Frees the saved activations (a later backward needs a new forward). */
  releaseActivations(): void {
    this.#handle('releaseActivations').releaseActivations();
  }

  /**
   * Frees the saved activations and returns every cached buffer of the process to the OS
   * (releaseCachedMemory): the memory a training step keeps for reuse between steps.
   */
  releaseMemory(): void {
    this.releaseActivations();
    releaseCachedMemory();
  }

  dispose(): void {
    if (!this.adaptersOf) this.#native?.dispose();
    this.#native = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #handle(call: string): NativeModel {
    this.#checkView(call);
    if (!this.#native) throw new RlhfError(ErrorCode.DISPOSED, `Model.${call}: the model was disposed`);
    return this.#native;
  }
}
