/**
 * The one loop every trainer runs on (runLoop), and the data-parallel pieces they share.
 *
 * A trainer supplies its step, its checkpoint parts and its state (TrainerLoop); runLoop does the rest:
 *   resume     TrainingRun.resume (rank 0 picks and verifies the checkpoint, every rank restores
 *              every part: trained models with their optimizers, frozen ones), then begin(state)
 *              restores the trainer's own state (or prepares a fresh start)
 *   step       step(k) makes step k+1 and returns its metrics; the trainer guards its updates
 *              against non-finite losses and gradients (TrainingRun.guardedUpdate / skip)
 *   report     'step' events and metrics.jsonl (rank 0 alone writes files; the CLI shows rank 0's
 *              events only), then the step's own `reported` hook (e.g. a 'rollout' event)
 *   cadence    evaluate every evalEvery steps and at the end, checkpoint every saveEvery steps, on a
 *              stop request (agreed over ranks) and at the end, then the trained model to
 *              exportModel.dir/model (rank 0); end() runs however the loop ends
 *
 * The two step shapes:
 *   offline    (SFT, reward, process reward, preference family; runStepLoop) one step = the
 *              micro-batches [micro, micro + gradAccum) accumulated into one AdamW update:
 *              accumulate(micro) does forward/backward of THIS RANK's share and returns additive
 *              sums (the same keys on every rank); gradients and sums are summed over ranks
 *              (reduceStep; the gradients' all-reduce overlapped with the last micro-batch's
 *              backward where the model allows: gradientSum); lossOf(sums) feeds the NaN/Inf
 *              guard; metrics(sums, update) the report.
 *              The micro-batch counter is saved in every checkpoint.
 *   iteration  (PPO and the group methods; lib/train/policy-gradient.ts) one step = sample rollouts
 *              (on-policy, or one step ahead from a copy of the policy), score them, then epochs ×
 *              minibatches of policy and critic updates over them; the policy, critic, reference
 *              and rollout copy are checkpoint parts, and state() waits for a rollout in flight.
 *
 * Sharding: a global micro-batch's items are split into contiguous shares in global order
 * (shardRange), so the global batch order is the one-process order for any number of ranks. A
 * trainer scales its per-item (or per-token) gradients by the GLOBAL count, so the summed
 * gradients are the one-process gradients up to summation order.
 */
import { join } from 'node:path';
import type { AdamW } from '../engine/adamw.js';
import type { BackwardGrads, Model } from '../engine/model.js';
import { ErrorCode } from '../errors.js';
import type { Tokenizer } from '../tokenizer/index.js';
import type { options } from '../validate.js';
import {
  allGatherRanges,
  currentGroup,
  DEFAULT_BUCKET_BYTES,
  overlapUnsupported,
  shardRange,
  type ProcessGroup,
} from '../distributed/index.js';
import type { CheckpointPart, TrainerState } from './checkpoint.js';
import type { TrainingRun } from './run.js';
import type { Schedule } from './schedule.js';

/** Option keys of data parallelism that a trainer accepts besides its own. */
export const DATA_PARALLEL_KEYS = ['group', 'shardOptimizer', 'overlapAllReduce', 'allReduceBucketBytes'] as const;

/** The gradient all-reduce options of the offline trainers (as PPO's and the group trainers'). */
export interface AllReduceOptions {
  /**
   * Data parallelism: sum each step's gradients over options.group while the backward of the
   * step's last micro-batch still runs (ProcessGroup.backwardAllReduce: the same buckets, so
   * bitwise the weights of backward-then-all-reduce). Default true; it applies to a whole model on
   * the CPU without LoRA and not split over ranks, and any other model (or this option false)
   * takes the plain all-reduce after backward (a 'log' event says so).
   */
  overlapAllReduce?: boolean;
  /** the gradient all-reduce's bucket size in bytes, overlapped or not (default DEFAULT_BUCKET_BYTES, 25 MiB:
   * a model with fewer gradient bytes is one bucket, which cannot begin before backward ends) */
  allReduceBucketBytes?: number;
}

