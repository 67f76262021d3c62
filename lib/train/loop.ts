/**
 * The step loop of the offline trainers (SFT, reward, process reward, preference family) and the
 * data-parallel pieces every trainer shares, the policy-gradient loop included.
 *
 * A trainer states its step and its loss; runStepLoop does the rest:
 *   resume     TrainingRun.resume (rank 0 picks and verifies the checkpoint, every rank restores it)
 *   step       accumulate(micro): forward/backward of THIS RANK's share of micro-batches
 *              [micro, micro + gradAccum), returning additive sums (the same keys on every rank);
 *              then gradients and sums are summed over ranks (reduceStep), so every rank holds the
 *              one-process gradients and sums; lossOf(sums) feeds the NaN/Inf guard around AdamW
 *              (which computes the global gradient norm once, after the reduction)
 *   report     metrics(sums, update) → 'step' events and metrics.jsonl (rank 0 alone writes files;
 *              the CLI shows rank 0's events only)
 *   cadence    evaluate every evalEvery steps and at the end, checkpoint every saveEvery steps, on a
 *              stop request and at the end, then the trained model to outputDir/model (rank 0)
 *
 * Sharding: a global micro-batch's items are split into contiguous shares in global order
 * (shardRange), so the global batch order is the one-process order for any number of ranks. A
 * trainer scales its per-item (or per-token) gradients by the GLOBAL count, so the summed
 * gradients are the one-process gradients up to summation order.
 */
import { join } from 'node:path';
import type { AdamW } from '../engine/adamw.js';
import type { Model } from '../engine/model.js';
import type { Tokenizer } from '../tokenizer/index.js';
import type { options } from '../validate.js';
import { allGatherRanges, currentGroup, shardRange, type ProcessGroup } from '../distributed/index.js';
import type { CheckpointPart } from './checkpoint.js';
import type { TrainingRun } from './run.js';
import type { Schedule } from './schedule.js';

/** Option keys of data parallelism that a trainer accepts besides its own. */
export const DATA_PARALLEL_KEYS = ['group', 'shardOptimizer'] as const;

/**
 * The group of a trainer's options (default: the group made by initDistributed, one local rank when
 * none was made) and whether AdamW shards its state over it (ZeRO stage 1: `shardOptimizer`,
 * default true; bitwise the same weights as unsharded AdamW).
 */
export function readDataParallel(
  o: ReturnType<typeof options>,
  group: ProcessGroup | undefined,
): { group: ProcessGroup; optimizerGroup?: ProcessGroup } {
  const g = group ?? currentGroup();
  const shard = o.bool('shardOptimizer', true) && g.size > 1;
  return { group: g, optimizerGroup: shard ? g : undefined };
}

/** This rank's contiguous share of a global batch's items (all of them on a group of one). */
export function localShare<T>(group: ProcessGroup, items: readonly T[]): T[] {
  return items.slice(...shardRange(items.length, group.rank, group.size));
}

/**
 * Sums the model's gradients and the step's additive quantities over ranks (a collective). The keys
 * are reduced in sorted order, so ranks must give the same keys; a NaN on any rank (a skipped
 * micro-batch) makes that sum NaN everywhere, so every rank skips the update together. On a group
 * of one, `sums` comes back unchanged (bit for bit).
 */
export async function reduceStep(
  group: ProcessGroup,
  model: Model | undefined,
  sums: Record<string, number>,
): Promise<Record<string, number>> {
  if (group.size === 1) return sums;
  if (model) await group.allReduceGradients(model);
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
  outputDir?: string;
  /** forward/backward of this rank's share of micro-batches [micro, micro + gradAccum); additive sums */
  accumulate(micro: number): Promise<Record<string, number>>;
  /** the loss the NaN/Inf guard checks, from the summed quantities */
  lossOf(sums: Record<string, number>): number;
  /** the step's metrics from the summed quantities and the update */
  metrics(sums: Record<string, number>, update: UpdateInfo): Record<string, number>;
  /** evaluation metrics to log (names as logged: evalLoss, ...) */
  evaluate?: () => Promise<Record<string, number>>;
  stopRequested(): boolean;
}

/**
 * Runs the loop (see the module comment) and closes the run's output folder when it ends.
 * `steps`: optimizer steps done (resumed ones included); `last`: the last step's metrics.
 */
export async function runStepLoop(
  l: StepLoop,
): Promise<{ steps: number; last?: Record<string, number>; stopped: boolean }> {
  const { run, model, optimizer } = l;
  try {
    const part = l.part ?? 'model';
    const state = await run.resume({ [part]: { model, optimizer }, ...l.frozen });
    await l.afterResume?.();
    let step = state?.step ?? 0,
      micro = (state?.microBatch as number | undefined) ?? 0,
      last: Record<string, number> | undefined;
    const save = () =>
      run.save(
        step,
        { [part]: { model, optimizer, tokenizer: l.tokenizer }, ...l.frozen },
        { microBatch: micro, ...l.savedState },
      );
    const evaluate = async () => run.evaluation(step, await l.evaluate!());
    const saved = () => l.saveEvery !== undefined && step % l.saveEvery === 0;
    const evaluated = () => l.evalEvery !== undefined && step % l.evalEvery === 0;
    await model.zeroGrad();
    while (step < l.totalSteps) {
      const t0 = performance.now();
      const sums = await reduceStep(l.group, model, await l.accumulate(micro));
      micro += l.gradAccum;
      optimizer.lr = l.schedule(step);
      const r = await run.guardedUpdate(step, l.lossOf(sums), optimizer, model);
      step++;
      last = l.metrics(sums, { ...r, lr: optimizer.lr, seconds: (performance.now() - t0) / 1000 });
      await run.step(step, last, { epoch: micro / l.perEpoch });
      if (l.evaluate && evaluated()) await evaluate();
      if (saved()) await save();
      if (stopAgreed(l.group, l.stopRequested())) {
        if (!saved()) await save();
        run.log(`stopped at step ${step} of ${l.totalSteps}`);
        return { steps: step, last, stopped: true };
      }
    }
    if (l.evaluate && !evaluated()) await evaluate();
    if (l.outputDir) {
      if (!saved()) await save();
      if (l.group.rank === 0) await model.save(join(l.outputDir, 'model'), { extraFiles: (d) => l.tokenizer.save(d) });
    }
    return { steps: step, last, stopped: false };
  } finally {
    await run.close();
  }
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
