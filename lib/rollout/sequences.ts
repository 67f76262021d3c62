/**
 * Prompt + response sequences as model batches. Row b holds prompt_b ++ response_b, right-padded.
 * Response token i of row b sits at position p_b + i (p_b = prompt length) and is predicted from
 * position p_b + i − 1, so every per-token quantity of a response (log-prob, entropy, value, KL,
 * advantage) lives at index b·T + p_b − 1 + i of the batch arrays:
 *
 *   targets[b·T + p_b − 1 + i] = response_b[i]          (−1 everywhere else)
 *   values  read at the same index: V(state before token i)
 *   a reward model's score: the value at the sequence's last token (index b·T + len_b − 1)
 */
import { rangeError } from '../validate.js';

export interface Sequence {
  promptIds: Int32Array;
  responseIds: Int32Array;
}

export interface SequenceBatch {
  batch: number;
  seqLen: number;
  tokens: Int32Array;
  targets: Int32Array;
  lengths: Int32Array;
  /** first response position's target index offset per row: b·T + promptLength − 1 */
  responseStart: Int32Array;
  responseLength: Int32Array;
}

export function sequenceBatch(seqs: Sequence[], padId: number): SequenceBatch {
  if (!seqs.length) throw rangeError('sequenceBatch', 'seqs.length', '>= 1', 0);
  const B = seqs.length;
  const T = Math.max(...seqs.map((s) => s.promptIds.length + s.responseIds.length));
  const tokens = new Int32Array(B * T).fill(padId);
  const targets = new Int32Array(B * T).fill(-1);
  const lengths = new Int32Array(B),
    responseStart = new Int32Array(B),
    responseLength = new Int32Array(B);
  seqs.forEach((s, b) => {
    const p = s.promptIds.length,
      r = s.responseIds.length;
    if (p < 1) throw rangeError('sequenceBatch', `seqs[${b}].promptIds.length`, '>= 1', p);
    tokens.set(s.promptIds, b * T);
    tokens.set(s.responseIds, b * T + p);
    for (let i = 0; i < r; i++) targets[b * T + p - 1 + i] = s.responseIds[i];
    lengths[b] = p + r;
    responseStart[b] = b * T + p - 1;
    responseLength[b] = r;
  });
  return { batch: B, seqLen: T, tokens, targets, lengths, responseStart, responseLength };
}

/** The per-token values of row b's response from a batch-layout array (length responseLength[b]). */
export function responseSlice(x: ArrayLike<number>, sb: SequenceBatch, b: number): Float64Array {
  const out = new Float64Array(sb.responseLength[b]);
  for (let i = 0; i < out.length; i++) out[i] = x[sb.responseStart[b] + i];
  return out;
}

/** Writes per-response arrays back into a batch-layout Float32Array (zeros elsewhere). */
export function scatterResponses(perRow: ArrayLike<number>[], sb: SequenceBatch): Float32Array {
  const out = new Float32Array(sb.batch * sb.seqLen);
  perRow.forEach((row, b) => {
    if (row.length !== sb.responseLength[b])
      throw rangeError('scatterResponses', `perRow[${b}].length`, `${sb.responseLength[b]}`, row.length);
    for (let i = 0; i < row.length; i++) out[sb.responseStart[b] + i] = row[i];
  });
  return out;
}

/** Index of each row's last token (where a reward model reads its score). */
export function lastTokenIndex(sb: SequenceBatch, b: number): number {
  return b * sb.seqLen + sb.lengths[b] - 1;
}
