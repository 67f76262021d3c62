/**
 * Tokenized examples -> the model's `ForwardBatch` arrays (see lib/engine/model.ts): `tokens` and
 * `targets` are Int32Array of batch·seqLen, row-major; `targets[b·T + t]` is the token the model
 * should predict after position t (`ids[t+1]` where `lossMask[t+1] = 1`), −1 where there is none;
 * rows are right-padded with `padId` after `lengths[b]` tokens.
 *
 * Packing puts several documents in one row: `segments` keeps attention inside a document,
 * `positions` restart at 0 for each document, and the last token of a document has no target, so
 * nothing is ever predicted across a document boundary.
 */
import { options, rangeError, typeError } from '../validate.js';
import { checkExample, type TokenizedExample } from './tokenize.js';

/** Rows ready for `Model.forward`: spread `{tokens, targets, batch, seqLen, lengths, positions, segments}` into a ForwardBatch. */
export interface TokenBatch {
  batch: number;
  seqLen: number;
  tokens: Int32Array;
  /** targets[b·T + t] = ids[t+1] where lossMask[t+1] = 1, else −1 (always −1 at a document's last token). */
  targets: Int32Array;
  /** real length of each row; right padding with padId after it */
  lengths: Int32Array;
  /** packed batches only: position of each token within its document (0 on padding) */
  positions?: Int32Array;
  /** packed batches only: document id within the row (0, 1, ...); −1 on padding */
  segments?: Int32Array;
  /** count of targets != −1 */
  numTargets: number;
}

/** Segment id of padding in packed rows; documents use 0, 1, 2, ... */
export const PAD_SEGMENT = -1;

function checkExamples(fn: string, examples: unknown): TokenizedExample[] {
  if (!Array.isArray(examples)) throw typeError(fn, 'examples', 'an array of {ids, lossMask} examples', examples);
  examples.forEach((ex, i) => {
    if (checkExample(fn, `examples[${i}]`, ex) < 1) throw rangeError(fn, `examples[${i}].ids.length`, '>= 1', 0);
  });
  return examples;
}

/**
 * Writes example `ex` (its first `n` tokens) at offset `at` of the flat arrays; returns its target count.
 * Targets stay inside [at, at + n): the last token gets −1.
 */
function place(ex: TokenizedExample, n: number, at: number, tokens: Int32Array, targets: Int32Array): number {
  let count = 0;
  for (let t = 0; t < n; t++) {
    tokens[at + t] = ex.ids[t];
    if (t + 1 < n && ex.lossMask[t + 1]) {
      targets[at + t] = ex.ids[t + 1];
      count++;
    }
  }
  return count;
}

/**
 * One example per row, right-padded with `padId` to `seqLen` (default: the longest example).
 * An example longer than an explicit `seqLen` is a RangeError naming its index; empty examples are
 * rejected too.
 */
export function padBatch(examples: TokenizedExample[], opts: { padId: number; seqLen?: number }): TokenBatch {
  const fn = 'padBatch';
  checkExamples(fn, examples);
  if (examples.length === 0) throw rangeError(fn, 'examples.length', '>= 1', 0);
  const o = options(fn, 'options', opts);
  o.known(['padId', 'seqLen']);
  const padId = o.int('padId', { min: 0 });
  const longest = examples.reduce((m, e) => Math.max(m, e.ids.length), 0);
  const seqLen = o.int('seqLen', { min: 1 }, longest);
  examples.forEach((e, i) => {
    if (e.ids.length > seqLen) throw rangeError(fn, `examples[${i}].ids.length`, `<= seqLen (${seqLen})`, e.ids.length);
  });
  const B = examples.length;
  const tokens = new Int32Array(B * seqLen).fill(padId);
  const targets = new Int32Array(B * seqLen).fill(-1);
  const lengths = new Int32Array(B);
  let numTargets = 0;
  examples.forEach((e, b) => {
    lengths[b] = e.ids.length;
    numTargets += place(e, e.ids.length, b * seqLen, tokens, targets);
  });
  return { batch: B, seqLen, tokens, targets, lengths, numTargets };
}

/** Statistics of {@link packExamples}. */
export interface PackStats {
  examples: number;
  /** examples longer than seqLen, cut to their first seqLen tokens */
  truncated: number;
  rows: number;
  /** non-padding tokens / (rows · seqLen); 0 when there are no rows */
  fill: number;
}

/**
 * Greedy packing in order (next fit): each example goes into the current row if it fits, else it
 * starts a new row; an example longer than `seqLen` is cut to its first `seqLen` tokens and counted
 * in `stats.truncated`. Within a row, document k has segment id k and positions 0..len−1; padding
 * after the last document has segment {@link PAD_SEGMENT} (−1), position 0, token `padId`, and
 * `lengths[row]` is the number of document tokens. Rows are grouped into batches of
 * `rowsPerBatch` (the last batch may have fewer rows).
 */
