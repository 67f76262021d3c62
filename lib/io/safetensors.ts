/**
 * Hugging Face safetensors: reader, writer, and transformers-style checkpoint directories.
 *
 * File layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON
 * `{"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}}`,
 * then the data buffer. Offsets are relative to the data buffer, which the tensors must tile
 * exactly (no holes, no overlap, nothing after the last tensor). Data is little-endian, row-major.
 *
 * The reader treats the file as hostile: every number in the header is checked against the file
 * before it is used, and every violation is an `RlhfError` `ERR_RLHF_FORMAT` whose message starts
 * with the file's path and says what is wrong. System failures are `ERR_RLHF_IO`. Argument errors
 * are `TypeError` / `RangeError` naming the parameter (lib/validate.ts), thrown synchronously.
 */
import { open, readdir, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkFloat32Array, checkObject, checkString, options, rangeError, show, typeError } from '../validate.js';
import { writeFileAtomic } from './atomic.js';
export type SafetensorsDType =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U8'
  | 'U16'
  | 'U32'
  | 'U64'
  | 'BOOL'
  | 'F8_E4M3'
  | 'F8_E5M2';

/** Bytes per element of each dtype (a Map, so header strings such as "__proto__" cannot hit Object.prototype). */
const DTYPE_SIZE: ReadonlyMap<string, number> = new Map<SafetensorsDType, number>([
  ['F64', 8],
  ['F32', 4],
  ['F16', 2],
  ['BF16', 2],
  ['I64', 8],
  ['I32', 4],
  ['I16', 2],
  ['I8', 1],
  ['U8', 1],
  ['U16', 2],
  ['U32', 4],
  ['U64', 8],
  ['BOOL', 1],
  ['F8_E4M3', 1],
  ['F8_E5M2', 1],
]);

/** One tensor of a file; `byteOffset` is absolute (from the start of the file). */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  byteOffset: number;
  byteLength: number;
}

/** A validated header. `dataStart` = 8 + header length; `fileSize` is the size when it was read. */
export interface SafetensorsHeader {
  path: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  dataStart: number;
  fileSize: number;
}

/** The largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const SINGLE_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';
const SHARD_FILE = /^model-\d{5,}-of-\d{5,}\.safetensors$/;
/** The most bytes handed to one read(2) call (Node rejects lengths above 2^31 - 1). */
const MAX_IO = 1 << 30;
const LITTLE_ENDIAN = endianness() === 'LE';
const TWO_POW_64 = 1n << 64n;

function formatError(file: string, problem: string, cause?: unknown): RlhfError {
  return new RlhfError(ErrorCode.FORMAT, `${file}: ${problem}`, cause === undefined ? undefined : { cause });
}

/** A tensor or key name for messages: JSON-quoted, long names shortened. */
function q(name: string): string {
  return JSON.stringify(name.length > 200 ? name.slice(0, 197) + '...' : name);
}

/** A header value for messages: arrays element by element (so 1e400 shows as Infinity, not null). */
function fmt(v: unknown): string {
  if (Array.isArray(v))
    return `[${v.slice(0, 8).map(fmt).join(', ')}${v.length > 8 ? `, ... (${v.length} items)` : ''}]`;
  return show(v);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Reverses the bytes of each `width`-byte element in place (big-endian hosts only). */
function swapBytes(bytes: Uint8Array, width: number): Uint8Array {
  for (let i = 0; i + width <= bytes.length; i += width) bytes.subarray(i, i + width).reverse();
  return bytes;
}

async function withFile<T>(path: string, body: (fh: FileHandle) => Promise<T>): Promise<T> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r');
    return await body(fh);
  } catch (err) {
    if (err instanceof RlhfError) throw err;
    throw new RlhfError(ErrorCode.IO, `${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** Reads exactly `length` bytes at `position` into a fresh (so aligned) buffer. */
async function readAt(
  fh: FileHandle,
  path: string,
  position: number,
  length: number,
  what: string,
): Promise<Uint8Array> {
  let buf: Uint8Array;
  try {
    buf = new Uint8Array(length);
  } catch (err) {
    throw new RlhfError(ErrorCode.OUT_OF_MEMORY, `${path}: cannot allocate ${length} bytes for ${what}`, {
      cause: err,
    });
  }
  for (let done = 0; done < length;) {
    const { bytesRead } = await fh.read(buf, done, Math.min(length - done, MAX_IO), position + done);
    if (bytesRead === 0)
      throw new RlhfError(
        ErrorCode.IO,
        `${path}: the file ends at byte ${position + done} while reading ${what} (was it truncated after its header was read?)`,
      );
    done += bytesRead;
  }
  return buf;
}

/**
 * Reads and validates the header of a safetensors file (only the header is read).
 * @throws RlhfError `ERR_RLHF_FORMAT` naming the file and the violation; `ERR_RLHF_IO` when it cannot be read.
 */
export function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  checkString('readSafetensorsHeader', 'path', path);
  return withFile(path, async (fh) => {
    const st = await fh.stat();
    if (!st.isFile()) throw new RlhfError(ErrorCode.IO, `${path}: not a regular file`);
    const fileSize = st.size;
    if (fileSize < 8) throw formatError(path, `the file is ${fileSize} bytes, shorter than the 8-byte header length`);
    const n = new DataView((await readAt(fh, path, 0, 8, 'the header length')).buffer).getBigUint64(0, true);
    if (n === 0n) throw formatError(path, 'header length is 0');
    if (n > BigInt(MAX_HEADER_BYTES))
      throw formatError(path, `header length ${n} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
    if (n > BigInt(fileSize - 8))
      throw formatError(path, `header length ${n} exceeds the ${fileSize - 8} bytes after the length field`);
    const raw = await readAt(fh, path, 8, Number(n), 'the header');
    return parseHeader(path, raw, 8 + Number(n), fileSize);
  });
}

