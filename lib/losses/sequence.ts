/**
 * Connecting sequence-level losses to the model's per-token heads (docs/algorithms.md §1 notation, 1.4).
 *
 * The model returns per-token log-probs `tokenLogp[b·seqLen + t] = log π(y_t | x, y_<t)` for a
 * `batch × seqLen` row-major block. Sequence log-probs sum them over the response tokens only
 * (`mask = 1`; prompt and padding are 0), so the per-token gradient of a sequence loss is
 * `dSeq[b]` on every response token of row b and 0 elsewhere (property 10: prompt tokens never
 * contribute). The `average` option divides by the number of response tokens (TRL's IPO and
 * SimPO-style length normalisation).
 */
import { checkBoolean, checkInt, checkObject } from '../validate.js';
import { args, checkArray, checkMask, exactLength, maskCount, sameLength, type NumArray } from './common.js';

export interface SequenceOptions {
  /** divide each row's sum by its number of response tokens (rows with none give 0); default false */
  average?: boolean;
}

function readShape(fn: string, batch: unknown, seqLen: unknown): [number, number] {
  return [checkInt(fn, 'batch', batch, { min: 0 }), checkInt(fn, 'seqLen', seqLen, { min: 0 })];
}

function rowCounts(mask: NumArray, batch: number, seqLen: number): Float64Array {
  const c = new Float64Array(batch);
  for (let b = 0; b < batch; b++) for (let t = 0; t < seqLen; t++) c[b] += mask[b * seqLen + t];
  return c;
}

function readAverage(fn: string, opts: SequenceOptions | undefined): boolean {
  if (opts === undefined) return false;
  const o = checkObject(fn, 'options', opts);
  return o.average === undefined ? false : checkBoolean(fn, 'options.average', o.average);
}

/**
 * `seq[b] = Σ_t mask[b,t] · tokenLogp[b,t]` (or that divided by Σ_t mask[b,t] with `average`):
 * `log π(y|x)` over response tokens only (docs/algorithms.md §1,).
 * @param tokenLogp per-token log-probs, `batch · seqLen`, row-major
 * @param mask 1 on response tokens, 0 on prompt and padding, same layout
 * @returns Float64Array(batch)
 */
export function sequenceLogprobs(
  tokenLogp: NumArray,
  mask: NumArray,
  batch: number,
  seqLen: number,
  opts?: SequenceOptions,
): Float64Array {
  const fn = 'sequenceLogprobs';
  const [B, T] = readShape(fn, batch, seqLen);
  checkArray(fn, 'tokenLogp', tokenLogp);
  checkMask(fn, 'mask', mask);
  exactLength(fn, 'tokenLogp', tokenLogp, B * T, `batch * seqLen (${B * T})`);
  sameLength(fn, 'tokenLogp', tokenLogp, 'mask', mask);
  const average = readAverage(fn, opts);
  const out = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let t = 0; t < T; t++) if (mask[b * T + t]) s += tokenLogp[b * T + t];
    out[b] = s;
  }
  if (average) {
    const c = rowCounts(mask, B, T);
    for (let b = 0; b < B; b++) out[b] = c[b] > 0 ? out[b] / c[b] : 0;
  }
  return out;
}

/**
 * The per-token gradient of a loss given its gradient w.r.t. the sequence log-probs of
 * {@link sequenceLogprobs}: `dTok[b,t] = mask[b,t] · dSeq[b]` (divided by the row's response-token
 * count with `average`). Feed it to the model's backward as `dLogprobs`.
 * @returns Float64Array(batch · seqLen)
 */
export function spreadSequenceGrad(
  dSeq: NumArray,
  mask: NumArray,
  batch: number,
  seqLen: number,
  opts?: SequenceOptions,
): Float64Array {
  const fn = 'spreadSequenceGrad';
  const [B, T] = readShape(fn, batch, seqLen);
  checkArray(fn, 'dSeq', dSeq);
  checkMask(fn, 'mask', mask);
  exactLength(fn, 'dSeq', dSeq, B, `batch (${B})`);
  exactLength(fn, 'mask', mask, B * T, `batch * seqLen (${B * T})`);
  const average = readAverage(fn, opts);
  const c = average ? rowCounts(mask, B, T) : undefined;
  const out = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    const g = c ? (c[b] > 0 ? dSeq[b] / c[b] : 0) : dSeq[b];
    for (let t = 0; t < T; t++) if (mask[b * T + t]) out[b * T + t] = g;
  }
  return out;
}

/**
 * Next-token-prediction (PTX-style) regulariser, docs/algorithms.md §1.4:
 * `L_NTP = −mean over valid tokens of log π(y*_t | x*, y*_<t)`, so `dLogp_t = −mask_t / Σ mask`.
 * The actor objective is `L_clip + λ_NTP · L_NTP` (ChatGLM-RLHF, docs/algorithms.md §2.5): scale `dLogp` by λ.
 * With no valid token the loss and gradient are 0.
 */
export function ntpLoss(input: { logp: NumArray; mask: NumArray }): {
  loss: number;
  dLogp: Float64Array;
  tokens: number;
} {
  const fn = 'ntpLoss';
  const a = args(fn, input, ['logp', 'mask']);
  const logp = a.array('logp');
  const mask = a.mask('mask');
  sameLength(fn, 'logp', logp, 'mask', mask);
  const n = maskCount(mask);
  const dLogp = new Float64Array(logp.length);
  let loss = 0;
  if (n > 0) {
    for (let i = 0; i < logp.length; i++) {
      if (!mask[i]) continue;
      loss -= logp[i] / n;
      dLogp[i] = -1 / n;
    }
  }
  return { loss, dLogp, tokens: n };
}
