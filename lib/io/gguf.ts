/**
 * The GGUF file format (version 3), as read by llama.cpp and Ollama: a writer, a reader and the
 * tensor encodings the exporter uses (F32, BF16, Q8_0).
 *
 * Layout (all integers little-endian):
 *   magic "GGUF", u32 version = 3, u64 tensor count, u64 metadata count,
 *   metadata: (string key, u32 value type, value)*,
 *   tensor infos: (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)*,
 *   padding to `general.alignment` (default 32), then the tensor data; each tensor starts at
 *   data start + offset, offsets being multiples of the alignment.
 * A string is a u64 byte length and UTF-8 bytes (no terminator). `ne` lists dimensions innermost
 * first: a row-major [rows, cols] matrix has ne = [cols, rows].
 *
 * Encodings (`quantizeQ8_0` / `dequantizeQ8_0` are the plain references the tests check against):
 *   BF16: the upper 16 bits of the f32 after round-to-nearest-even (NaN stays NaN).
 *   Q8_0: blocks of 32 along a row; each block is an f16 scale d = max|x| / 127 followed by 32 int8
 *         q = round(x / d) (half away from zero, as C's roundf); x ≈ f16(d) · q. The error of one
 *         value is at most d/2 plus |q|·|d − f16(d)| ≤ d/2 + 127·2^-11·d (d in the f16 normal range).
 */
import { readFile } from 'node:fs/promises';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from './half.js';
import { ErrorCode, RlhfError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';

export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
const MAGIC = 0x46554747; // "GGUF" as a little-endian u32

/** ggml tensor types written or read here, with their ggml enum values. */
export const GGML_TYPES = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type GgmlType = keyof typeof GGML_TYPES;
const TYPE_BY_ID = new Map<number, GgmlType>(Object.entries(GGML_TYPES).map(([k, v]) => [v, k as GgmlType]));
export const Q8_0_BLOCK = 32;
const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

/** GGUF metadata value types (the spec's enum). */
const VT = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;
export type GgufScalarType = Exclude<keyof typeof VT, 'array'>;
const VT_BY_ID = new Map<number, keyof typeof VT>(Object.entries(VT).map(([k, v]) => [v, k as keyof typeof VT]));

/** A metadata value: a typed scalar or a typed array (arrays of arrays are not used by llama.cpp's keys). */
export type GgufValue =
  | { type: Exclude<GgufScalarType, 'string' | 'bool' | 'u64' | 'i64'>; value: number }
  | { type: 'u64' | 'i64'; value: bigint | number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: GgufScalarType; value: Array<number | bigint | boolean | string> };

export interface GgufTensorIn {
  name: string;
  /** row-major shape, outermost first (as PyTorch/safetensors); written reversed as `ne` */
  shape: number[];
  type: GgmlType;
  /** the encoded bytes (see encodeTensor) */
  data: Uint8Array;
}

export interface GgufTensorInfo {
  name: string;
  shape: number[];
  type: GgmlType;
  /** absolute byte offset of the data in the file */
  offset: number;
  byteLength: number;
}

export interface GgufFile {
  version: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** the whole file */
  bytes: Uint8Array;
}

// ---------------------------------------------------------------- encodings

// the single-value F16/BF16 conversions (lib/io/half.ts), re-exported for the exporter and tests
export { f32ToF16Bits, f16BitsToF32, f32ToBf16Bits, bf16BitsToF32 } from './half.js';

/** Q8_0 of `x` (length a multiple of 32, blocks taken in order): 34 bytes per block. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % Q8_0_BLOCK !== 0)
    throw new RangeError(`quantizeQ8_0: expected x.length to be a multiple of ${Q8_0_BLOCK}, received ${x.length}`);
  const nb = x.length / Q8_0_BLOCK;
  const out = new Uint8Array(nb * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const base = b * Q8_0_BLOCK;
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(x[base + i]));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    const o = b * Q8_0_BLOCK_BYTES;
    view.setUint16(o, f32ToF16Bits(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      const v = Math.fround(x[base + i] * id);
      view.setInt8(o + 2 + i, Math.sign(v) * Math.round(Math.abs(v))); // roundf: half away from zero
    }
  }
  return out;
}

export function dequantizeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let b = 0; b < n / Q8_0_BLOCK; b++) {
    const o = b * Q8_0_BLOCK_BYTES;
    const d = f16BitsToF32(view.getUint16(o, true));
    for (let i = 0; i < Q8_0_BLOCK; i++) out[b * Q8_0_BLOCK + i] = d * view.getInt8(o + 2 + i);
  }
  return out;
}

/** Bytes of `data` (a row-major f32 tensor) in `type`. Q8_0 needs the innermost dimension to be a multiple of 32. */
export function encodeTensor(data: Float32Array, type: GgmlType): Uint8Array {
  switch (type) {
    case 'F32':
      return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    case 'F16':
    case 'BF16': {
      const out = new Uint16Array(data.length);
      const conv = type === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
      for (let i = 0; i < data.length; i++) out[i] = conv(data[i]);
      return new Uint8Array(out.buffer);
    }
    case 'Q8_0':
      return quantizeQ8_0(data);
  }
}

/** The f32 values of a tensor's bytes (any type this module knows). */
export function decodeTensor(bytes: Uint8Array, type: GgmlType, n: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  switch (type) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(view.getUint16(2 * i, true));
      return out;
    case 'BF16':
      for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(view.getUint16(2 * i, true));
      return out;
    case 'Q8_0':
      return dequantizeQ8_0(bytes, n);
  }
}

