/**
 * What the scalar-head trainers (RewardTrainer, ProcessRewardTrainer) share: one forward of a batch
 * of rows reading the value head at chosen positions, and picking the split evaluate() runs on.
 * Private to lib/train.
 */
import type { Model } from '../engine/model.js';
import { sequenceBatch, type Sequence, type SequenceBatch } from '../rollout/sequences.js';

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
