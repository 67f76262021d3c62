/**
 * Pieces shared by the pairwise trainers (RewardTrainer, PreferenceTrainer) and the online samplers
 * (PreferenceTrainer.buildPairs, bestOfN). Private to lib/train: not exported from the package.
 *
 *   encodeRow        prompt + response → one model row (prompt ids, response ids ++ eos), truncated
 *   loadPairData     JSONL or in-memory {prompt, chosen, rejected} / {prompt, responses, scores} /
 *                    {prompt, completion, label}
 *   EpochBatches     seeded per-epoch order, micro-batch i of the whole run as a pure function of i
 *   readLoopOptions  the options every trainer's loop shares (validated like SFTTrainer's)
 *   rowLogprobs      one forward → per-row sequence log-probs summed over response tokens only
 */
import type { Model } from '../engine/model.js';
import { RlhfError, ErrorCode } from '../errors.js';
import {
  parsePreferenceRecord,
  parseScoredRecord,
  parseUnpairedRecord,
  readJsonl,
  tokenizePromptResponse,
  type PreferenceRecord,
  type Prompt,
  type ScoredRecord,
  type UnpairedRecord,
} from '../data/index.js';
import { hashSeed, mulberry32, shuffleInPlace } from '../data/shuffle.js';
import { sequenceLogprobs } from '../losses/index.js';
import { sequenceBatch, type Sequence, type SequenceBatch } from '../rollout/sequences.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { options } from '../validate.js';
import { packRows, sumResponses } from './packed-rows.js';
import { readRunOptions, RUN_OPTION_KEYS, type RunOptions } from './run.js';

/** One tokenized row: `seq.promptIds ++ seq.responseIds` is at most seqLen tokens. */
export interface EncodedRow {
  seq: Sequence;
  /** response tokens (with eos) before truncation: what length balancing compares */
  fullResponseLength: number;
  truncated: boolean;
}

/**
 * Tokenizes `prompt` + `response` (+ eos) with tokenizePromptResponse and keeps the first `seqLen`
 * tokens. The split point is the prompt length, but at least 1: with an empty prompt the first
 * response token becomes the "prompt" (nothing predicts a row's first token anyway). A prompt of
 * seqLen tokens or more leaves an empty response (responseIds.length 0).
 */
export function encodeRow(tok: Tokenizer, prompt: Prompt, response: string, seqLen: number): EncodedRow {
  const ex = tokenizePromptResponse(tok, prompt, response);
  const n = Math.min(ex.ids.length, seqLen);
  const split = Math.max(1, Math.min(ex.promptLength, n));
  return {
    seq: { promptIds: ex.ids.slice(0, split), responseIds: ex.ids.slice(split, n) },
    fullResponseLength: ex.ids.length - ex.promptLength,
    truncated: ex.ids.length > seqLen,
  };
}

/** True for a scored-group record ({prompt, responses, scores}). */
export function isScored(r: PairDataRecord): r is ScoredRecord {
  return Array.isArray((r as ScoredRecord).responses);
}

/** True for an unpaired record ({prompt, completion, label}). */
export function isUnpaired(r: PairDataRecord): r is UnpairedRecord {
  return typeof (r as UnpairedRecord).label === 'boolean';
}

export type PairDataRecord = PreferenceRecord | ScoredRecord | UnpairedRecord;

/**
 * What a trainer accepts: 'pairs' only {prompt, chosen, rejected}; 'groups' pairs or scored groups
 * {prompt, responses, scores}; 'kto' pairs or unpaired {prompt, completion, label}, one kind per set.
 */
export type PairDataKind = 'pairs' | 'groups' | 'kto';

/**
 * Reads preference data: a JSONL path (each line's kind told apart by a `responses` or
 * `completion` key) or records in memory (checked the same way, errors naming `name[i]`). A record
 * of a kind `accept` excludes is a FORMAT error at its place. An empty set is a FORMAT error.
 */
