/**
 * Shared pieces of the loss references: argument reading with path-aware messages (the
 * `fn: expected path to be X, received Y` convention of lib/validate.ts, with bare argument
 * names: `dpoLoss: expected beta to be a finite number > 0, received 0`), numerically stable
 * σ / log σ / logsumexp, and masked token aggregation.
 *
 * Every loss takes plain arrays (`ArrayLike<number>`: number[], Float32Array, Float64Array, or any
 * other numeric typed array for masks), computes in float64 and returns Float64Arrays.
 */
import {
  checkInt,
  checkNumber,
  checkObject,
  checkOneOf,
  closest,
  rangeError,
  typeError,
  type NumberBounds,
} from '../validate.js';

/** A numeric input array: number[], Float32Array, Float64Array, Int32Array, Uint8Array, ... */
export type NumArray = ArrayLike<number>;

/** How per-token losses are reduced to one number (see aggregationWeights in this module). */
export type Aggregation = 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum' | 'seq-mean-token-sum-norm';
export const AGGREGATIONS: readonly Aggregation[] = [
  'token-mean',
  'seq-mean-token-mean',
  'seq-mean-token-sum',
  'seq-mean-token-sum-norm',
];

function isNumArray(v: unknown): v is NumArray {
  if (Array.isArray(v)) return true;
  return (
    ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array)
  );
}

/** Checks a numeric array with finite entries (and optional bounds per entry). */
export function checkArray(fn: string, path: string, value: unknown, bounds?: NumberBounds, minLength = 0): NumArray {
  if (!isNumArray(value)) throw typeError(fn, path, 'an array of numbers (number[] or a typed array)', value);
  if (value.length < minLength) throw rangeError(fn, `${path}.length`, `>= ${minLength}`, value.length);
  const { min = -Infinity, max = Infinity, gt = -Infinity, lt = Infinity } = bounds ?? {};
  for (let i = 0; i < value.length; i++) {
    const v = value[i];
    if (typeof v !== 'number') throw typeError(fn, `${path}[${i}]`, 'a number', v);
    if (!Number.isFinite(v)) throw rangeError(fn, `${path}[${i}]`, 'a finite number', v);
    // the message (with the bounds spelled out) is only built on failure
    if (bounds && !(v >= min && v <= max && (v > gt || gt === -Infinity) && (v < lt || lt === Infinity)))
      checkNumber(fn, `${path}[${i}]`, v, bounds);
  }
  return value;
}

/** Checks a 0/1 mask. */
export function checkMask(fn: string, path: string, value: unknown): NumArray {
  if (!isNumArray(value)) throw typeError(fn, path, 'an array of 0/1 values (number[] or a typed array)', value);
  for (let i = 0; i < value.length; i++) {
    const v = value[i];
    if (v !== 0 && v !== 1) throw rangeError(fn, `${path}[${i}]`, '0 or 1', v);
  }
  return value;
}

/** `b.length === a.length`, else a RangeError naming both arguments. */
export function sameLength(fn: string, pathA: string, a: NumArray, pathB: string, b: NumArray): void {
  if (b.length !== a.length)
    throw rangeError(fn, `${pathB}.length`, `equal to ${pathA}.length (${a.length})`, b.length);
}

/** `a.length === n`, described by `what` (e.g. "batch * seqLen (12)"). */
export function exactLength(fn: string, path: string, a: NumArray, n: number, what: string): void {
  if (a.length !== n) throw rangeError(fn, `${path}.length`, what, a.length);
}

/**
 * Reader for the single named-arguments object of a loss: `const a = args('dpoLoss', value,
 * ['policyChosen', ...])` rejects unknown keys (suggesting the nearest known one), then
 * `a.array('policyChosen')`, `a.number('beta', {gt: 0})`, ... validate with the bare key as path.
 */
