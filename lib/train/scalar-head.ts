/**
 * What the scalar-head trainers (RewardTrainer, ProcessRewardTrainer) share: the options their
 * constructors read, the held-out split, one forward of a batch of rows reading the value head at
 * chosen positions, and picking the split evaluate() runs on. Private to lib/train.
 */
import { AdamW } from '../engine/adamw.js';
import type { Model } from '../engine/model.js';
import type { ProcessGroup } from '../distributed/index.js';
import { ErrorCode, RlhfError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { sequenceBatch, type Sequence, type SequenceBatch } from '../rollout/sequences.js';
import type { options } from '../validate.js';
import { LOOP_KEYS, heldOutSplit, readLoopOptions, type LoopOptions } from './preference-common.js';
import { DATA_PARALLEL_KEYS, readDataParallel, type AllReduceOptions } from './loop.js';

/**
 * Forwards `rows` (right-padded into one batch) and reads the values at `positions(sb, b)` —
 * batch indices of row b — row after row. `at` holds those indices (for a dValues array of
 * `size` = batch·seqLen); `save` keeps the activations for a backward.
 */
export async function scalarScores(
  model: Model,
  padId: number,
  rows: Sequence[],
  positions: (sb: SequenceBatch, b: number) => number[],
  save: boolean,
): Promise<{ scores: Float64Array; at: Int32Array; size: number }> {
  const sb = sequenceBatch(rows, padId);
  const f = await model.forward({
    tokens: sb.tokens,
    batch: sb.batch,
    seqLen: sb.seqLen,
    lengths: sb.lengths,
    values: true,
    saveForBackward: save,
  });
  const at = Int32Array.from(rows.flatMap((_, b) => positions(sb, b)));
  return { scores: Float64Array.from(at, (i) => f.values![i]), at, size: sb.batch * sb.seqLen };
}

/** The options both trainers take; R: the training record type. Loop options as in SFTOptions. */
export interface ScalarHeadTrainerOptions<R> extends Partial<LoopOptions>, AllReduceOptions {
  /** ZeRO stage 1 over options.group: AdamW moments for this rank's share of the parameters only (default true) */
  shardOptimizer?: boolean;
  /** a model with a scalar head (*ForSequenceClassification) */
  model: Model;
  tokenizer: Tokenizer;
  /** JSONL path or records */
  train: string | R[];
  eval?: string | R[];
  /** without eval: hold out this fraction of train (seeded by seed), in (0, 1) */
  evalSplit?: number;
}

/** The option keys of {@link ScalarHeadTrainerOptions}. */
export const SCALAR_HEAD_KEYS = [
  'model',
  'tokenizer',
  'train',
  'eval',
  'evalSplit',
  ...DATA_PARALLEL_KEYS,
  ...LOOP_KEYS,
] as const;

/**
 * What both trainers' constructors read after their own keys: the loop options (lr default 1e-5),
 * evalSplit in (0, 1) (exclusive with options.eval), the data-parallel group and an AdamW on the
 * model (ZeRO-1 over the group unless shardOptimizer is false).
 */
export function readScalarHeadTraining(
  fn: string,
  o: ReturnType<typeof options>,
  opts: { model: Model; eval?: unknown; group?: ProcessGroup },
): {
  loop: LoopOptions;
  evalSplit?: number;
  group: ProcessGroup;
  optimizer: AdamW;
  allReduce: { overlapAllReduce: boolean; bucketBytes: number };
} {
  const loop = readLoopOptions(fn, o, { lr: 1e-5 });
  const evalSplit = o.has('evalSplit') ? o.number('evalSplit', { gt: 0, lt: 1 }) : undefined;
  if (opts.eval !== undefined && evalSplit !== undefined)
    throw new TypeError(`${fn}: give options.eval or options.evalSplit, not both`);
  const dp = readDataParallel(o, opts.group);
  const optimizer = new AdamW(
    opts.model,
    { lr: loop.lr, weightDecay: loop.weightDecay, maxGradNorm: loop.maxGradNorm },
    { group: dp.optimizerGroup },
  );
  const allReduce = { overlapAllReduce: dp.overlapAllReduce, bucketBytes: dp.bucketBytes };
  return { loop, evalSplit, group: dp.group, optimizer, allReduce };
}

/**
 * With evalSplit: a seeded held-out share of `train` becomes the eval records (at least 2 records
 * needed, else an RlhfError naming `noun`); without: the records as given.
 */
export function splitHeldOut<T>(
  fn: string,
  train: T[],
  evalRecords: T[] | undefined,
  evalSplit: number | undefined,
  seed: number,
  noun: string,
): { train: T[]; eval?: T[] } {
  if (evalSplit === undefined) return { train, eval: evalRecords };
  if (train.length < 2)
    throw new RlhfError(ErrorCode.FORMAT, `${fn}: evalSplit needs at least 2 training ${noun}, got ${train.length}`);
  const split = heldOutSplit(train.length, evalSplit, seed);
  return { train: split.train.map((i) => train[i]), eval: split.held.map((i) => train[i]) };
}

/** The checks both trainers' constructors start with: a scalar-head model, a tokenizer, training data. */
export function checkScalarHeadOptions(
  fn: string,
  opts: { model?: Model; tokenizer?: unknown; train?: unknown },
): void {
  if (!opts.model || !opts.tokenizer) throw new TypeError(`${fn}: options.model and options.tokenizer are required`);
  if (!opts.model.config.valueHead)
    throw new TypeError(
      `${fn}: expected options.model to have a scalar head (*ForSequenceClassification), received a ${opts.model.config.architecture}; load it with Model.load(dir, {architecture: 'LlamaForSequenceClassification'})`,
    );
  if (opts.train === undefined) throw new TypeError(`${fn}: options.train is required`);
}

/** The records evaluate(split) runs on; a bad split or no eval data is a TypeError naming `fn`. */
export function evaluationSet<T>(fn: string, data: { train: T[]; eval?: T[] }, split: unknown): T[] {
  if (split !== 'eval' && split !== 'train')
    throw new TypeError(`${fn}: expected split to be "eval" or "train", received ${JSON.stringify(split)}`);
  const set = split === 'train' ? data.train : data.eval;
  if (!set?.length) throw new TypeError(`${fn}: no eval data (options.eval or options.evalSplit)`);
  return set;
}