/**
 * The data-parallel options of a trainer: the group (default: the group made by initDistributed,
 * one local rank when none was made); whether AdamW shards its state over it (ZeRO stage 1:
 * `shardOptimizer`, default true; bitwise the same weights as unsharded AdamW); whether each
 * update's gradient all-reduce overlaps its last backward where the model allows
 * (`overlapAllReduce`, default true; bitwise the same weights) and the all-reduce's bucket size in
 * bytes, overlapped or not (`allReduceBucketBytes`, default DEFAULT_BUCKET_BYTES).
 */
export function readDataParallel(
  o: ReturnType<typeof options>,
  group: ProcessGroup | undefined,
): { group: ProcessGroup; optimizerGroup?: ProcessGroup; overlapAllReduce: boolean; bucketBytes: number } {
  const g = group ?? currentGroup();
  const shard = o.bool('shardOptimizer', true) && g.size > 1;
  return {
    group: g,
    optimizerGroup: shard ? g : undefined,
    overlapAllReduce: o.bool('overlapAllReduce', true),
    bucketBytes: o.int('allReduceBucketBytes', { min: 4 }, DEFAULT_BUCKET_BYTES),
  };
}

/**
 * Why `model`'s updates do not overlap the gradient all-reduce with backward (undefined: they do):
 * one rank, `enabled` false (options.overlapAllReduce) or a model the backward hook does not take
 * (overlapUnsupported). A trainer logs the reason when data parallelism falls back to the plain
 * all-reduce after backward.
 */
export function overlapDeclined(group: ProcessGroup, model: Model, enabled: boolean): string | undefined {
  if (group.size === 1) return 'one data-parallel rank (nothing to sum)';
  return enabled ? overlapUnsupported(group, model) : 'overlapAllReduce false';
}

/**
 * One model's gradient sum over the data-parallel group in one update: `last` runs the update's
 * last backward with the all-reduce overlapped (ProcessGroup.backwardAllReduce; undefined when
 * overlap is off: plain model.backward), and `reduced` says whether it did, i.e. whether the
 * update still needs allReduceGradients. A rank that ran no such backward (an empty share, a
 * non-finite loss) takes the plain all-reduce, whose buckets and calls are the overlapped one's,
 * so ranks on either path meet in the same collectives. A model whose backward refuses the hook
 * (ERR_RLHF_UNSUPPORTED before backward starts, alike on every rank) falls back to the plain path.
 */
export function gradientSum(
  group: ProcessGroup,
  model: Model,
  overlap: boolean,
  bucketBytes: number | undefined,
): { last?: (grads: BackwardGrads) => Promise<void>; reduced: boolean } {
  const r: { last?: (grads: BackwardGrads) => Promise<void>; reduced: boolean } = { reduced: false };
  if (overlap)
    r.last = async (grads) => {
      try {
        await group.backwardAllReduce(model, grads, { bucketBytes: bucketBytes ?? DEFAULT_BUCKET_BYTES });
        r.reduced = true;
      } catch (e) {
        if ((e as { code?: string }).code !== ErrorCode.UNSUPPORTED) throw e;
        await model.backward(grads);
      }
    };
  return r;
}

/** This rank's contiguous share of a global batch's items (all of them on a group of one). */
export function localShare<T>(group: ProcessGroup, items: readonly T[]): T[] {
  return items.slice(...shardRange(items.length, group.rank, group.size));
}

/**
 * Sums the model's gradients (in buckets of options.bucketBytes, default DEFAULT_BUCKET_BYTES) and
 * the step's additive quantities over ranks (a collective). The keys
 * are reduced in sorted order, so ranks must give the same keys; a NaN on any rank (a skipped
 * micro-batch) makes that sum NaN everywhere, so every rank skips the update together. On a group
 * of one, `sums` comes back unchanged (bit for bit).
 */
