/**
 * Supervised fine-tuning: next-token cross-entropy on the completion (or assistant) tokens.
 *
 *   data     JSONL {prompt, completion} or {messages} (chat template; loss on assistant tokens and
 *            their end-of-turn marker only), padded per micro-batch or packed into full rows
 *   step     gradAccum micro-batches; the loss is the mean over every target token of the step
 *   lr       warmup + cosine (lib/train/schedule.ts); AdamW with clipping, NaN/Inf steps skipped
 *   output   outputDir/metrics.jsonl, outputDir/checkpoint-<step>/ every saveEvery steps
 *            (model, optimizer moments, data position), outputDir/model/ at the end
 *   resume   resumeFrom: a checkpoint dir or 'latest' — continues bit-exactly (same thread count)
 *   run      the output folder's manifest, lock, verified checkpoints and skip limit: lib/train/run.ts
 */
import { AdamW } from '../engine/adamw.js';
import type { Model } from '../engine/model.js';
import { RlhfError, ErrorCode } from '../errors.js';
import { currentGroup, shardRange, type ProcessGroup } from '../distributed/index.js';
import {
  loadSftFile,
  packExamples,
  padBatch,
  permutation,
  sliceBatch,
  stackBatches,
  tokenizeSft,
  toSftRecords,
  type SftInput,
  type TokenBatch,
  type TokenizedExample,
} from '../data/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { options } from '../validate.js';
import { TrainerEmitter } from './events.js';
import { DATA_PARALLEL_KEYS, readDataParallel, runStepLoop, stepCadence, type AllReduceOptions } from './loop.js';
import { LOOP_KEYS, readLoopOptions, type LoopOptions } from './preference-common.js';
import { TrainingRun, type RunOptions } from './run.js';
import { loopSchedule } from './schedule.js';

export interface SFTOptions extends RunOptions, AllReduceOptions {
  model: Model;
  tokenizer: Tokenizer;
  /** JSONL path or parsed records */
  train: string | SftInput[];
  eval?: string | SftInput[];
  /** longest sequence (tokens); longer examples are truncated (default 512) */
  seqLen?: number;
  /** rows per micro-batch (default 8) */
  batchSize?: number;
  gradAccum?: number;
  epochs?: number;
  /** stop after this many optimizer steps (default: epochs worth) */
  maxSteps?: number;
  lr?: number;
  warmupSteps?: number;
  minLrRatio?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  packing?: boolean;
  seed?: number;
  saveEvery?: number;
  evalEvery?: number;
  /**
   * Data parallelism: each rank of the group trains on its share of every micro-batch's rows
   * (contiguous, global order), gradients are summed over ranks before AdamW, so every rank keeps
   * the same weights; rank 0 alone writes the output folder. Default: the group made by
   * initDistributed (one local rank when none was made).
   */
  group?: ProcessGroup;
  /** ZeRO stage 1 over the group: each rank keeps AdamW moments for its share of the parameters only (default true; bitwise the same weights). */
  shardOptimizer?: boolean;
}

const KEYS = ['model', 'tokenizer', 'train', 'eval', 'packing', ...DATA_PARALLEL_KEYS, ...LOOP_KEYS] as const;

export interface SFTResult {
  steps: number;
  trainLoss: number;
  evalLoss?: number;
  skippedSteps: number;
  seconds: number;
  /** true when requestStop() ended the run early */
  stopped?: boolean;
}

/**
 * Micro-batches of one epoch in a seeded order. Padding: examples shuffled, then batched.
 * Packing: the examples are packed once (fixed order, `packedRows`) and the packed rows shuffled,
 * so every epoch has the same number of micro-batches.
 */
