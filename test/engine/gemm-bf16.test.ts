// The bf16-weight GEMM through the addon (gemm with dtype 'bf16'): against float64 sums of the
// bf16-rounded inputs on random shapes (odd K included), within fp32 accumulation error; against
// the f32 GEMM of the unrounded inputs within bf16 rounding error; argument errors name the field.
import t from 'tap';
import { native } from '../../lib/native.js';
import { Rng } from '../helpers/random.js';

/** bf16 bits of x rounded to nearest even, computed independently of the engine. */
function bf16Bits(x: Float32Array): Uint16Array {
  const f64 = new Float64Array(1);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    // nearest even at 8 significant bits, through float64 arithmetic
    const v = x[i];
    if (v === 0) continue;
    const e = Math.floor(Math.log2(Math.abs(v)));
    const ulp = 2 ** (e - 7);
    let q = v / ulp;
    const r = Math.round(q);
    q = Math.abs(q - Math.trunc(q)) === 0.5 ? 2 * Math.round(q / 2) : r;
    f64[0] = q * ulp;
    out[i] = new Uint32Array(new Float32Array([f64[0]]).buffer)[0] >>> 16;
  }
  return out;
}
const bf16Value = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0];

t.test('random shapes against float64 sums of the bf16-rounded inputs', async (t) => {
  const rng = new Rng(3);
  for (let n = 0; n < 30; n++) {
    const transA = rng.next() < 0.5,
      transB = rng.next() < 0.5;
    const m = n % 7 === 0 ? 1 : rng.int(1, 120),
      nn = rng.int(1, 120),
      k = rng.int(1, 200) | (n % 3 === 0 ? 1 : 0);
    const a = rng.f32(m * k),
      b32 = rng.f32(k * nn),
      c = new Float32Array(m * nn).fill(NaN);
    const b = bf16Bits(b32),
      ab = bf16Bits(a);
    await native().gemm({ transA, transB, m, n: nn, k, a, b, c, dtype: 'bf16' });
    let worst = 0;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < nn; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++) {
          const x = bf16Value(ab[transA ? p * m + i : i * k + p]);
          const y = bf16Value(b[transB ? j * k + p : p * nn + j]);
          acc += x * y;
        }
        worst = Math.max(worst, Math.abs(c[i * nn + j] - acc));
      }
    // fp32 accumulation of k exact products of magnitude <= 1: ~sqrt(k) ulps; bound 4e-7·(4 + k)
    t.ok(worst <= 4e-7 * (4 + k), `m=${m} n=${nn} k=${k} tA=${transA} tB=${transB}: worst ${worst}`);
  }
});

t.test('close to the f32 GEMM of the unrounded inputs, but not equal', async (t) => {
  const rng = new Rng(4);
  const m = 33,
    n = 47,
    k = 513;
  const a = rng.f32(m * k),
    b = rng.f32(k * n),
    c16 = new Float32Array(m * n),
    c32 = new Float32Array(m * n);
  await native().gemm({ m, n, k, a, b: bf16Bits(b), c: c16, dtype: 'bf16' });
  await native().gemm({ m, n, k, a, b, c: c32 });
  let worst = 0;
  for (let i = 0; i < c16.length; i++) worst = Math.max(worst, Math.abs(c16[i] - c32[i]));
  // each input off by <= 2^-9 relative: error ~ sqrt(k)·2^-8 for random signs; bound 4·sqrt(k)/256
  t.ok(worst <= (4 * Math.sqrt(k)) / 256, `worst ${worst}`);
  t.ok(worst > 0, 'bf16 rounding is visible');
});

t.test('argument errors name the field', async (t) => {
  const a = new Float32Array(4),
    c = new Float32Array(4);
  t.throws(() => native().gemm({ m: 2, n: 2, k: 2, a, b: new Float32Array(4), c, dtype: 'bf16' }), /gemm: expected b /);
  t.throws(() => native().gemm({ m: 2, n: 2, k: 2, a, b: new Uint16Array(3), c, dtype: 'bf16' }), /gemm: expected b /);
  t.throws(
    () => native().gemm({ m: 2, n: 2, k: 2, a, b: new Uint16Array(4), c, dtype: 'f16' as 'bf16' }),
    /gemm: expected dtype /,
  );
  t.match(native().buildInfo().gemmBf16Kernel, /^(avx512bf16-14x32|avx2-4x16|scalar-4x16)$/);
});
