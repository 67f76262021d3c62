// lib/io/half.ts: exact decoding and round-to-nearest-even at every halfway point; the array
// conversions (bit tricks, lookup table) against the independent single-value ones (arithmetic), on every 16-bit pattern and on random float32 bit patterns of
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

const f32Bits = (...bits: number[]) => new Float32Array(new Uint32Array(bits).buffer);

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

t.test('conversions: exact decoding, round-to-nearest-even at every halfway point', async (t) => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const fromF16 = f16ToF32(all),
    fromBf16 = bf16ToF32(all);
  let bad = 0;
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1,
      e = (h >> 10) & 31,
      m = h & 1023;
    const ref = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
    if (!Object.is(fromF16[h], ref)) bad++;
  }
  t.equal(bad, 0, 'f16ToF32 matches the IEEE formula for all 65536 bit patterns');
  const roundTrip = (back: Uint16Array, from: Float32Array) =>
    all.filter((h) => !Number.isNaN(from[h]) && back[h] !== h).length;
  t.equal(roundTrip(f32ToF16(fromF16), fromF16), 0, 'f16 -> f32 -> f16 is the identity (non-NaN)');
  t.equal(roundTrip(f32ToBf16(fromBf16), fromBf16), 0, 'bf16 -> f32 -> bf16 is the identity (non-NaN)');
  t.ok(
    all.every((h) => !Number.isNaN(fromF16[h]) || (f32ToF16(fromF16.subarray(h, h + 1))[0] & 0x7fff) > 0x7c00),
    'NaN stays NaN',
  );

  // For every pair of adjacent non-negative values (a, b) the midpoint rounds to the even one, and
  // one f32 ulp either side rounds to the nearer one. The value above the largest finite is 2^16 (f16) / 2^128 (bf16).
  const check = (
    label: string,
    toHalf: (x: Float32Array) => Uint16Array,
    value: (h: number) => number,
    top: number,
  ) => {
    const mids = new Float32Array(top),
      below = new Float32Array(top),
      above = new Float32Array(top);
    for (let h = 0; h < top; h++) mids[h] = (value(h) + value(h + 1)) / 2;
    const mb = new Uint32Array(mids.buffer);
    new Uint32Array(below.buffer).set(mb.map((b) => b - 1));
    new Uint32Array(above.buffer).set(mb.map((b) => b + 1));
    const [rm, rb, ra] = [toHalf(mids), toHalf(below), toHalf(above)];
    let wrong = 0;
    for (let h = 0; h < top; h++) if (rm[h] !== (h & 1 ? h + 1 : h) || rb[h] !== h || ra[h] !== h + 1) wrong++;
    t.equal(wrong, 0, `${label}: ${top} halfway points round to even, neighbours to nearest`);
    const neg = toHalf(mids.map((x) => -x));
    t.ok(
      neg.every((h, i) => h === (rm[i] | 0x8000)),
      `${label}: negative midpoints round symmetrically`,
    );
  };
  check('f16', f32ToF16, (h) => (h === 0x7c00 ? 65536 : fromF16[h]), 0x7c00);
  check('bf16', f32ToBf16, (h) => (h === 0x7f80 ? 2 ** 128 : fromBf16[h]), 0x7f80);

  t.same(
    [
      ...f32ToBf16(
        f32Bits(0x3f808000, 0x3f818000, 0x3f808001, 0x7f7fffff, 0xff800000, 0x7f800001, 0x00008000, 0x00018000),
      ),
    ],
    [0x3f80, 0x3f82, 0x3f81, 0x7f80, 0xff80, 0x7fc0, 0x0000, 0x0002],
    'bf16 spot checks (halfway, overflow, -Inf, sNaN, subnormals)',
  );
  t.same(
    [
      ...f32ToF16(
        new Float32Array([
          1 + 2 ** -11,
          1 + 3 * 2 ** -11,
          65504,
          65519,
          65520,
          1e6,
          -0,
          2 ** -24,
          2 ** -25,
          3 * 2 ** -25,
          2 ** -25 * 1.000001,
          2 ** -14,
          1023.5 * 2 ** -24,
          1e-30,
        ]),
      ),
    ],
    [0x3c00, 0x3c02, 0x7bff, 0x7bff, 0x7c00, 0x7c00, 0x8000, 0x0001, 0x0000, 0x0002, 0x0001, 0x0400, 0x0400, 0x0000],
    'f16 spot checks',
  );
  t.throws(() => bf16ToF32(new Uint16Array(2), new Float32Array(3)), {
    name: 'RangeError',
    message: /dst\.length to be 2, received 3/,
  });
  t.throws(() => f16ToF32([1] as never), { name: 'TypeError', message: /f16ToF32: expected src to be a Uint16Array/ });
});