function parseHeader(path: string, raw: Uint8Array, dataStart: number, fileSize: number): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
  } catch (err) {
    throw formatError(path, 'header is not valid UTF-8', err);
  }
  let json: unknown;
  try {
    // JSON.parse defines "__proto__" as an own property (it never sets the prototype).
    json = JSON.parse(text);
  } catch (err) {
    throw formatError(path, `header is not valid JSON (${(err as Error).message})`, err);
  }
  if (!isPlainObject(json)) throw formatError(path, `header is not a JSON object (it is ${show(json)})`);
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') metadata = parseMetadata(path, entry);
    else tensors.set(name, parseEntry(path, name, entry, dataStart, dataSize));
  }
  checkTiling(path, tensors, dataStart, dataSize);
  return { path, tensors, metadata, dataStart, fileSize };
}

function parseMetadata(path: string, value: unknown): Record<string, string> {
  if (!isPlainObject(value)) throw formatError(path, `__metadata__ is not an object of strings (it is ${show(value)})`);
  const entries = Object.entries(value);
  for (const [k, v] of entries)
    if (typeof v !== 'string') throw formatError(path, `__metadata__[${q(k)}] is ${show(v)}, not a string`);
  return Object.fromEntries(entries) as Record<string, string>; // defines keys (a "__proto__" key stays data)
}

function parseEntry(path: string, name: string, entry: unknown, dataStart: number, dataSize: number): TensorInfo {
  const at = `tensor ${q(name)}`;
  if (!isPlainObject(entry)) throw formatError(path, `${at}: entry is not an object (it is ${show(entry)})`);
  const get = (key: string) => (Object.hasOwn(entry, key) ? entry[key] : undefined);
  const dtype = get('dtype'),
    shape = get('shape'),
    offsets = get('data_offsets');
  if (typeof dtype !== 'string' || !DTYPE_SIZE.has(dtype))
    throw formatError(
      path,
      `${at}: unknown dtype ${show(dtype)} (expected one of ${[...DTYPE_SIZE.keys()].join(', ')})`,
    );
  if (!Array.isArray(shape) || !shape.every(isCount))
    throw formatError(path, `${at}: shape ${fmt(shape)} is not an array of non-negative integers`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1])
    throw formatError(path, `${at}: data_offsets ${fmt(offsets)} are not two integers 0 <= begin <= end`);
  const [begin, end] = offsets as [number, number];
  if (end > dataSize)
    throw formatError(path, `${at}: data_offsets [${begin}, ${end}] end beyond the ${dataSize}-byte data buffer`);
  // Exact in BigInt, but once past 2^64 the product stops growing (a header of a million huge
  // dimensions must not turn into a million-digit multiplication); a 0 anywhere still gives 0.
  let need = 1n,
    capped = false;
  if ((shape as number[]).includes(0)) need = 0n;
  else
    for (const d of shape as number[]) {
      if (need > TWO_POW_64) capped = true;
      else need *= BigInt(d);
    }
  need *= BigInt(DTYPE_SIZE.get(dtype)!);
  if (need !== BigInt(end - begin))
    throw formatError(
      path,
      `${at}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} shape ${fmt(shape)} needs ${capped ? 'more than 2^64' : need}`,
    );
  return {
    name,
    dtype: dtype as SafetensorsDType,
    shape: (shape as number[]).map((d) => d + 0),
    byteOffset: dataStart + begin,
    byteLength: end - begin,
  };
}