function byteLength(shape: number[], type: GgmlType): number {
  const n = shape.reduce((a, b) => a * b, 1);
  if (type === 'Q8_0') return (n / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  return n * (type === 'F32' ? 4 : 2);
}

// ---------------------------------------------------------------- writer

class ByteSink {
  private chunks: Uint8Array[] = [];
  private cur = new DataView(new ArrayBuffer(1 << 16));
  private at = 0;
  length = 0;
  private room(n: number): void {
    if (this.at + n <= this.cur.byteLength) return;
    this.flush();
    if (n > this.cur.byteLength) this.cur = new DataView(new ArrayBuffer(Math.max(n, 1 << 16)));
  }
  private flush(): void {
    if (this.at) this.chunks.push(new Uint8Array(this.cur.buffer.slice(0, this.at)));
    this.cur = new DataView(new ArrayBuffer(this.cur.byteLength));
    this.at = 0;
  }
  u8(v: number) {
    this.room(1);
    this.cur.setUint8(this.at, v);
    this.at += 1;
    this.length += 1;
  }
  i8(v: number) {
    this.room(1);
    this.cur.setInt8(this.at, v);
    this.at += 1;
    this.length += 1;
  }
  u16(v: number) {
    this.room(2);
    this.cur.setUint16(this.at, v, true);
    this.at += 2;
    this.length += 2;
  }
  i16(v: number) {
    this.room(2);
    this.cur.setInt16(this.at, v, true);
    this.at += 2;
    this.length += 2;
  }
  u32(v: number) {
    this.room(4);
    this.cur.setUint32(this.at, v, true);
    this.at += 4;
    this.length += 4;
  }
  i32(v: number) {
    this.room(4);
    this.cur.setInt32(this.at, v, true);
    this.at += 4;
    this.length += 4;
  }
  f32(v: number) {
    this.room(4);
    this.cur.setFloat32(this.at, v, true);
    this.at += 4;
    this.length += 4;
  }
  f64(v: number) {
    this.room(8);
    this.cur.setFloat64(this.at, v, true);
    this.at += 8;
    this.length += 8;
  }
  u64(v: number | bigint) {
    this.room(8);
    this.cur.setBigUint64(this.at, BigInt(v), true);
    this.at += 8;
    this.length += 8;
  }
  i64(v: number | bigint) {
    this.room(8);
    this.cur.setBigInt64(this.at, BigInt(v), true);
    this.at += 8;
    this.length += 8;
  }
  bytes(b: Uint8Array) {
    this.flush();
    this.chunks.push(b);
    this.length += b.byteLength;
  }
  string(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.byteLength);
    this.room(b.byteLength);
    new Uint8Array(this.cur.buffer).set(b, this.at);
    this.at += b.byteLength;
    this.length += b.byteLength;
  }
  pad(alignment: number) {
    const n = (alignment - (this.length % alignment)) % alignment;
    for (let i = 0; i < n; i++) this.u8(0);
  }
  done(): Uint8Array[] {
    this.flush();
    return this.chunks;
  }
}