export function packExamples(
  examples: TokenizedExample[],
  opts: { seqLen: number; padId: number; rowsPerBatch: number },
): { batches: TokenBatch[]; stats: PackStats } {
  const fn = 'packExamples';
  checkExamples(fn, examples);
  const o = options(fn, 'options', opts);
  o.known(['seqLen', 'padId', 'rowsPerBatch']);
  const seqLen = o.int('seqLen', { min: 1 });
  const padId = o.int('padId', { min: 0 });
  const rowsPerBatch = o.int('rowsPerBatch', { min: 1 });

  // Plan the rows: lists of [example index, tokens taken].
  const rows: Array<Array<[number, number]>> = [];
  let used = seqLen; // forces a new row for the first example
  let truncated = 0;
  let filled = 0;
  examples.forEach((e, i) => {
    const n = Math.min(e.ids.length, seqLen);
    if (n < e.ids.length) truncated++;
    if (used + n > seqLen) (rows.push([]), (used = 0));
    rows[rows.length - 1].push([i, n]);
    used += n;
    filled += n;
  });

  const batches: TokenBatch[] = [];
  for (let r0 = 0; r0 < rows.length; r0 += rowsPerBatch) {
    const group = rows.slice(r0, r0 + rowsPerBatch);
    const B = group.length;
    const tokens = new Int32Array(B * seqLen).fill(padId);
    const targets = new Int32Array(B * seqLen).fill(-1);
    const positions = new Int32Array(B * seqLen);
    const segments = new Int32Array(B * seqLen).fill(PAD_SEGMENT);
    const lengths = new Int32Array(B);
    let numTargets = 0;
    group.forEach((docs, b) => {
      let at = b * seqLen;
      docs.forEach(([i, n], k) => {
        numTargets += place(examples[i], n, at, tokens, targets);
        for (let t = 0; t < n; t++) ((positions[at + t] = t), (segments[at + t] = k));
        at += n;
      });
      lengths[b] = at - b * seqLen;
    });
    batches.push({ batch: B, seqLen, tokens, targets, lengths, positions, segments, numTargets });
  }
  const fill = rows.length ? filled / (rows.length * seqLen) : 0;
  return { batches, stats: { examples: examples.length, truncated, rows: rows.length, fill } };
}

/**
 * Stacks single- or multi-row batches of the same seqLen into one batch (rows in order). Used to
 * shuffle packed rows between epochs without re-packing (which would change the row count).
 */
export function stackBatches(parts: TokenBatch[]): TokenBatch {
  if (!parts.length) throw rangeError('stackBatches', 'parts.length', '>= 1', 0);
  const T = parts[0].seqLen;
  parts.forEach((p, i) => {
    if (p.seqLen !== T) throw rangeError('stackBatches', `parts[${i}].seqLen`, `${T}`, p.seqLen);
  });
  const B = parts.reduce((s, p) => s + p.batch, 0);
  const out: TokenBatch = {
    batch: B,
    seqLen: T,
    tokens: new Int32Array(B * T),
    targets: new Int32Array(B * T),
    lengths: new Int32Array(B),
    numTargets: 0,
  };
  const packed = parts.some((p) => p.positions);
  if (packed) ((out.positions = new Int32Array(B * T)), (out.segments = new Int32Array(B * T)));
  let row = 0;
  for (const p of parts) {
    out.tokens.set(p.tokens, row * T);
    out.targets.set(p.targets, row * T);
    out.lengths.set(p.lengths, row);
    if (packed) {
      out.positions!.set(p.positions ?? Int32Array.from({ length: p.batch * T }, (_, i) => i % T), row * T);
      out.segments!.set(p.segments ?? new Int32Array(p.batch * T), row * T);
    }
    out.numTargets += p.numTargets;
    row += p.batch;
  }
  return out;
}

/**
 * Rows [begin, end) of a batch as a batch of their own (views, no copy): a data-parallel rank's
 * share of a global batch (lib/distributed shardRange). `numTargets` counts the slice's targets.
 */
export function sliceBatch(b: TokenBatch, begin: number, end: number): TokenBatch {
  if (!(Number.isInteger(begin) && Number.isInteger(end) && 0 <= begin && begin <= end && end <= b.batch))
    throw rangeError('sliceBatch', '[begin, end)', `a row range within [0, ${b.batch}]`, `[${begin}, ${end})`);
  const T = b.seqLen;
  const targets = b.targets.subarray(begin * T, end * T);
  let numTargets = 0;
  for (const t of targets) if (t >= 0) numTargets++;
  const out: TokenBatch = {
    batch: end - begin,
    seqLen: T,
    tokens: b.tokens.subarray(begin * T, end * T),
    targets,
    lengths: b.lengths.subarray(begin, end),
    numTargets,
  };
  if (b.positions) out.positions = b.positions.subarray(begin * T, end * T);
  if (b.segments) out.segments = b.segments.subarray(begin * T, end * T);
  return out;
}