/** The tensors must tile [0, dataSize) of the data buffer exactly. */
function checkTiling(path: string, tensors: Map<string, TensorInfo>, dataStart: number, dataSize: number): void {
  const sorted = [...tensors.values()].sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  const range = (t: TensorInfo) => `[${t.byteOffset - dataStart}, ${t.byteOffset - dataStart + t.byteLength}]`;
  let cursor = 0;
  let prev: TensorInfo | undefined;
  for (const t of sorted) {
    const begin = t.byteOffset - dataStart;
    if (begin < cursor)
      throw formatError(path, `tensors ${q(prev!.name)} ${range(prev!)} and ${q(t.name)} ${range(t)} overlap`);
    if (begin > cursor)
      throw formatError(
        path,
        `bytes [${cursor}, ${begin}) of the data buffer belong to no tensor (a hole before tensor ${q(t.name)})`,
      );
    cursor = begin + t.byteLength;
    prev = t;
  }
  if (cursor !== dataSize)
    throw formatError(
      path,
      `the tensors cover ${cursor} bytes of the ${dataSize}-byte data buffer; the last ${dataSize - cursor} bytes belong to no tensor`,
    );
}

/**
 * Reads one tensor and converts F32/F16/BF16/F64 to a Float32Array (F64 rounds to nearest).
 * @throws RlhfError `ERR_RLHF_FORMAT` when the file has no such tensor, `ERR_RLHF_UNSUPPORTED` for
 *   other dtypes, `ERR_RLHF_IO` when the file cannot be read or changed size since `header` was read.
 */
export function readTensorF32(header: SafetensorsHeader, name: string): Promise<Float32Array> {
  checkObject('readTensorF32', 'header', header);
  if (!(header.tensors instanceof Map))
    throw typeError('readTensorF32', 'header.tensors', 'a Map (a header from readSafetensorsHeader)', header.tensors);
  checkString('readTensorF32', 'name', name, false);
  return readTensor(header, name);
}

/**
 * Reads one BF16 tensor's bits as they are (no float32 conversion): for a bf16 model's weights.
 * @throws RlhfError `ERR_RLHF_FORMAT` when the file has no such tensor or it is not BF16, `ERR_RLHF_IO` as readTensorF32.
 */
export async function readTensorBf16(header: SafetensorsHeader, name: string): Promise<Uint16Array> {
  checkObject('readTensorBf16', 'header', header);
  if (!(header.tensors instanceof Map))
    throw typeError('readTensorBf16', 'header.tensors', 'a Map (a header from readSafetensorsHeader)', header.tensors);
  checkString('readTensorBf16', 'name', name, false);
  const info = header.tensors.get(name);
  if (!info) throw formatError(header.path, `no tensor ${q(name)} (the file holds ${header.tensors.size})`);
  if (info.dtype !== 'BF16') throw formatError(header.path, `tensor ${q(name)} has dtype ${info.dtype}, not BF16`);
  return withFile(header.path, async (fh) => {
    const bytes = await readTensorBytes(fh, header, name, info);
    if (!LITTLE_ENDIAN) swapBytes(bytes, 2);
    return new Uint16Array(bytes.buffer, 0, info.byteLength / 2);
  });
}

async function readTensorBytes(
  fh: FileHandle,
  header: SafetensorsHeader,
  name: string,
  info: TensorInfo,
): Promise<Uint8Array> {
  const size = (await fh.stat()).size;
  if (size !== header.fileSize)
    throw new RlhfError(
      ErrorCode.IO,
      `${header.path}: the file is ${size} bytes, but was ${header.fileSize} when its header was read`,
    );
  return readAt(fh, header.path, info.byteOffset, info.byteLength, `tensor ${q(name)}`);
}