function writeScalar(s: ByteSink, type: GgufScalarType, v: number | bigint | boolean | string, key: string): void {
  const bad = () =>
    new TypeError(
      `writeGguf: expected metadata["${key}"] to hold ${type} values, received ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`,
    );
  if (type === 'string') {
    if (typeof v !== 'string') throw bad();
    return s.string(v);
  }
  if (type === 'bool') {
    if (typeof v !== 'boolean') throw bad();
    return s.u8(v ? 1 : 0);
  }
  if (type === 'u64' || type === 'i64') {
    if (typeof v !== 'bigint' && !Number.isInteger(v)) throw bad();
    return s[type](v as number | bigint);
  }
  if (typeof v !== 'number') throw bad();
  if (type !== 'f32' && type !== 'f64') {
    const bits = type === 'u8' || type === 'i8' ? 8 : type === 'u16' || type === 'i16' ? 16 : 32;
    const lo = type.startsWith('u') ? 0 : -(2 ** (bits - 1));
    if (!Number.isInteger(v) || v < lo || v >= lo + 2 ** bits) throw bad();
  }
  s[type](v);
}

/** The GGUF bytes of `metadata` and `tensors` (in the given order), as chunks. */
export function encodeGguf(
  metadata: Map<string, GgufValue>,
  tensors: GgufTensorIn[],
  alignment = GGUF_DEFAULT_ALIGNMENT,
): Uint8Array[] {
  if (!Number.isInteger(alignment) || alignment < 8 || alignment % 8 !== 0)
    throw new RangeError(`writeGguf: expected alignment to be a positive multiple of 8, received ${alignment}`);
  const s = new ByteSink();
  s.u32(MAGIC);
  s.u32(GGUF_VERSION);
  s.u64(tensors.length);
  s.u64(metadata.size);
  for (const [key, v] of metadata) {
    s.string(key);
    s.u32(VT[v.type]);
    if (v.type === 'array') {
      s.u32(VT[v.itemType]);
      s.u64(v.value.length);
      for (const item of v.value) writeScalar(s, v.itemType, item, key);
    } else writeScalar(s, v.type, v.value, key);
  }
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new RangeError(`writeGguf: tensor name ${JSON.stringify(t.name)} appears twice`);
    seen.add(t.name);
    const expected = byteLength(t.shape, t.type);
    if (t.data.byteLength !== expected)
      throw new RangeError(
        `writeGguf: expected ${expected} bytes for ${t.name} (${t.type} [${t.shape}]), received ${t.data.byteLength}`,
      );
    s.string(t.name);
    s.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) s.u64(d);
    s.u32(GGML_TYPES[t.type]);
    s.u64(offset);
    offset += Math.ceil(t.data.byteLength / alignment) * alignment;
  }
  s.pad(alignment);
  for (const t of tensors) {
    s.bytes(t.data);
    s.pad(alignment);
  }
  return s.done();
}

/** Writes a GGUF file atomically (temporary file + rename). */
export async function writeGguf(
  path: string,
  metadata: Map<string, GgufValue>,
  tensors: GgufTensorIn[],
): Promise<void> {
  const alignment = metadata.get('general.alignment');
  await writeFileAtomic(
    path,
    encodeGguf(metadata, tensors, alignment?.type === 'u32' ? alignment.value : GGUF_DEFAULT_ALIGNMENT),
  );
}

// ---------------------------------------------------------------- reader

