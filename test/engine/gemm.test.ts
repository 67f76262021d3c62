// gemm against the float64 reference on random shapes (odd sizes 1..300), every transpose, beta
// 0/1/other, padded leading dimensions; argument errors name the field.
import t from 'tap';
import { gemm, gemmReference } from '../../lib/engine/gemm.js';
import { forEachDevice } from '../helpers/devices.js';
import { Rng } from '../helpers/random.js';
import { assertClose } from '../helpers/tolerance.js';

/** The m×n part of a row-major matrix with row stride ld. */
function rows(x: Float32Array, m: number, n: number, ld: number): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) out.set(x.subarray(i * ld, i * ld + n), i * n);
  return out;
}

function paddingUntouched(got: Float32Array, before: Float32Array, m: number, n: number, ld: number): boolean {
  for (let i = 0; i < m; i++)
    for (let j = n; j < ld; j++) if (!Object.is(got[i * ld + j], before[i * ld + j])) return false;
  return true;
}

t.test('random shapes against the float64 reference', (t) =>
  forEachDevice(t, async (t) => {
    const rng = new Rng(1);
    for (let n = 0; n < 40; n++) {
      const transA = rng.next() < 0.5,
        transB = rng.next() < 0.5;
      const m = n % 9 === 0 ? 1 : rng.int(1, 300),
        nn = n % 13 === 0 ? 2 : rng.int(1, 300),
        k = rng.int(1, 300);
      const lda = (transA ? m : k) + rng.int(0, 3),
        ldb = (transB ? k : nn) + rng.int(0, 3),
        ldc = nn + rng.int(0, 3);
      const beta = rng.pick([0, 1, -0.5]);
      const a = rng.f32((transA ? k : m) * lda),
        b = rng.f32((transB ? nn : k) * ldb),
        c = rng.f32(m * ldc);
      if (beta === 0) c.fill(NaN); // beta = 0 must not read C
      const ref = Float32Array.from(c);
      const opts = { transA, transB, m, n: nn, k, lda, ldb, ldc, alpha: 1, beta, a, b };
      await gemm({ ...opts, c });
      gemmReference({ ...opts, c: ref });
      // |a|,|b| <= 1 so |sum| <= k: fp32 accumulation error is bounded by ~k·eps32
      const label = `m=${m} n=${nn} k=${k} transA=${transA} transB=${transB} beta=${beta}`;
      if (!assertClose(t, rows(c, m, nn, ldc), rows(ref, m, nn, ldc), { atol: 1e-6 * (4 + k), rtol: 0 }, label)) break;
      if (!t.ok(paddingUntouched(c, ref, m, nn, ldc), `${label}: columns past n untouched`)) break;
    }
  }),
);

t.test('alpha scales and beta accumulates', async (t) => {
  const a = Float32Array.from([1, 2, 3, 4]),
    b = Float32Array.from([5, 6, 7, 8]);
  const c = Float32Array.from([1, 1, 1, 1]);
  await gemm({ m: 2, n: 2, k: 2, a, b, c, alpha: 2, beta: 1 });
  t.same(Array.from(c), [1 + 2 * 19, 1 + 2 * 22, 1 + 2 * 43, 1 + 2 * 50]);
});

t.test('bad arguments name the field', async (t) => {
  const a = new Float32Array(4),
    b = new Float32Array(4),
    c = new Float32Array(4);
  t.throws(() => gemm({ m: 2, n: 2, k: 2, a, b, c: new Float32Array(3) }), {
    name: 'RangeError',
    message: 'gemm: expected options.c.length to be >= 4, received 3',
  });
  t.throws(() => gemm({ m: 1.5, n: 2, k: 2, a, b, c }), {
    name: 'TypeError',
    message: /options\.m to be an integer >= 0, received 1\.5/,
  });
  t.throws(() => gemm({ m: -1, n: 2, k: 2, a, b, c }), { name: 'RangeError', message: /options\.m/ });
  t.throws(() => gemm({ m: 2, n: 2, k: 2, a: [1, 2, 3, 4] as unknown as Float32Array, b, c }), {
    name: 'TypeError',
    message: /options\.a to be a Float32Array, received array\(4\)/,
  });
  t.throws(() => gemm({ m: 2, n: 2, k: 3, lda: 2, a, b, c }), { name: 'RangeError', message: /options\.lda/ });
  t.throws(() => gemm({ m: 2, n: 2, k: 2, a, b, c: a }), { name: 'RangeError', message: /not overlapping/ });
  t.throws(() => gemm({ m: 2, n: 2, k: 2, a, b, c, tranA: true } as never), {
    name: 'TypeError',
    message: /did you mean options\.transA/,
  });
});

t.test('native re-checks arguments when called directly', async (t) => {
  const { native } = await import('../../lib/native.js');
  const a = new Float32Array(4);
  t.throws(() => native().gemm({ m: 2, n: 2, k: 2, a, b: a, c: new Float32Array(1) }), {
    name: 'RangeError',
    code: 'ERR_RLHF_OUT_OF_RANGE',
    message: 'gemm: expected options.c to be a Float32Array of at least 4 elements, received Float32Array(1)',
  });
  t.throws(() => native().gemm({ m: 2, n: 2, k: 2, a, b: a } as never), {
    name: 'TypeError',
    message: 'gemm: expected options.c to be present, received undefined',
  });
});