async function readTensor(header: SafetensorsHeader, name: string): Promise<Float32Array> {
  const info = header.tensors.get(name);
  if (!info) throw formatError(header.path, `no tensor ${q(name)} (the file holds ${header.tensors.size})`);
  const width = DTYPE_SIZE.get(info.dtype)!;
  if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype))
    throw new RlhfError(
      ErrorCode.UNSUPPORTED,
      `${header.path}: tensor ${q(name)} has dtype ${info.dtype}; only F32, F16, BF16 and F64 convert to float32`,
    );
  return withFile(header.path, async (fh) => {
    const bytes = await readTensorBytes(fh, header, name, info);
    if (!LITTLE_ENDIAN) swapBytes(bytes, width);
    const n = info.byteLength / width;
    switch (info.dtype) {
      case 'F32':
        return new Float32Array(bytes.buffer, 0, n);
      case 'F16':
        return f16ToF32(new Uint16Array(bytes.buffer, 0, n));
      case 'BF16':
        return bf16ToF32(new Uint16Array(bytes.buffer, 0, n));
      default:
        return Float32Array.from(new Float64Array(bytes.buffer, 0, n));
    }
  });
}

// ---- float16 / bfloat16 conversions (round-to-nearest-even; NaN stays NaN, quiet, sign kept) ----

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

/** A tensor to write; `data` is float32, stored as `dtype` (default F32; round-to-nearest-even). */
export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
  dtype?: 'F32' | 'BF16' | 'F16';
}

/** A BF16 tensor given as its bits (stored as they are): a bf16 model's weights, without a float32 copy. */
export interface Bf16TensorToWrite {
  name: string;
  shape: number[];
  data: Uint16Array;
  dtype: 'BF16';
}

interface Prepared {
  name: string;
  shape: number[];
  data: Float32Array | Uint16Array;
  dtype: 'F32' | 'BF16' | 'F16';
  byteLength: number;
}

function prepare(fn: string, tensors: unknown): Prepared[] {
  if (!Array.isArray(tensors)) throw typeError(fn, 'tensors', 'an array', tensors);
  const seen = new Set<string>();
  return tensors.map((t: unknown, i): Prepared => {
    const at = `tensors[${i}]`;
    const o = options(fn, at, t);
    o.known(['name', 'shape', 'data', 'dtype']);
    const name = o.string('name');
    if (name === '__metadata__' || seen.has(name))
      throw rangeError(
        fn,
        `${at}.name`,
        name === '__metadata__' ? 'a name other than "__metadata__"' : 'unique among the tensors',
        name,
      );
    seen.add(name);
    const shape = o.obj.shape;
    if (!Array.isArray(shape)) throw typeError(fn, `${at}.shape`, 'an array of non-negative integers', shape);
    shape.forEach((d, j) => {
      if (!isCount(d)) throw rangeError(fn, `${at}.shape[${j}]`, 'a non-negative integer', d);
    });
    const count = (shape as number[]).reduce((a, d) => a * d, 1);
    if (!Number.isSafeInteger(count))
      throw rangeError(fn, `${at}.shape`, 'a shape with at most 2^53 - 1 elements', shape);
    const dtype = o.oneOf('dtype', ['F32', 'BF16', 'F16'] as const, 'F32');
    const raw = o.obj.data;
    const bits = dtype === 'BF16' && raw instanceof Uint16Array;
    if (bits && raw.length !== count) throw rangeError(fn, `${at}.data.length`, `${count}`, raw.length);
    const data = bits ? raw : checkFloat32Array(fn, `${at}.data`, raw, { exact: count });
    return { name, shape: [...(shape as number[])], data, dtype, byteLength: count * (dtype === 'F32' ? 4 : 2) };
  });
}

function checkMetadata(fn: string, path: string, metadata: unknown): Record<string, string> | undefined {
  if (metadata === undefined) return undefined;
  const m = checkObject(fn, path, metadata);
  for (const [k, v] of Object.entries(m))
    if (typeof v !== 'string') throw typeError(fn, `${path}[${q(k)}]`, 'a string', v);
  return m as Record<string, string>;
}

function tensorBytes(t: Prepared): Uint8Array {
  const arr =
    t.data instanceof Uint16Array
      ? t.data // bf16 bits
      : t.dtype === 'F32'
        ? t.data
        : t.dtype === 'BF16'
          ? f32ToBf16(t.data)
          : f32ToF16(t.data);
  const view = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  return LITTLE_ENDIAN ? view : swapBytes(view.slice(), arr.BYTES_PER_ELEMENT);
}

