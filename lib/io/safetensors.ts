/**
 * Hugging Face safetensors: the reader and transformers-style checkpoint directories (their index);
 * the writer is lib/io/safetensors-write.ts, the F16/BF16 conversions lib/io/half.ts (both re-exported).
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
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkObject, checkString, show, typeError } from '../validate.js';
import { bf16ToF32, f16ToF32 } from './half.js';

// The conversions and the writer live beside this module; re-exported so one import serves.
export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from './half.js';
export {
  encodeSafetensors,
  writeSafetensors,
  writeCheckpointTensors,
  type TensorToWrite,
  type Bf16TensorToWrite,
} from './safetensors-write.js';

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

/** @internal a checkpoint directory's file names (safetensors-write.ts writes them) */
export const SINGLE_FILE = 'model.safetensors';
/** @internal */
export const INDEX_FILE = 'model.safetensors.index.json';
/** @internal */
export const SHARD_FILE = /^model-\d{5,}-of-\d{5,}\.safetensors$/;
/** The most bytes handed to one read(2) call (Node rejects lengths above 2^31 - 1). */
const MAX_IO = 1 << 30;
/** @internal */
export const LITTLE_ENDIAN = endianness() === 'LE';
const TWO_POW_64 = 1n << 64n;

function formatError(file: string, problem: string, cause?: unknown): RlhfError {
  return new RlhfError(ErrorCode.FORMAT, `${file}: ${problem}`, cause === undefined ? undefined : { cause });
}

/** @internal A tensor or key name for messages: JSON-quoted, long names shortened. */
export function q(name: string): string {
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

/** @internal */
export const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** @internal Reverses the bytes of each `width`-byte element in place (big-endian hosts only). */
export function swapBytes(bytes: Uint8Array, width: number): Uint8Array {
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