export function args(fn: string, value: unknown, known: readonly string[]) {
  const obj = checkObject(fn, 'arguments', value);
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const near = closest(key, known);
    throw new TypeError(`${fn}: unknown argument ${key}${near ? ` (did you mean ${near}?)` : ''}`);
  }
  return {
    has: (key: string) => obj[key] !== undefined,
    array: (key: string, bounds?: NumberBounds, minLength = 0) => checkArray(fn, key, obj[key], bounds, minLength),
    mask: (key: string) => checkMask(fn, key, obj[key]),
    number(key: string, bounds: NumberBounds = {}, fallback?: number): number {
      if (obj[key] === undefined && fallback !== undefined) return fallback;
      return checkNumber(fn, key, obj[key], bounds);
    },
    int(key: string, bounds: NumberBounds = {}, fallback?: number): number {
      if (obj[key] === undefined && fallback !== undefined) return fallback;
      return checkInt(fn, key, obj[key], bounds);
    },
    oneOf<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
      if (obj[key] === undefined && fallback !== undefined) return fallback;
      return checkOneOf(fn, key, obj[key], allowed);
    },
  };
}

/** Checks `groupSize` (integer >= min) and that it divides `n` (the length of `path`). */
export function checkGroups(fn: string, path: string, n: number, groupSize: unknown, min = 1): number {
  const k = checkInt(fn, 'groupSize', groupSize, { min });
  if (n % k !== 0) throw rangeError(fn, `${path}.length`, `a multiple of groupSize (${k})`, n);
  return k;
}

// ---- numerics ------------------------------------------------------------------------------

/** σ(x) = 1 / (1 + e^−x), without overflow. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** log σ(x) = −softplus(−x), stable for large |x|. */
export function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

/** log Σ_i exp(x[off + i]) for i < n. */
export function logSumExp(x: NumArray, off: number, n: number): number {
  let m = -Infinity;
  for (let i = 0; i < n; i++) m = Math.max(m, x[off + i]);
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(x[off + i] - m);
  return m + Math.log(s);
}

/** The sum of a mask (number of valid tokens). */
export function maskCount(mask: NumArray): number {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  return n;
}

/**
 * Per-token weights w_t with loss = Σ_t w_t ℓ_t, so that dloss/dℓ_t = w_t:
 * - `token-mean`: w_t = m_t / Σ m (every valid token of the batch weighs the same);
 * - `seq-mean-token-mean`: the flat arrays are the concatenation of sequences of lengths
 *   `seqLengths` (summing to the array length); w_t = m_t / (n_b · B') where n_b is the number of
 *   valid tokens of t's sequence and B' the number of sequences with n_b > 0 (empty sequences are
 *   left out of the mean rather than producing NaN);
 * - `seq-mean-token-sum`: the same sequences; w_t = m_t / B' (each sequence's token SUM, averaged
 *   over sequences: longer responses weigh more; veRL's loss_agg_mode of that name);
 * - `seq-mean-token-sum-norm`: w_t = m_t / (B · lengthNormalizer), B every sequence, the normaliser a
 *   constant (the largest response length): Dr. GRPO's length-unbiased form (TRL's loss_type "dr_grpo").
 * With no valid token at all every weight is 0 (loss 0, gradient 0).
 */
export function aggregationWeights(
  fn: string,
  mask: NumArray,
  aggregation: Aggregation,
  seqLengths: unknown,
  lengthNormalizer?: unknown,
): Float64Array {
  const n = mask.length;
  const w = new Float64Array(n);
  if (aggregation === 'token-mean') {
    const count = maskCount(mask);
    if (count > 0) for (let i = 0; i < n; i++) w[i] = mask[i] / count;
    return w;
  }
  if (seqLengths === undefined)
    throw typeError(
      fn,
      'seqLengths',
      `an array of sequence lengths (required by aggregation '${aggregation}')`,
      seqLengths,
    );
  const lengths = checkArray(fn, 'seqLengths', seqLengths, { min: 0 });
  let total = 0;
  for (let b = 0; b < lengths.length; b++) {
    if (!Number.isInteger(lengths[b])) throw typeError(fn, `seqLengths[${b}]`, 'an integer >= 0', lengths[b]);
    total += lengths[b];
  }
  if (total !== n)
    throw rangeError(fn, 'seqLengths', `lengths summing to mask.length (${n})`, `lengths summing to ${total}`);
  const counts: number[] = [];
  let nonEmpty = 0;
  for (let b = 0, off = 0; b < lengths.length; off += lengths[b], b++) {
    let c = 0;
    for (let i = off; i < off + lengths[b]; i++) c += mask[i];
    counts.push(c);
    if (c > 0) nonEmpty++;
  }
  const norm =
    aggregation === 'seq-mean-token-sum-norm' ? checkNumber(fn, 'lengthNormalizer', lengthNormalizer, { gt: 0 }) : 0;
  for (let b = 0, off = 0; b < lengths.length; off += lengths[b], b++) {
    if (counts[b] === 0) continue;
    const perSeq =
      aggregation === 'seq-mean-token-sum'
        ? nonEmpty
        : aggregation === 'seq-mean-token-sum-norm'
          ? lengths.length * norm
          : counts[b] * nonEmpty;
    for (let i = off; i < off + lengths[b]; i++) w[i] = mask[i] / perSeq;
  }
  return w;
}