/** Parses a GGUF file (version 3). Errors are RlhfError FORMAT naming the file and the byte offset. */
export function parseGguf(bytes: Uint8Array, source = 'GGUF'): GgufFile {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const fail = (msg: string): never => {
    throw new RlhfError(ErrorCode.FORMAT, `${source}: ${msg} (at byte ${at})`);
  };
  const need = (n: number) => at + n <= bytes.byteLength || fail(`truncated: need ${n} more bytes`);
  const u32 = () => (need(4), (at += 4), view.getUint32(at - 4, true));
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(at, true);
    at += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`u64 ${v} too large`);
    return Number(v);
  };
  const str = () => {
    const n = u64();
    need(n);
    const s = Buffer.from(bytes.buffer, bytes.byteOffset + at, n).toString('utf8');
    at += n;
    return s;
  };
  const scalar = (t: keyof typeof VT): number | bigint | boolean | string => {
    const sizes: Record<string, number> = {
      u8: 1,
      i8: 1,
      u16: 2,
      i16: 2,
      u32: 4,
      i32: 4,
      f32: 4,
      bool: 1,
      u64: 8,
      i64: 8,
      f64: 8,
    };
    if (t === 'string') return str();
    if (t === 'array') return fail('nested arrays are not supported');
    need(sizes[t]);
    const o = at;
    at += sizes[t];
    switch (t) {
      case 'u8':
        return view.getUint8(o);
      case 'i8':
        return view.getInt8(o);
      case 'u16':
        return view.getUint16(o, true);
      case 'i16':
        return view.getInt16(o, true);
      case 'u32':
        return view.getUint32(o, true);
      case 'i32':
        return view.getInt32(o, true);
      case 'f32':
        return view.getFloat32(o, true);
      case 'f64':
        return view.getFloat64(o, true);
      case 'bool':
        return view.getUint8(o) !== 0;
      case 'u64':
        return view.getBigUint64(o, true);
      case 'i64':
        return view.getBigInt64(o, true);
    }
  };
  const vtype = () => {
    const id = u32();
    return VT_BY_ID.get(id) ?? fail(`unknown metadata value type ${id}`);
  };
  if (u32() !== MAGIC) fail('not a GGUF file (bad magic)');
  const version = u32();
  if (version !== GGUF_VERSION) fail(`GGUF version ${version} is not supported (only ${GGUF_VERSION})`);
  const nTensors = u64();
  const nKv = u64();
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = vtype();
    if (type === 'array') {
      const itemType = vtype();
      const n = u64();
      const value: Array<number | bigint | boolean | string> = [];
      for (let j = 0; j < n; j++) value.push(scalar(itemType));
      metadata.set(key, { type, itemType: itemType as GgufScalarType, value });
    } else metadata.set(key, { type, value: scalar(type) } as GgufValue);
  }
  const al = metadata.get('general.alignment');
  const alignment = al ? Number(al.value) : GGUF_DEFAULT_ALIGNMENT;
  const infos: Array<{ name: string; shape: number[]; type: GgmlType; rel: number }> = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const ne: number[] = [];
    for (let d = 0; d < nd; d++) ne.push(u64());
    const tid = u32();
    const type = TYPE_BY_ID.get(tid) ?? fail(`tensor ${name}: ggml type ${tid} is not supported here`);
    const rel = u64();
    if (rel % alignment) fail(`tensor ${name}: offset ${rel} is not a multiple of the alignment ${alignment}`);
    infos.push({ name, shape: ne.reverse(), type, rel });
  }
  const dataStart = Math.ceil(at / alignment) * alignment;
  const tensors = infos.map(({ name, shape, type, rel }) => {
    const offset = dataStart + rel;
    const n = byteLength(shape, type);
    if (offset + n > bytes.byteLength) {
      at = offset;
      fail(`tensor ${name}: data runs past the end of the file`);
    }
    return { name, shape, type, offset, byteLength: n };
  });
  return { version, alignment, metadata, tensors, bytes };
}

export async function readGguf(path: string): Promise<GgufFile> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new RlhfError(ErrorCode.IO, `readGguf: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseGguf(bytes, path);
}

/** The f32 values of a tensor of a parsed file. */
export function ggufTensorF32(file: GgufFile, name: string): Float32Array {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new RlhfError(ErrorCode.FORMAT, `GGUF: no tensor named ${JSON.stringify(name)}`);
  const n = t.shape.reduce((a, b) => a * b, 1);
  return decodeTensor(file.bytes.subarray(t.offset, t.offset + t.byteLength), t.type, n);
}