export async function loadPairData(
  fn: string,
  name: string,
  source: unknown,
  accept: PairDataKind,
): Promise<PairDataRecord[]> {
  let first: string | undefined;
  const parse = (value: unknown, where: string): PairDataRecord => {
    const has = (key: string) => value !== null && typeof value === 'object' && key in value;
    const kind = has('responses') ? SCORED : has('completion') ? UNPAIRED : PAIR;
    if ((kind === SCORED && accept !== 'groups') || (kind === UNPAIRED && accept !== 'kto'))
      throw new RlhfError(
        ErrorCode.FORMAT,
        `${where}: expected a ${accept === 'groups' ? `${PAIR} or ${SCORED}` : PAIR} record (${fn}), got a ${kind} record${kind === UNPAIRED ? " (unpaired data is for loss 'kto')" : ''}`,
      );
    if (accept === 'kto' && first !== undefined && kind !== first)
      throw new RlhfError(
        ErrorCode.FORMAT,
        `${where}: expected a ${first} record like the first one (${fn}: one kind per data set), got a ${kind} record`,
      );
    first ??= kind;
    return kind === SCORED
      ? parseScoredRecord(value, where)
      : kind === UNPAIRED
        ? parseUnpairedRecord(value, where)
        : parsePreferenceRecord(value, where);
  };
  const out: PairDataRecord[] = [];
  if (typeof source === 'string') {
    for await (const { value, line } of readJsonl(source)) out.push(parse(value, `${source}:${line}`));
    if (!out.length)
      throw new RlhfError(ErrorCode.FORMAT, `${source}: no records (the file is empty or has only blank lines)`);
  } else if (Array.isArray(source)) {
    source.forEach((r, i) => out.push(parse(r, `${fn}: options.${name}[${i}]`)));
    if (!out.length) throw new RlhfError(ErrorCode.FORMAT, `${fn}: options.${name} is empty`);
  } else throw new TypeError(`${fn}: expected options.${name} to be a JSONL path or an array of records`);
  return out;
}

const PAIR = '{prompt, chosen, rejected}',
  SCORED = '{prompt, responses, scores}',
  UNPAIRED = '{prompt, completion, label}';

/**
 * Micro-batches over `items` for a whole run: epoch e visits the items in a seeded permutation of
 * (seed, e, stream), batchSize at a time (the last batch of an epoch may be smaller), and
 * micro-batch i of the run is batch i mod perEpoch of epoch ⌊i / perEpoch⌋. Stream 0 gives
 * exactly data/shuffle.ts `permutation(n, seed, epoch)` (the order SFTTrainer uses). Being a pure
 * function of i is what makes resumed runs identical: only the micro-batch counter is saved.
 */
export class EpochBatches<T> {
  readonly perEpoch: number;
  #epoch = -1;
  #order: Int32Array = new Int32Array(0);

  constructor(
    readonly items: readonly T[],
    readonly batchSize: number,
    readonly seed: number,
    readonly stream = 0,
  ) {
    this.perEpoch = Math.ceil(items.length / batchSize);
  }

