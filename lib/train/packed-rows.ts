/**
 * Packed rows for the pairwise trainers: several prompt + response sequences per model row, with
 * block-diagonal attention (`segments`) and RoPE positions restarting at 0 per sequence, as SFT
 * packing does (lib/data/batch.ts). Rows hold at most `rowTokens` tokens and are filled first-fit
 * in the sequences' order, so a micro-batch of short pairs takes a few dense rows instead of one
 * padded row per sequence.
 *
 * Layout: `batch` and `seqLen` describe the model rows; `responseStart` / `responseLength` have one
 * entry per SEQUENCE (not per row): sequence i's response targets are the flat indices
 * responseStart[i] … responseStart[i] + responseLength[i] − 1, exactly as in the padded
 * `sequenceBatch` layout, where row = sequence. Nothing is predicted across a sequence boundary.
 */
import { rangeError } from '../validate.js';
import type { Sequence, SequenceBatch } from '../rollout/sequences.js';

export interface PackedRows extends SequenceBatch {
  positions: Int32Array;
  /** sequence id within its row (0, 1, ...); −1 on padding */
  segments: Int32Array;
}

/** Packs `seqs` into rows of at most `rowTokens` tokens (first fit, in order); see the module comment. */
export function packRows(seqs: Sequence[], padId: number, rowTokens: number): PackedRows {
  const fn = 'packRows';
  if (!seqs.length) throw rangeError(fn, 'seqs.length', '>= 1', 0);
  const len = seqs.map((s) => s.promptIds.length + s.responseIds.length);
  len.forEach((l, i) => {
    if (l > rowTokens) throw rangeError(fn, `seqs[${i}] length`, `<= rowTokens (${rowTokens})`, l);
  });
  const fill: number[] = [];
  const place = len.map((l) => {
    let row = fill.findIndex((f) => f + l <= rowTokens);
    if (row < 0) row = fill.push(0) - 1;
    const at = fill[row];
    fill[row] += l;
    return { row, at };
  });
  const B = fill.length,
    T = Math.max(...fill);
  const tokens = new Int32Array(B * T).fill(padId);
  const targets = new Int32Array(B * T).fill(-1);
  const positions = new Int32Array(B * T);
  const segments = new Int32Array(B * T).fill(-1);
  const nextSegment = new Int32Array(B);
  const responseStart = new Int32Array(seqs.length),
    responseLength = new Int32Array(seqs.length);
  seqs.forEach((s, i) => {
    const p = s.promptIds.length,
      r = s.responseIds.length;
    if (p < 1) throw rangeError(fn, `seqs[${i}].promptIds.length`, '>= 1', p);
    const base = place[i].row * T + place[i].at;
    const seg = nextSegment[place[i].row]++;
    tokens.set(s.promptIds, base);
    tokens.set(s.responseIds, base + p);
    for (let t = 0; t < p + r; t++) ((positions[base + t] = t), (segments[base + t] = seg));
    for (let t = 0; t < r; t++) targets[base + p - 1 + t] = s.responseIds[t];
    responseStart[i] = base + p - 1;
    responseLength[i] = r;
  });
  return {
    batch: B,
    seqLen: T,
    tokens,
    targets,
    lengths: Int32Array.from(fill),
    responseStart,
    responseLength,
    positions,
    segments,
  };
}

/** Σ of each sequence's response-token values (float64, in token order). */
export function sumResponses(x: ArrayLike<number>, sb: SequenceBatch): Float64Array {
  return Float64Array.from(sb.responseStart, (start, i) => {
    let s = 0;
    for (let t = 0; t < sb.responseLength[i]; t++) s += x[start + t];
    return s;
  });
}

/** d/d(token log-prob) from d/d(sequence log-prob): `dSeq[i]` on each response token of sequence i (flat, batch·seqLen). */
export function spreadToResponses(dSeq: ArrayLike<number>, sb: SequenceBatch): Float64Array {
  const out = new Float64Array(sb.batch * sb.seqLen);
  for (let i = 0; i < sb.responseStart.length; i++)
    for (let t = 0; t < sb.responseLength[i]; t++) out[sb.responseStart[i] + t] = dSeq[i];
  return out;
}