function encode(fn: string, list: Prepared[], metadata: Record<string, string> | undefined): Uint8Array[] {
  // Built by hand so the keys keep their order ("0" would move first in a JS object) and a
  // tensor named "__proto__" stays an ordinary key.
  const parts: string[] = metadata ? [`"__metadata__":${JSON.stringify(metadata)}`] : [];
  let offset = 0;
  for (const t of list) {
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + t.byteLength}]}`,
    );
    offset += t.byteLength;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.length / 8) * 8; // 8 + padded is a multiple of 8, as the reference pads
  if (padded > MAX_HEADER_BYTES)
    throw rangeError(fn, 'tensors', `few enough to fit a ${MAX_HEADER_BYTES}-byte header`, padded);
  const head = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  head.set(json, 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  return [head, ...list.map(tensorBytes)];
}

/**
 * Serialises tensors (in the given order) and optional string metadata to safetensors bytes: the
 * length and header first (header padded with spaces to a multiple of 8), then one chunk per
 * tensor. F32 chunks are views of the callers' arrays (no copy).
 */
export function encodeSafetensors(
  tensors: Array<TensorToWrite | Bf16TensorToWrite>,
  metadata?: Record<string, string>,
): Uint8Array[] {
  const fn = 'encodeSafetensors';
  return encode(fn, prepare(fn, tensors), checkMetadata(fn, 'metadata', metadata));
}

/** Writes a safetensors file atomically (see {@link writeFileAtomic}). */
export function writeSafetensors(
  path: string,
  tensors: Array<TensorToWrite | Bf16TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  const fn = 'writeSafetensors';
  checkString(fn, 'path', path);
  return writeFileAtomic(path, encode(fn, prepare(fn, tensors), checkMetadata(fn, 'metadata', metadata)));
}

/** The checkpoint's path for a weight_map entry, or undefined when it is not a file inside `dir`. */
function insideDir(dir: string, file: string): string | undefined {
  if (file.length === 0 || file.includes('\0') || isAbsolute(file)) return undefined;
  const rel = relative(resolve(dir), resolve(dir, file));
  if (rel === '' || rel === '..' || rel.startsWith('..' + sep) || isAbsolute(rel)) return undefined;
  return join(dir, file);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new RlhfError(ErrorCode.IO, `${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Every tensor of a checkpoint directory, with the header of the file holding it: `model.safetensors`
 * when present (as transformers prefers it), else the files named by `model.safetensors.index.json`
 * (`{"metadata": {...}, "weight_map": {tensor: file}}`). With an index, only the tensors it lists
 * are returned, in its order; each must be in its file, and each file must lie inside `dir`.
 * @throws RlhfError `ERR_RLHF_FORMAT` naming the file and the problem; `ERR_RLHF_IO` when neither file exists or a read fails.
 */
export function readCheckpointIndex(
  dir: string,
): Promise<Map<string, { header: SafetensorsHeader; info: TensorInfo }>> {
  checkString('readCheckpointIndex', 'dir', dir);
  return readIndex(dir);
}

async function readIndex(dir: string): Promise<Map<string, { header: SafetensorsHeader; info: TensorInfo }>> {
  const out = new Map<string, { header: SafetensorsHeader; info: TensorInfo }>();
  const single = join(dir, SINGLE_FILE);
  if (await isFile(single)) {
    const header = await readSafetensorsHeader(single);
    for (const [name, info] of header.tensors) out.set(name, { header, info });
    return out;
  }
  const indexPath = join(dir, INDEX_FILE);
  if (!(await isFile(indexPath)))
    throw new RlhfError(ErrorCode.IO, `${dir}: holds neither ${SINGLE_FILE} nor ${INDEX_FILE}`);
  let json: unknown;
  try {
    if ((await stat(indexPath)).size > MAX_HEADER_BYTES) throw new Error(`larger than ${MAX_HEADER_BYTES} bytes`);
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(await readFile(indexPath)));
  } catch (err) {
    throw formatError(indexPath, `not a valid index (${(err as Error).message})`, err);
  }
  if (!isPlainObject(json)) throw formatError(indexPath, `not a JSON object (it is ${show(json)})`);
  if (Object.hasOwn(json, 'metadata') && !isPlainObject(json.metadata))
    throw formatError(indexPath, `"metadata" is ${show(json.metadata)}, not an object`);
  const map = Object.hasOwn(json, 'weight_map') ? json.weight_map : undefined;
  if (!isPlainObject(map))
    throw formatError(indexPath, `"weight_map" is ${show(map)}, not an object of tensor name -> file name`);
  const byFile = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== 'string')
      throw formatError(indexPath, `weight_map[${q(name)}] is ${show(file)}, not a file name`);
    if (!insideDir(dir, file))
      throw formatError(indexPath, `weight_map[${q(name)}] names ${q(file)}, which is not a file inside ${dir}`);
    byFile.set(file, [...(byFile.get(file) ?? []), name]);
  }
  const headers = new Map<string, SafetensorsHeader>();
  for (const [file, names] of byFile) {
    const path = insideDir(dir, file)!;
    if (!(await isFile(path)))
      throw formatError(indexPath, `tensor ${q(names[0])} is mapped to ${q(file)}, which does not exist (${path})`);
    headers.set(file, await readSafetensorsHeader(path));
  }
  for (const [name, file] of Object.entries(map) as [string, string][]) {
    const header = headers.get(file)!;
    const info = header.tensors.get(name);
    if (!info)
      throw formatError(indexPath, `tensor ${q(name)} is mapped to ${q(file)}, but ${header.path} does not hold it`);
    out.set(name, { header, info });
  }
  return out;
}