export async function reduceStep(
  group: ProcessGroup,
  model: Model | undefined,
  sums: Record<string, number>,
  options?: { bucketBytes?: number },
): Promise<Record<string, number>> {
  if (group.size === 1) return sums;
  if (model) await group.allReduceGradients(model, options);
  const keys = Object.keys(sums).sort();
  const all = group.allReduceSum(Float64Array.from(keys, (k) => sums[k]));
  return Object.fromEntries(keys.map((k, i) => [k, all[i]]));
}

/**
 * True when a stop was requested on any rank (a collective on more than one rank): every rank then
 * stops after the same step, so the checkpoint they write together is of one step.
 */
export function stopAgreed(group: ProcessGroup, requested: boolean): boolean {
  const world = group.worldGroup; // every rank of the job: the ranks of a tensor-parallel group stop together too
  if (world.size === 1) return requested;
  return world.allReduceSum(Float64Array.of(requested ? 1 : 0))[0] > 0;
}

/** What the driver tells a trainer's metrics() about the update it just made. */
export interface UpdateInfo {
  lr: number;
  gradNorm: number;
  skipped: boolean;
  /** wall time of the step (accumulate, reduction, update) */
  seconds: number;
}

/** What one step reports: its metrics ('step' event and metrics.jsonl). */
export interface StepReport {
  metrics: Record<string, number>;
  /** fields of the 'step' event besides the metrics (e.g. epoch) */
  event?: Record<string, number>;
  /** runs right after the step is reported, before evaluation and checkpointing (a trainer's own events) */
  reported?: () => void;
}

/**
 * The skeleton every trainer runs on (see the module comment): the trainer supplies its step, its
 * checkpoint parts and state; the driver owns resume, the loop, evaluation, checkpoints, stop
 * requests, progress events and metrics.
 */
export interface TrainerLoop {
  run: TrainingRun;
  group: ProcessGroup;
  totalSteps: number;
  /** the checkpoint's parts: trained models with their optimizers (and tokenizer), frozen models;
   * read at resume (models and optimizers restored) and at every save */
  parts(): Record<string, CheckpointPart>;
  /** trainer state saved with every checkpoint (it may wait, e.g. for a rollout in flight) */
  state(): Record<string, unknown> | Promise<Record<string, unknown>>;
  /** after resume (the restored state; undefined on a fresh start), before the first step */
  begin?(resumed: TrainerState | undefined): Promise<void>;
  /** step `step` (0-based; steps before it are done): whatever makes it (micro-batches and one
   * update, or sampling and several updates), guarded against non-finite updates by the trainer */
  step(step: number): Promise<StepReport>;
  saveEvery?: number;
  evalEvery?: number;
  /** evaluation metrics to log (names as logged: evalLoss, ...) */
  evaluate?: () => Promise<Record<string, number>>;
  /** the trained model that rank 0 writes to `dir`/model after the last step */
  exportModel?: { dir: string; model: Model; tokenizer: Tokenizer };
  /** runs when the loop ends, normally or not, before the run's folder is closed */
  end?(): Promise<void>;
  stopRequested(): boolean;
}

/**
 * Runs a trainer's loop and closes the run's output folder when it ends. `steps`: steps done
 * (resumed ones included); `last`: the last step's metrics; `stopped`: ended by a stop request.
 * Checkpoints: every saveEvery steps, on a stop request and after the last step (none written twice).
 */