  at(index: number): T[] {
    const epoch = Math.floor(index / this.perEpoch);
    if (epoch !== this.#epoch) {
      const order = Int32Array.from({ length: this.items.length }, (_, i) => i);
      this.#order = shuffleInPlace(order, mulberry32(hashSeed(this.seed, epoch, this.stream)));
      this.#epoch = epoch;
    }
    const start = (index % this.perEpoch) * this.batchSize;
    return Array.from(this.#order.subarray(start, start + this.batchSize), (i) => this.items[i]);
  }
}

/** A seeded split of [0, n) into kept and held-out indices (both ascending); held = round(n·fraction), >= 1. */
export function heldOutSplit(n: number, fraction: number, seed: number): { train: number[]; held: number[] } {
  const held = Math.min(n - 1, Math.max(1, Math.round(n * fraction)));
  const order = shuffleInPlace(
    Int32Array.from({ length: n }, (_, i) => i),
    mulberry32(hashSeed(seed, 0, 0x73706c)),
  );
  const sort = (a: Int32Array) => Array.from(a).sort((x, y) => x - y);
  return { held: sort(order.subarray(0, held)), train: sort(order.subarray(held)) };
}

/** The loop options every pairwise trainer shares (see SFTOptions for their meaning). */
export interface LoopOptions extends RunOptions {
  batchSize: number;
  gradAccum: number;
  epochs: number;
  maxSteps?: number;
  lr: number;
  warmupSteps: number;
  minLrRatio: number;
  weightDecay: number;
  maxGradNorm: number;
  seqLen: number;
  seed: number;
  saveEvery?: number;
  evalEvery?: number;
}

export const LOOP_KEYS = [
  'batchSize',
  'gradAccum',
  'epochs',
  'maxSteps',
  'lr',
  'warmupSteps',
  'minLrRatio',
  'weightDecay',
  'maxGradNorm',
  'seqLen',
  'seed',
  'saveEvery',
  'evalEvery',
  ...RUN_OPTION_KEYS,
] as const;

/** Reads and validates the {@link LoopOptions} (same bounds and defaults as SFTTrainer, except lr). */
export function readLoopOptions(fn: string, o: ReturnType<typeof options>, defaults: { lr: number }): LoopOptions {
  const r: LoopOptions = {
    batchSize: o.int('batchSize', { min: 1 }, 8),
    gradAccum: o.int('gradAccum', { min: 1 }, 1),
    epochs: o.int('epochs', { min: 1 }, 1),
    maxSteps: o.has('maxSteps') ? o.int('maxSteps', { min: 1 }) : undefined,
    lr: o.number('lr', { min: 0, float32: true }, defaults.lr),
    warmupSteps: o.int('warmupSteps', { min: 0 }, 0),
    minLrRatio: o.number('minLrRatio', { min: 0, max: 1 }, 0.1),
    weightDecay: o.number('weightDecay', { min: 0, float32: true }, 0),
    maxGradNorm: o.number('maxGradNorm', { min: 0, float32: true }, 1),
    seqLen: o.int('seqLen', { min: 2 }, 512),
    seed: o.int('seed', { min: 0 }, 0),
    saveEvery: o.has('saveEvery') ? o.int('saveEvery', { min: 1 }) : undefined,
    evalEvery: o.has('evalEvery') ? o.int('evalEvery', { min: 1 }) : undefined,
    ...readRunOptions(fn, o),
  };
  return r;
}

/** A batch of rows with its response-token mask (1 where a target is a response token). */
export interface RowBatch {
  sb: SequenceBatch;
  mask: Uint8Array;
  /** Σ over response tokens of log π(y_t | ·) per row (property 10: prompt and padding excluded) */
  seq: Float64Array;
  /** the model's per-token log-probs at the targets (batch·seqLen) */
  logprobs: Float32Array;
}

/**
 * Forwards `rows` through a causal LM and sums each row's log-probs over its response targets
 * (NaN for every row when any log-prob is not finite). Layout: one sequence per model row
 * (sequenceBatch), or with `rowTokens` several per row (packRows: block-diagonal attention); either
 * way `sb.responseStart/responseLength` address sequence i's response tokens. `save: true` keeps
 * the activations for a backward of dLogprobs.
 */
export async function rowLogprobs(
  model: Model,
  rows: Sequence[],
  padId: number,
  opts: { save: boolean; temperature: number; rowTokens?: number },
): Promise<RowBatch> {
  const packed = opts.rowTokens === undefined ? undefined : packRows(rows, padId, opts.rowTokens);
  const sb = packed ?? sequenceBatch(rows, padId);
  const f = await model.forward({
    tokens: sb.tokens,
    targets: sb.targets,
    batch: sb.batch,
    seqLen: sb.seqLen,
    lengths: sb.lengths,
    ...(packed ? { positions: packed.positions, segments: packed.segments } : {}),
    temperature: opts.temperature,
    saveForBackward: opts.save,
  });
  const mask = Uint8Array.from(sb.targets, (x) => (x >= 0 ? 1 : 0));
  // a non-finite log-prob makes its row's sum NaN (sequenceLogprobs itself rejects non-finite input)
  const seq = !f.logprobs.every(Number.isFinite)
    ? new Float64Array(rows.length).fill(NaN)
    : packed
      ? sumResponses(f.logprobs, packed)
      : sequenceLogprobs(f.logprobs, mask, sb.batch, sb.seqLen);
  return { sb, mask, seq, logprobs: f.logprobs };
}

/** Mean of an array (0 when empty). */
export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return xs.length ? s / xs.length : 0;
}