/**
 * Writes tensors into the existing directory `dir`, in the transformers layout: one
 * `model.safetensors` when their data totals at most `maxShardBytes` (default 2 GiB), else shards
 * `model-00001-of-0000N.safetensors` (filled in order; a tensor larger than the limit gets a shard
 * of its own) and `model.safetensors.index.json` with `metadata.total_size` (data bytes) and the
 * weight_map. `metadata` goes into every file's `__metadata__`. Each file is written atomically;
 * the directory as a whole is not (use replaceDirAtomic). Afterwards, checkpoint files of an
 * earlier layout (a stale model.safetensors, index or shard) are removed.
 */
export function writeCheckpointTensors(
  dir: string,
  tensors: Array<TensorToWrite | Bf16TensorToWrite>,
  opts?: { maxShardBytes?: number; metadata?: Record<string, string> },
): Promise<void> {
  const fn = 'writeCheckpointTensors';
  checkString(fn, 'dir', dir);
  const o = options(fn, 'options', opts);
  o.known(['maxShardBytes', 'metadata']);
  const maxShardBytes = o.int('maxShardBytes', { min: 1 }, 2 ** 31);
  const metadata = checkMetadata(fn, 'options.metadata', o.obj.metadata);
  return writeCheckpoint(dir, prepare(fn, tensors), maxShardBytes, metadata);
}

async function writeCheckpoint(
  dir: string,
  list: Prepared[],
  maxShardBytes: number,
  metadata: Record<string, string> | undefined,
): Promise<void> {
  const fn = 'writeCheckpointTensors';
  const total = list.reduce((a, t) => a + t.byteLength, 0);
  const written = new Set<string>();
  if (total <= maxShardBytes) {
    await writeFileAtomic(join(dir, SINGLE_FILE), encode(fn, list, metadata));
    written.add(SINGLE_FILE);
  } else {
    const shards: Prepared[][] = [[]];
    let size = 0;
    for (const t of list) {
      if (shards[shards.length - 1].length > 0 && size + t.byteLength > maxShardBytes) (shards.push([]), (size = 0));
      shards[shards.length - 1].push(t);
      size += t.byteLength;
    }
    const pad = (i: number) => String(i).padStart(5, '0');
    const weightMap: [string, string][] = [];
    for (const [i, shard] of shards.entries()) {
      const file = `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`;
      await writeFileAtomic(join(dir, file), encode(fn, shard, metadata));
      written.add(file);
      for (const t of shard) weightMap.push([t.name, file]);
    }
    weightMap.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const index = { metadata: { total_size: total }, weight_map: Object.fromEntries(weightMap) };
    await writeFileAtomic(join(dir, INDEX_FILE), JSON.stringify(index, null, 2) + '\n');
    written.add(INDEX_FILE);
  }
  try {
    for (const name of await readdir(dir))
      if (!written.has(name) && (name === SINGLE_FILE || name === INDEX_FILE || SHARD_FILE.test(name)))
        await rm(join(dir, name), { force: true });
  } catch (err) {
    throw new RlhfError(ErrorCode.IO, `${dir}: cannot remove stale checkpoint files: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