export async function runLoop(
  l: TrainerLoop,
): Promise<{ steps: number; last?: Record<string, number>; stopped: boolean }> {
  const { run } = l;
  try {
    const restorable = Object.entries(l.parts()).map(([k, p]) => [k, { model: p.model, optimizer: p.optimizer }]);
    const state = await run.resume(Object.fromEntries(restorable));
    await l.begin?.(state);
    let step = state?.step ?? 0,
      last: Record<string, number> | undefined;
    const save = async () => run.save(step, l.parts(), await l.state());
    const evaluate = async () => run.evaluation(step, await l.evaluate!());
    const saved = () => l.saveEvery !== undefined && step % l.saveEvery === 0;
    const evaluated = () => l.evalEvery !== undefined && step % l.evalEvery === 0;
    while (step < l.totalSteps) {
      const r = await l.step(step);
      step++;
      last = r.metrics;
      await run.step(step, r.metrics, r.event);
      r.reported?.();
      if (l.evaluate && evaluated()) await evaluate();
      if (saved()) await save();
      if (stopAgreed(l.group, l.stopRequested())) {
        if (!saved()) await save();
        run.log(`stopped at step ${step} of ${l.totalSteps}`);
        return { steps: step, last, stopped: true };
      }
    }
    if (l.evaluate && !evaluated()) await evaluate();
    if (!saved()) await save(); // nothing is written without an outputDir
    const x = l.exportModel;
    if (x && l.group.rank === 0) await x.model.save(join(x.dir, 'model'), { extraFiles: (d) => x.tokenizer.save(d) });
    return { steps: step, last, stopped: false };
  } finally {
    try {
      await l.end?.();
    } finally {
      await run.close();
    }
  }
}

/** The step of the offline trainers: micro-batches accumulated into one guarded AdamW update. */
export interface StepLoop {
  run: TrainingRun;
  group: ProcessGroup;
  /** the trained model, checkpoint part `part` (with the optimizer and tokenizer) */
  model: Model;
  optimizer: AdamW;
  tokenizer: Tokenizer;
  /** default 'model' */
  part?: string;
  /** weights-only checkpoint parts (a frozen reference), restored on resume */
  frozen?: Record<string, CheckpointPart>;
  /** trainer state saved with every checkpoint besides the micro-batch counter */
  savedState?: Record<string, unknown>;
  /** runs after resume, before the first step (e.g. caching a restored reference's log-probs) */
  afterResume?: () => Promise<void>;
  totalSteps: number;
  /** micro-batches per epoch (the `epoch` of a step event is micro / perEpoch) */
  perEpoch: number;
  gradAccum: number;
  schedule: Schedule;
  saveEvery?: number;
  evalEvery?: number;
  /** where rank 0 writes the trained model (outputDir/model) after the last step */
  outputDir?: string;
  /** the step's last backward overlaps the gradient all-reduce where the model allows (default false) */
  overlapAllReduce?: boolean;
  /** the gradient all-reduce's bucket size, overlapped or not (default DEFAULT_BUCKET_BYTES) */
  bucketBytes?: number;
  /**
   * forward/backward of this rank's share of micro-batches [micro, micro + gradAccum); additive
   * sums. Every backward goes through `backward`, with `last` true for the last micro-batch's
   * (after it, no other collective until accumulate returns).
   */
  accumulate(micro: number, backward: StepBackward): Promise<Record<string, number>>;
  /** the loss the NaN/Inf guard checks, from the summed quantities */
  lossOf(sums: Record<string, number>): number;
  /** the step's metrics from the summed quantities and the update */
  metrics(sums: Record<string, number>, update: UpdateInfo): Record<string, number>;
  /** evaluation metrics to log (names as logged: evalLoss, ...) */
  evaluate?: () => Promise<Record<string, number>>;
  stopRequested(): boolean;
}

/**
 * accumulate's backward of `model`: model.backward(grads), except that with `last` (the backward
 * of the step's last micro-batch) it may also sum the gradients over the ranks as it runs.
 */
export type StepBackward = (grads: BackwardGrads, last: boolean) => Promise<void>;

/** The StepLoop fields an offline trainer's validated loop options decide (evaluation only when it has eval data). */
export function stepCadence(
  o: { gradAccum: number; saveEvery?: number; evalEvery?: number; outputDir?: string; seed: number },
  hasEval: boolean,
): Pick<StepLoop, 'gradAccum' | 'saveEvery' | 'evalEvery' | 'outputDir' | 'savedState'> {
  return {
    gradAccum: o.gradAccum,
    saveEvery: o.saveEvery,
    evalEvery: hasEval ? o.evalEvery : undefined,
    outputDir: o.outputDir,
    savedState: { seed: o.seed },
  };
}

