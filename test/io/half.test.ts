// lib/io/half.ts: the array conversions (bit tricks, lookup table) against the independent
// single-value ones (arithmetic), on every 16-bit pattern and on random float32 bit patterns of
// every exponent, plus closed-form values at the rounding edges. NaN compares as NaN (payloads
// of the two forms may differ in the low bits only where both are quiet NaNs with the same sign).
import t from 'tap';
import {
  bf16BitsToF32,
  bf16ToF32,
  f16BitsToF32,
  f16ToF32,
  f32ToBf16,
  f32ToBf16Bits,
  f32ToF16,
  f32ToF16Bits,
} from '../../lib/io/half.js';
import { Rng } from '../helpers/random.js';

const isNanF16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isNanBf16 = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

t.test('widening: every f16 and bf16 pattern, array form = single-value form', (t) => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const f16 = f16ToF32(all),
    bf16 = bf16ToF32(all);
  let bad16 = 0,
    badBf = 0;
  for (let h = 0; h < 65536; h++) {
    const a = f16BitsToF32(h),
      b = bf16BitsToF32(h);
    if (!(Object.is(f16[h], a) || (Number.isNaN(a) && Number.isNaN(f16[h])))) bad16++;
    if (!(Object.is(bf16[h], b) || (Number.isNaN(b) && Number.isNaN(bf16[h])))) badBf++;
  }
  t.equal(bad16, 0, 'f16ToF32 === f16BitsToF32 on all 65536 patterns');
  t.equal(badBf, 0, 'bf16ToF32 === bf16BitsToF32 on all 65536 patterns');
  t.end();
});

t.test('narrowing: random float32 bit patterns, array form = single-value form', (t) => {
  const rng = new Rng(7);
  const n = 200_000;
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) bits[i] = (rng.int(0, 0x10000) << 16) | rng.int(0, 0x10000);
  // every exponent, and the f16 subnormal / overflow ranges, densely
  for (let i = 0; i < 4096; i++) bits[i] = ((i & 0x1ff) << 23) | (rng.int(0, 0x800000) & 0x7fffff);
  const x = new Float32Array(bits.buffer);
  const h = f32ToF16(x),
    b = f32ToBf16(x);
  let bad16 = 0,
    badBf = 0;
  for (let i = 0; i < n; i++) {
    const s16 = f32ToF16Bits(x[i]),
      sBf = f32ToBf16Bits(x[i]);
    if (h[i] !== s16 && !(isNanF16(h[i]) && isNanF16(s16) && (h[i] & 0x8000) === (s16 & 0x8000))) bad16++;
    if (b[i] !== sBf && !(isNanBf16(b[i]) && isNanBf16(sBf))) badBf++;
  }
  t.equal(bad16, 0, 'f32ToF16 === f32ToF16Bits');
  t.equal(badBf, 0, 'f32ToBf16 === f32ToBf16Bits');
  t.end();
});

t.test('closed forms at the rounding edges', (t) => {
  const x = Float32Array.of(1, 65504, 65519.996, 65520, 2 ** -24, 2 ** -25, 1 + 2 ** -11, 1 + 3 * 2 ** -11, -0);
  t.same(Array.from(f32ToF16(x)), [0x3c00, 0x7bff, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x3c00, 0x3c02, 0x8000]);
  // bf16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1); 1 + 3·2^-8 rounds up
  const y = Float32Array.of(1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2, Infinity);
  t.same(Array.from(f32ToBf16(y)), [0x3f80, 0x3f80, 0x3f82, 0xc000, 0x7f80]);
  t.end();
});