function epochBatches(
  examples: TokenizedExample[],
  epoch: number,
  o: { seed: number; batchSize: number; seqLen: number; padId: number; packing: boolean; packedRows?: TokenBatch[] },
): TokenBatch[] {
  if (o.packing) {
    const rows = o.packedRows!;
    const order = Array.from(permutation(rows.length, o.seed, epoch), (i) => rows[i]);
    const out: TokenBatch[] = [];
    for (let i = 0; i < order.length; i += o.batchSize) out.push(stackBatches(order.slice(i, i + o.batchSize)));
    return out;
  }
  const order = Array.from(permutation(examples.length, o.seed, epoch), (i) => examples[i]);
  const out: TokenBatch[] = [];
  for (let i = 0; i < order.length; i += o.batchSize)
    out.push(padBatch(order.slice(i, i + o.batchSize), { padId: o.padId }));
  return out;
}

export class SFTTrainer extends TrainerEmitter {
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  readonly optimizer: AdamW;
  #stopRequested = false;
  readonly group: ProcessGroup;
  #o: LoopOptions & Pick<SFTOptions, 'model' | 'tokenizer' | 'train' | 'eval'> & { packing: boolean };
  #allReduce: { overlapAllReduce: boolean; bucketBytes: number };

  constructor(opts: SFTOptions) {
    super();
    const fn = 'SFTTrainer';
    const o = options(fn, 'options', opts);
    o.known(KEYS);
    if (!opts.model || !opts.tokenizer) throw new TypeError(`${fn}: options.model and options.tokenizer are required`);
    this.model = opts.model;
    this.tokenizer = opts.tokenizer;
    this.group = opts.group ?? currentGroup();
    const {
      group: _group,
      shardOptimizer: _shard,
      overlapAllReduce: _overlap,
      allReduceBucketBytes: _bucket,
      ...rest
    } = opts;
    this.#o = {
      ...rest,
      ...readLoopOptions(fn, o, { lr: 1e-4 }),
      packing: o.bool('packing', false),
    };
    const dp = readDataParallel(o, this.group);
    this.optimizer = new AdamW(
      this.model,
      { lr: this.#o.lr, weightDecay: this.#o.weightDecay, maxGradNorm: this.#o.maxGradNorm },
      { group: dp.optimizerGroup },
    );
    this.#allReduce = { overlapAllReduce: dp.overlapAllReduce, bucketBytes: dp.bucketBytes };
  }

  async #examples(source: string | SftInput[]): Promise<TokenizedExample[]> {
    const records =
      typeof source === 'string' ? await loadSftFile(source) : toSftRecords(source, 'SFTTrainer: options.train');
    let truncated = 0;
    const out = records.map((r) => {
      const e = tokenizeSft(this.tokenizer, r, { maxLength: this.#o.seqLen });
      if (e.truncated) truncated++;
      return e;
    });
    if (truncated)
      this.emit('log', {
        stage: 'sft',
        message: `${truncated} of ${records.length} examples truncated to ${this.#o.seqLen} tokens`,
      });
    if (out.every((e) => !e.lossMask.some((x) => x)))
      throw new RlhfError(ErrorCode.FORMAT, 'SFTTrainer: no example has a token to train on');
    return out;
  }

  /** This rank's rows of a global micro-batch (all of it on a group of one). */
  #localRows(b: TokenBatch): TokenBatch {
    if (this.group.size === 1) return b;
    const [begin, end] = shardRange(b.batch, this.group.rank, this.group.size);
    return sliceBatch(b, begin, end);
  }

  /** Ends train() after the current step, writing a checkpoint first (e.g. on Ctrl-C). */
  requestStop(): void {
    this.#stopRequested = true;
  }