/** runLoop with the offline trainers' step (see the module comment). */
export function runStepLoop(l: StepLoop): Promise<{ steps: number; last?: Record<string, number>; stopped: boolean }> {
  const { model, optimizer, run } = l;
  const part = l.part ?? 'model';
  let micro = 0;
  const declined = overlapDeclined(l.group, model, l.overlapAllReduce === true);
  if (l.group.size > 1 && declined) run.log(`gradient all-reduce after backward, not overlapped (${declined})`);
  const bucket = { bucketBytes: l.bucketBytes ?? DEFAULT_BUCKET_BYTES };
  return runLoop({
    run,
    group: l.group,
    totalSteps: l.totalSteps,
    parts: () => ({ [part]: { model, optimizer, tokenizer: l.tokenizer }, ...l.frozen }),
    state: () => ({ microBatch: micro, ...l.savedState }),
    begin: async (resumed) => {
      micro = (resumed?.microBatch as number | undefined) ?? 0;
      await l.afterResume?.();
      await model.zeroGrad();
    },
    step: async (step) => {
      const t0 = performance.now();
      // a rank whose last micro-batch had no backward (an empty share, a non-finite loss) meets the
      // overlapped ranks in the plain all-reduce (the same buckets: see gradientSum)
      const sum = gradientSum(l.group, model, !declined, bucket.bucketBytes);
      const local = await l.accumulate(micro, (grads, last) =>
        last && sum.last ? sum.last(grads) : model.backward(grads),
      );
      const sums = await reduceStep(l.group, sum.reduced ? undefined : model, local, bucket);
      micro += l.gradAccum;
      optimizer.lr = l.schedule(step);
      const r = await run.guardedUpdate(step, l.lossOf(sums), optimizer, model);
      const metrics = l.metrics(sums, { ...r, lr: optimizer.lr, seconds: (performance.now() - t0) / 1000 });
      return { metrics, event: { epoch: micro / l.perEpoch } };
    },
    saveEvery: l.saveEvery,
    evalEvery: l.evalEvery,
    evaluate: l.evaluate && (() => l.evaluate!()),
    exportModel: l.outputDir ? { dir: l.outputDir, model, tokenizer: l.tokenizer } : undefined,
    stopRequested: () => l.stopRequested(),
  });
}

/** The forward inputs of rows [r0, r1) of a (batch, seqLen) token batch: views, same seqLen. */
export function batchRows(
  b: { tokens: Int32Array; targets: Int32Array; lengths: Int32Array; seqLen: number },
  r0: number,
  r1: number,
): { tokens: Int32Array; targets: Int32Array; batch: number; seqLen: number; lengths: Int32Array } {
  const T = b.seqLen;
  return {
    tokens: b.tokens.subarray(r0 * T, r1 * T),
    targets: b.targets.subarray(r0 * T, r1 * T),
    batch: r1 - r0,
    seqLen: T,
    lengths: b.lengths.subarray(r0, r1),
  };
}

/**
 * A per-token result (batch·seqLen floats) of a whole batch, computed row-sharded: each rank runs
 * `f` on its share of the rows [r0, r1) (nothing when its share is empty), then every rank gets
 * all rows (a collective). On a group of one, f([0, batch]).
 */
export async function gatherRows(
  group: ProcessGroup,
  batch: number,
  seqLen: number,
  f: (r0: number, r1: number) => Promise<Float32Array>,
): Promise<Float32Array> {
  if (group.size === 1) return f(0, batch);
  const [r0, r1] = shardRange(batch, group.rank, group.size);
  const piece = r1 > r0 ? await f(r0, r1) : new Float32Array(0);
  const offsets = Array.from({ length: group.size + 1 }, (_, r) =>
    r === group.size ? batch * seqLen : shardRange(batch, r, group.size)[0] * seqLen,
  );
  return allGatherRanges(group, piece, offsets);
}
