/**
 * Half-precision floats as bits: IEEE binary16 (F16) and bfloat16 (BF16) to and from float32.
 * Narrowing rounds to nearest even (overflow gives ±Inf; NaN stays a quiet NaN with its sign);
 * widening is exact. Two independent forms: whole arrays (safetensors checkpoints, bit tricks) and
 * single values (GGUF's Q8_0 scales, arithmetic); test/io/half.test.ts checks each against the other
 * on every 16-bit pattern and on random float32s.
 */
import { checkFloat32Array, typeError } from '../validate.js';

// ---- arrays

function outputFor(fn: string, src: Uint16Array, dst?: Float32Array): Float32Array {
  if (!(src instanceof Uint16Array)) throw typeError(fn, 'src', 'a Uint16Array', src);
  if (dst === undefined) return new Float32Array(src.length);
  return checkFloat32Array(fn, 'dst', dst, { exact: src.length });
}

/** bfloat16 bits to float32 (exact). Writes into `dst` (same length as `src`) when given. */
export function bf16ToF32(src: Uint16Array, dst?: Float32Array): Float32Array {
  const out = outputFor('bf16ToF32', src, dst);
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}

let f16Table: Float32Array | undefined;

/** IEEE half bits to float32 (exact, subnormals included). Writes into `dst` (same length as `src`) when given. */
export function f16ToF32(src: Uint16Array, dst?: Float32Array): Float32Array {
  const out = outputFor('f16ToF32', src, dst);
  if (!f16Table) {
    const table = new Float32Array(65536),
      bits = new Uint32Array(table.buffer);
    for (let h = 0; h < 65536; h++) {
      const sign = (h & 0x8000) << 16,
        exp = (h >> 10) & 0x1f,
        mant = h & 0x3ff;
      if (exp === 0) table[h] = (sign ? -1 : 1) * mant * 2 ** -24;
      else bits[h] = (sign | (exp === 31 ? 0x7f800000 : (exp + 112) << 23) | (mant << 13)) >>> 0;
    }
    f16Table = table;
  }
  for (let i = 0; i < src.length; i++) out[i] = f16Table[src[i]];
  return out;
}

function checkF32(fn: string, src: Float32Array): Uint32Array {
  checkFloat32Array(fn, 'src', src);
  return new Uint32Array(src.buffer, src.byteOffset, src.length);
}

/** float32 to bfloat16 bits, round-to-nearest-even (overflow gives ±Inf). */
export function f32ToBf16(src: Float32Array): Uint16Array {
  const bits = checkF32('f32ToBf16', src),
    out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** float32 to IEEE half bits, round-to-nearest-even (|x| >= 65520 gives ±Inf; tiny values become subnormals or ±0). */
export function f32ToF16(src: Float32Array): Uint16Array {
  const bits = checkF32('f32ToF16', src),
    out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i],
      sign = (x >>> 16) & 0x8000,
      abs = x & 0x7fffffff;
    let h: number;
    if (abs > 0x7f800000)
      h = 0x7e00 | ((abs >>> 13) & 0x3ff); // NaN
    else if (abs >= 0x477ff000)
      h = 0x7c00; // >= 65520 (halfway above 65504, which is odd): Inf
    else if (abs >= 0x38800000)
      h = ((abs + 0xfff + ((abs >>> 13) & 1)) >>> 13) - (112 << 10); // normal; a carry bumps the exponent
    else if (abs <= 0x33000000)
      h = 0; // <= 2^-25, half the smallest subnormal: rounds to (even) zero
    else {
      const m = Math.abs(src[i]) * 2 ** 24; // exact; the subnormal mantissa before rounding
      const f = Math.floor(m),
        r = m - f;
      h = r > 0.5 || (r === 0.5 && (f & 1) === 1) ? f + 1 : f; // 1024 is the smallest normal: correct
    }
    out[i] = sign | h;
  }
  return out;
}

// ---- single values

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** f32 → IEEE half bits, round to nearest even (as F16C's vcvtps2ph with rounding mode 0). */
export function f32ToF16Bits(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) ((m = 0), e++);
    if (e >= 0x1f) return sign | 0x7c00;
  }
  return sign | (e << 10) | m;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** f32 → bf16 bits, round to nearest even; NaN becomes a quiet NaN. */
export function f32ToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0];
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0];
}
