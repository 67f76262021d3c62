/**
 * Writing safetensors (the format lib/io/safetensors.ts describes and reads): one file, its bytes,
 * or a transformers checkpoint directory (one file or shards plus an index). Tensors are checked
 * first (argument errors name the parameter: `writeSafetensors: expected tensors[2].shape[0] to be
 * ...`); every file is written atomically (lib/io/atomic.ts).
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkFloat32Array, checkObject, checkString, options, rangeError, typeError } from '../validate.js';
import { writeFileAtomic } from './atomic.js';
import { f32ToBf16, f32ToF16 } from './half.js';
import {
  INDEX_FILE,
  LITTLE_ENDIAN,
  MAX_HEADER_BYTES,
  SHARD_FILE,
  SINGLE_FILE,
  isCount,
  q,
  swapBytes,
} from './safetensors.js';

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

/** Writes a safetensors file atomically (lib/io/atomic.ts writeFileAtomic). */
export function writeSafetensors(
  path: string,
  tensors: Array<TensorToWrite | Bf16TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  const fn = 'writeSafetensors';
  checkString(fn, 'path', path);
  return writeFileAtomic(path, encode(fn, prepare(fn, tensors), checkMetadata(fn, 'metadata', metadata)));
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