  /** Mean next-token NLL over the eval set's target tokens (no gradients). */
  async evaluate(examples?: TokenizedExample[]): Promise<{ loss: number; tokens: number }> {
    const ex = examples ?? (this.#o.eval ? await this.#examples(this.#o.eval) : undefined);
    if (!ex) throw new TypeError('SFTTrainer.evaluate: no eval data (options.eval)');
    let nll = 0,
      tokens = 0;
    for (let i = 0; i < ex.length; i += this.#o.batchSize) {
      const b = this.#localRows(padBatch(ex.slice(i, i + this.#o.batchSize), { padId: this.tokenizer.padId }));
      if (b.batch === 0) continue;
      const f = await this.model.forward({
        tokens: b.tokens,
        targets: b.targets,
        batch: b.batch,
        seqLen: b.seqLen,
        lengths: b.lengths,
        saveForBackward: false,
      });
      for (let j = 0; j < f.logprobs.length; j++) if (b.targets[j] >= 0) nll -= f.logprobs[j];
      tokens += b.numTargets;
    }
    [nll, tokens] = this.group.allReduceSum(Float64Array.of(nll, tokens));
    return { loss: tokens ? nll / tokens : NaN, tokens };
  }

  async train(): Promise<SFTResult> {
    const o = this.#o;
    const t0 = performance.now();
    const train = await this.#examples(o.train);
    const evalSet = o.eval ? await this.#examples(o.eval) : undefined;
    const packedRows = o.packing
      ? packExamples(train, { seqLen: o.seqLen, padId: this.tokenizer.padId, rowsPerBatch: 1 }).batches
      : undefined;
    const batchOpts = {
      seed: o.seed,
      batchSize: o.batchSize,
      seqLen: o.seqLen,
      padId: this.tokenizer.padId,
      packing: o.packing,
      packedRows,
    };
    const perEpoch = epochBatches(train, 0, batchOpts).length;
    const { totalSteps, schedule } = loopSchedule(o, perEpoch);
    const run = new TrainingRun(
      'sft',
      this,
      totalSteps,
      { ...o, group: this.group },
      { config: { ...o }, dataKeys: ['train', 'eval'] },
    );
    let epochCache = { epoch: -1, batches: [] as TokenBatch[] };
    const batchAt = (index: number): TokenBatch => {
      const epoch = Math.floor(index / perEpoch);
      if (epochCache.epoch !== epoch) epochCache = { epoch, batches: epochBatches(train, epoch, batchOpts) };
      return epochCache.batches[index % perEpoch];
    };
    let evalLoss: number | undefined;
    // target tokens of the current step's global micro-batches (the same on every rank)
    let targets = 0;
    const r = await runStepLoop({
      run,
      group: this.group,
      model: this.model,
      optimizer: this.optimizer,
      tokenizer: this.tokenizer,
      ...stepCadence(o, !!evalSet),
      ...this.#allReduce,
      totalSteps,
      perEpoch,
      schedule,
      accumulate: async (micro, backward) => {
        const batches = Array.from({ length: o.gradAccum }, (_, i) => batchAt(micro + i));
        targets = batches.reduce((s, b) => s + b.numTargets, 0);
        let nll = 0,
          tokens = 0;
        for (const [i, global] of batches.entries()) {
          const b = this.#localRows(global);
          if (b.batch === 0) continue;
          const f = await this.model.forward({
            tokens: b.tokens,
            targets: b.targets,
            batch: b.batch,
            seqLen: b.seqLen,
            lengths: b.lengths,
            positions: b.positions,
            segments: b.segments,
          });
          const d = new Float32Array(f.logprobs.length);
          for (let j = 0; j < d.length; j++)
            if (b.targets[j] >= 0) {
              nll -= f.logprobs[j];
              d[j] = -1 / targets;
            }
          tokens += b.lengths.reduce((s, x) => s + x, 0);
          await backward({ dLogprobs: d }, i === batches.length - 1);
        }
        return { nll, tokens };
      },
      // a step without target tokens has no loss (0/0) but is not a non-finite one
      lossOf: (s) => (targets ? s.nll / targets : 0),
      metrics: (s, u) => ({
        loss: s.nll / targets,
        lr: u.lr,
        gradNorm: u.gradNorm,
        tokensPerSecond: s.tokens / u.seconds,
        targetTokens: targets,
      }),
      evaluate: evalSet && (async () => ({ evalLoss: (evalLoss = (await this.evaluate(evalSet)).loss) })),
      stopRequested: () => this.#stopRequested,
    });
    return {
      steps: r.steps,
      trainLoss: r.last?.loss ?? NaN,
      evalLoss,
      skippedSteps: run.skippedSteps,
      seconds: (performance.now() - t0) / 1000,
      ...(r.stopped ? { stopped: true } : {}),
    };
  }
}