/** Masked mean Σ m_t x_t / Σ m_t (0 when nothing is valid). */
export function maskedMean(x: NumArray, mask: NumArray): number {
  let s = 0,
    c = 0;
  for (let i = 0; i < x.length; i++) if (mask[i]) ((s += x[i]), (c += 1));
  return c > 0 ? s / c : 0;
}

// ---- pieces shared by the preference losses ------------------------------------------------

type ArgsReader = ReturnType<typeof args>;

/**
 * Reads `policyChosen, policyRejected, refChosen, refRejected` (sequence log-probs, equal lengths,
 * at least one pair) and returns the log-ratios h_w = policyChosen − refChosen and
 * h_l = policyRejected − refRejected.
 */
export function readPairs(fn: string, a: ArgsReader): { hW: Float64Array; hL: Float64Array } {
  const pc = a.array('policyChosen', undefined, 1);
  const pr = a.array('policyRejected');
  const rc = a.array('refChosen');
  const rr = a.array('refRejected');
  sameLength(fn, 'policyChosen', pc, 'policyRejected', pr);
  sameLength(fn, 'policyChosen', pc, 'refChosen', rc);
  sameLength(fn, 'policyChosen', pc, 'refRejected', rr);
  const n = pc.length;
  const hW = new Float64Array(n),
    hL = new Float64Array(n);
  for (let i = 0; i < n; i++) ((hW[i] = pc[i] - rc[i]), (hL[i] = pr[i] - rr[i]));
  return { hW, hL };
}

/** Implicit-reward diagnostics of a pairwise loss: β·h_w, β·h_l, accuracy and mean margin. */
export function pairDiagnostics(beta: number, hW: Float64Array, hL: Float64Array) {
  const n = hW.length;
  const rewardsChosen = new Float64Array(n),
    rewardsRejected = new Float64Array(n);
  let correct = 0,
    margin = 0;
  for (let i = 0; i < n; i++) {
    rewardsChosen[i] = beta * hW[i];
    rewardsRejected[i] = beta * hL[i];
    if (rewardsChosen[i] > rewardsRejected[i]) correct++;
    margin += (rewardsChosen[i] - rewardsRejected[i]) / n;
  }
  return { rewardsChosen, rewardsRejected, accuracy: correct / n, margin };
}

/** Reads `policy, ref` (sequence log-probs of K-sample groups) and `groupSize`; returns h = policy − ref. */
export function readGroups(fn: string, a: ArgsReader, groupSize: unknown): { h: Float64Array; k: number } {
  const policy = a.array('policy', undefined, 1);
  const ref = a.array('ref');
  sameLength(fn, 'policy', policy, 'ref', ref);
  const k = checkGroups(fn, 'policy', policy.length, groupSize, 2);
  const h = new Float64Array(policy.length);
  for (let i = 0; i < h.length; i++) h[i] = policy[i] - ref[i];
  return { h, k };
}

/** Per-group log-softmax of `scale · x` over consecutive groups of size k. */
export function groupLogSoftmax(x: NumArray, k: number, scale: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let off = 0; off < x.length; off += k) {
    for (let i = 0; i < k; i++) out[off + i] = scale * x[off + i];
    const lse = logSumExp(out, off, k);
    for (let i = 0; i < k; i++) out[off + i] -= lse;
  }
  return out;
}
