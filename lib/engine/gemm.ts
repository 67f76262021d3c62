/**
 * f32 matrix multiply on the engine's CPU GEMM (native/cpu/gemm.cc):
 *
 *   C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C
 *
 * Row-major with row strides lda/ldb/ldc (elements). op(A) = A (m×k, lda >= k) or, with
 * `transA`, Aᵀ where A is k×m (lda >= m); likewise B. `beta = 0` overwrites C without reading it.
 * Results are bit-identical for any thread count.
 */
import { withCallerStack } from '../errors.js';
import { native, type NativeGemmOptions } from '../native.js';
import { options, rangeError } from '../validate.js';

/** f32 operands only (the bf16-weight GEMM is the engine's, reached through a bf16 model). */
export type GemmOptions = Omit<NativeGemmOptions, 'b' | 'dtype'> & { b: Float32Array };

const KNOWN = ['transA', 'transB', 'm', 'n', 'k', 'alpha', 'beta', 'a', 'b', 'c', 'lda', 'ldb', 'ldc'] as const;

/** Elements a rows×cols view with row stride ld needs. */
function viewLength(rows: number, cols: number, ld: number): number {
  return rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
}

/** Validates gemm options (throws TypeError/RangeError naming the field); returns them resolved. */
export function checkGemmOptions(fn: string, value: unknown): Required<GemmOptions> {
  const o = options(fn, 'options', value);
  o.known(KNOWN);
  const transA = o.bool('transA', false);
  const transB = o.bool('transB', false);
  const m = o.int('m', { min: 0 });
  const n = o.int('n', { min: 0 });
  const k = o.int('k', { min: 0 });
  const lda = o.int('lda', { min: Math.max(1, transA ? m : k) }, Math.max(1, transA ? m : k));
  const ldb = o.int('ldb', { min: Math.max(1, transB ? k : n) }, Math.max(1, transB ? k : n));
  const ldc = o.int('ldc', { min: Math.max(1, n) }, Math.max(1, n));
  const alpha = o.number('alpha', {}, 1);
  const beta = o.number('beta', {}, 0);
  const a = o.f32('a', { min: viewLength(transA ? k : m, transA ? m : k, lda) });
  const b = o.f32('b', { min: viewLength(transB ? n : k, transB ? k : n, ldb) });
  const c = o.f32('c', { min: viewLength(m, n, ldc) });
  if (c.buffer === a.buffer || c.buffer === b.buffer) {
    const overlap = (x: Float32Array) =>
      x.buffer === c.buffer && x.byteOffset < c.byteOffset + c.byteLength && c.byteOffset < x.byteOffset + x.byteLength;
    if (overlap(a) || overlap(b)) throw rangeError(fn, 'options.c', 'a buffer not overlapping a or b', c);
  }
  return { transA, transB, m, n, k, alpha, beta, a, b, c, lda, ldb, ldc };
}

/** C = alpha·op(A)·op(B) + beta·C, on a worker thread. Do not touch a, b, c until it resolves. */
export function gemm(opts: GemmOptions): Promise<void> {
  const resolved = checkGemmOptions('gemm', opts);
  return withCallerStack(() => native().gemm(resolved));
}

/** The same contract in plain float64 loops: the reference tests compare with. */
export function gemmReference(opts: GemmOptions): void {
  const { transA, transB, m, n, k, alpha, beta, a, b, c, lda, ldb, ldc } = checkGemmOptions('gemmReference', opts);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[p * lda + i] : a[i * lda + p];
        const bv = transB ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      c[i * ldc + j] = alpha * acc + (beta === 0 ? 0 : beta * c[i * ldc + j]);
    }
  }
}
