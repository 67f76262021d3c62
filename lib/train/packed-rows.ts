/**
 * Packed rows: several prompt + response sequences per model row, with block-diagonal attention
 * (`segments`) and RoPE positions restarting at 0 per sequence, as SFT packing does
 * (lib/data/batch.ts). Rows hold at most `rowTokens` tokens and are filled first-fit in the
 * sequences' order, so a micro-batch of short sequences takes a few dense rows instead of one
 * padded row per sequence. The pairwise trainers (preference family) and the policy-gradient loop
 * (forwardSequences below) use them.
 *
 * Layout: `batch` and `seqLen` describe the model rows; `responseStart` / `responseLength` / `starts`
 * have one entry per SEQUENCE (not per row): sequence i's response targets are the flat indices
 * responseStart[i] … responseStart[i] + responseLength[i] − 1, exactly as in the padded
 * `sequenceBatch` layout, where row = sequence. Nothing is predicted across a sequence boundary.
 *
 * Aligned packing (`align: true`): each sequence starts at a multiple of 16 tokens in its row and
 * does not cross a multiple of 256 (a longer sequence starts at one). The CPU attention sums a
 * softmax row in 16 lanes indexed by key position and the GEMM sums its K dimension in blocks of
 * kc (256 with AVX2; 1024 with AVX-512, where a sequence longer than 256 tokens can still straddle
 * a block, and then differs in the last bits); keys of other segments add exact zeros. So aligned,
 * a sequence's log-probs, entropies and values are bit-identical to its padded row's, and to the
 * sampler's log-probs (the first PPO ratio stays exactly 1), at the cost of at most 15 gap tokens
 * per sequence (positions 0, segment −1, no targets).
 */
import type { BackwardGrads, ForwardBatch, Model } from '../engine/model.js';
import { rangeError } from '../validate.js';
import type { Sequence, SequenceBatch } from '../rollout/sequences.js';

export interface PackedRows extends SequenceBatch {
  /** flat index of each sequence's first (prompt) token */
  starts: Int32Array;
  positions: Int32Array;
  /** sequence id within its row (0, 1, ...); −1 on padding */
  segments: Int32Array;
}

/** Gap tokens before a sequence of `len` tokens placed after `fill` tokens (aligned packing, see the module comment). */
const ALIGN = 16,
  BLOCK = 256;
function alignedStart(fill: number, len: number): number {
  const at = Math.ceil(fill / ALIGN) * ALIGN;
  if (len > BLOCK || Math.floor(at / BLOCK) !== Math.floor((at + len - 1) / BLOCK))
    return Math.ceil(at / BLOCK) * BLOCK;
  return at;
}

/** Packs `seqs` into rows of at most `rowTokens` tokens (first fit, in order); see the module comment. */
export function packRows(
  seqs: Sequence[],
  padId: number,
  rowTokens: number,
  opts: { align?: boolean } = {},
): PackedRows {
  const fn = 'packRows';
  if (!seqs.length) throw rangeError(fn, 'seqs.length', '>= 1', 0);
  const len = seqs.map((s) => s.promptIds.length + s.responseIds.length);
  len.forEach((l, i) => {
    if (l > rowTokens) throw rangeError(fn, `seqs[${i}] length`, `<= rowTokens (${rowTokens})`, l);
  });
  const fill: number[] = [];
  const startIn = (f: number, l: number) => (opts.align ? alignedStart(f, l) : f);
  const place = len.map((l) => {
    let row = fill.findIndex((f) => startIn(f, l) + l <= rowTokens);
    if (row < 0) row = fill.push(0) - 1;
    const at = startIn(fill[row], l);
    fill[row] = at + l;
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
    responseLength = new Int32Array(seqs.length),
    starts = new Int32Array(seqs.length);
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
    starts[i] = base;
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
    starts,
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

/** The outputs of sequences [r0, r1) of a padded batch, in its layout, and the backward of gradients in that layout. */
export interface SequenceForward {
  /** (r1 − r0)·seqLen floats: rows r0 … r1 − 1 of the padded batch */
  logprobs: Float32Array;
  entropy?: Float32Array;
  values?: Float32Array;
  /**
   * model.backward of gradients given in the same padded layout (moved into the packed rows first),
   * or `run` of them in the model's layout (e.g. a backward with the gradient all-reduce overlapped)
   */
  backward(grads: BackwardGrads, run?: (grads: BackwardGrads) => Promise<unknown>): Promise<void>;
}

/** Forward options besides the token layout (temperature, entropy, values, saveForBackward). */
export type SequenceForwardOptions = Omit<
  ForwardBatch,
  'tokens' | 'targets' | 'batch' | 'seqLen' | 'lengths' | 'positions' | 'segments'
>;

/**
 * Forwards sequences [r0, r1) of `seqs`, whose padded batch is `sb` (row b = seqs[b], sequenceBatch),
 * and returns the outputs in that padded layout. Without `packTokens` the rows are forwarded as
 * they are. With it they are packed (aligned, see the module comment) into rows of
 * max(packTokens, the longest of them) tokens; every position of a sequence's tokens is copied back
 * to its padded row (padding positions are 0), and backward moves the gradients the other way.
 * `targets: false` forwards without targets (a critic's values).
 */
export async function forwardSequences(
  model: Model,
  sb: SequenceBatch,
  seqs: readonly Sequence[],
  r0: number,
  r1: number,
  opts: { packTokens?: number; padId: number; targets?: boolean; forward: SequenceForwardOptions },
): Promise<SequenceForward> {
  const T = sb.seqLen,
    withTargets = opts.targets !== false;
  if (opts.packTokens === undefined) {
    const tokens = sb.tokens.subarray(r0 * T, r1 * T),
      lengths = sb.lengths.subarray(r0, r1);
    const f = await model.forward({
      tokens,
      ...(withTargets ? { targets: sb.targets.subarray(r0 * T, r1 * T) } : {}),
      batch: r1 - r0,
      seqLen: T,
      lengths,
      ...opts.forward,
    });
    return {
      logprobs: f.logprobs,
      entropy: f.entropy,
      values: f.values,
      backward: async (g, run = (x) => model.backward(x)) => void (await run(g)),
    };
  }
  const mine = seqs.slice(r0, r1);
  const len = mine.map((s) => s.promptIds.length + s.responseIds.length);
  const p = packRows(mine, opts.padId, Math.max(opts.packTokens, ...len), { align: true });
  const f = await model.forward({
    tokens: p.tokens,
    ...(withTargets ? { targets: p.targets } : {}),
    batch: p.batch,
    seqLen: p.seqLen,
    lengths: p.lengths,
    positions: p.positions,
    segments: p.segments,
    ...opts.forward,
  });
  const toPadded = (x: Float32Array | undefined) => {
    if (!x) return undefined;
    const out = new Float32Array((r1 - r0) * T);
    len.forEach((n, i) => out.set(x.subarray(p.starts[i], p.starts[i] + n), i * T));
    return out;
  };
  const toPacked = (x: Float32Array | undefined) => {
    if (!x) return undefined;
    const out = new Float32Array(p.batch * p.seqLen);
    len.forEach((n, i) => out.set(x.subarray(i * T, i * T + n), p.starts[i]));
    return out;
  };
  return {
    logprobs: toPadded(f.logprobs)!,
    entropy: toPadded(f.entropy),
    values: toPadded(f.values),
    backward: async (g, run = (x) => model.backward(x)) =>
      void (await run(
        Object.fromEntries(
          (['dLogprobs', 'dEntropy', 'dValues'] as const).flatMap((k) => (g[k] ? [[k, toPacked(g[k])]] : [])),
        ),
      )),
  };
}
