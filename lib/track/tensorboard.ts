/**
 * TensorBoard event files ("tfevents"), written and read without TensorFlow.
 *
 * File: a sequence of TFRecords, each
 *   uint64 length (LE) · uint32 masked CRC32C(length bytes) · data · uint32 masked CRC32C(data)
 * where masked(c) = ((c >>> 15) | (c << 17)) + 0xa282ead8 (mod 2^32).
 * Data: one `tensorflow.Event` protobuf — wall_time (1, double, seconds), step (2, int64),
 * file_version (3, string; the first record is "brain.Event:2"), summary (5, Summary).
 * Summary.value (1, repeated Value): tag (1), simple_value (2, float), histo (5, HistogramProto),
 * tensor (8, TensorProto), metadata (9, SummaryMetadata). Text goes as a DT_STRING tensor with the
 * "text" plugin, which TensorBoard's Text tab renders as Markdown.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, RlhfError } from '../errors.js';
import { asDouble, asFloat, asPackedDoubles, asString, ProtoWriter, readFields, type ProtoField } from './protobuf.js';

// ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78) ----

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C of `data` (RFC 3720 appendix B.4), as an unsigned 32-bit integer. */
export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The TFRecord checksum: the CRC rotated right by 15 bits plus a constant. */
export function maskedCrc32c(data: Uint8Array): number {
  const c = crc32c(data);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord around `data`. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(data.length), true);
  dv.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  dv.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

// ---- Event encoding ----

export interface Histogram {
  min: number;
  max: number;
  num: number;
  sum: number;
  sumSquares: number;
  /** right edge of each bucket, increasing */
  bucketLimit: number[];
  /** count in each bucket */
  bucket: number[];
}

/** A histogram of the finite values with `bins` equal-width buckets (TensorBoard takes any edges). */
export function histogramOf(values: ArrayLike<number>, bins = 30): Histogram {
  const v = Array.from(values).filter(Number.isFinite);
  if (!v.length) return { min: 0, max: 0, num: 0, sum: 0, sumSquares: 0, bucketLimit: [0], bucket: [0] };
  const min = Math.min(...v),
    max = Math.max(...v);
  const n = min === max ? 1 : bins,
    width = (max - min) / n;
  const bucket = new Array<number>(n).fill(0);
  for (const x of v) bucket[Math.min(n - 1, width > 0 ? Math.floor((x - min) / width) : 0)]++;
  const bucketLimit = Array.from({ length: n }, (_, i) => (i === n - 1 ? max : min + width * (i + 1)));
  return {
    min,
    max,
    num: v.length,
    sum: v.reduce((a, b) => a + b, 0),
    sumSquares: v.reduce((a, b) => a + b * b, 0),
    bucketLimit,
    bucket,
  };
}

export type SummaryValue =
  { tag: string; scalar: number } | { tag: string; histogram: Histogram } | { tag: string; text: string };

function encodeValue(v: SummaryValue): Uint8Array {
  const w = new ProtoWriter().bytes(1, v.tag);
  if ('scalar' in v) w.float(2, v.scalar);
  else if ('histogram' in v) {
    const h = v.histogram;
    const hp = new ProtoWriter()
      .double(1, h.min)
      .double(2, h.max)
      .double(3, h.num)
      .double(4, h.sum)
      .double(5, h.sumSquares)
      .packedDoubles(6, h.bucketLimit)
      .packedDoubles(7, h.bucket);
    w.bytes(5, hp.finish());
  } else {
    // TensorProto{dtype: DT_STRING (7), tensor_shape: [] (scalar), string_val: [text]}
    const tensor = new ProtoWriter().varint(1, 7).bytes(2, new Uint8Array(0)).bytes(8, v.text);
    const metadata = new ProtoWriter().bytes(1, new ProtoWriter().bytes(1, 'text').finish());
    w.bytes(8, tensor.finish()).bytes(9, metadata.finish());
  }
  return w.finish();
}

/** An Event protobuf: `values` as a Summary, or `fileVersion` for the file's first record. */
export function encodeEvent(e: {
  wallTime: number;
  step: number;
  values?: SummaryValue[];
  fileVersion?: string;
}): Uint8Array {
  const w = new ProtoWriter().double(1, e.wallTime);
  if (e.step) w.varint(2, e.step); // proto3: a zero step is the default and not written
  if (e.fileVersion !== undefined) w.bytes(3, e.fileVersion);
  if (e.values) {
    const s = new ProtoWriter();
    for (const v of e.values) s.bytes(1, encodeValue(v));
    w.bytes(5, s.finish());
  }
  return w.finish();
}

// ---- Writer ----

/**
 * Appends events to `<dir>/events.out.tfevents.<seconds>.<host>.<pid>.<n>` (TensorBoard reads every
 * file whose name contains "tfevents"). Each write appends whole records with one system call, so
 * a crash loses at most the record being written (readers skip a torn last record).
 */
let writers = 0; // n: two writers of one process never share a file

export class TensorBoardWriter {
  readonly path: string;
  #fd: number | undefined;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    const now = Date.now() / 1000;
    this.path = join(
      dir,
      `events.out.tfevents.${Math.floor(now)}.${hostname().replace(/[^\w.-]/g, '_')}.${process.pid}.${writers++}`,
    );
    try {
      this.#fd = openSync(this.path, 'a');
    } catch (err) {
      throw new RlhfError(ErrorCode.IO, `TensorBoardWriter: cannot open ${this.path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.#append([encodeEvent({ wallTime: now, step: 0, fileVersion: 'brain.Event:2' })]);
  }

  #append(events: Uint8Array[]): void {
    if (this.#fd === undefined) throw new RlhfError(ErrorCode.IO, `TensorBoardWriter: ${this.path} is closed`);
    const records = events.map(tfRecord);
    const buf = new Uint8Array(records.reduce((s, r) => s + r.length, 0));
    let o = 0;
    for (const r of records) (buf.set(r, o), (o += r.length));
    writeSync(this.#fd, buf);
  }

  /** One event per call holding every value; non-finite scalars are written as they are (TensorBoard shows NaN). */
  write(step: number, values: SummaryValue[], wallTime = Date.now() / 1000): void {
    if (!Number.isInteger(step) || step < 0)
      throw new RangeError(`TensorBoardWriter.write: expected step to be an integer >= 0, received ${step}`);
    if (values.length) this.#append([encodeEvent({ wallTime, step, values })]);
  }

  scalars(step: number, scalars: Record<string, number>, wallTime?: number): void {
    this.write(
      step,
      Object.entries(scalars)
        .filter(([, v]) => typeof v === 'number')
        .map(([tag, scalar]) => ({ tag, scalar })),
      wallTime,
    );
  }

  flush(): void {
    if (this.#fd !== undefined) fsyncSync(this.#fd);
  }

  close(): void {
    if (this.#fd === undefined) return;
    fsyncSync(this.#fd);
    closeSync(this.#fd);
    this.#fd = undefined;
  }
}

// ---- Reader ----

export interface DecodedValue {
  tag: string;
  scalar?: number;
  histogram?: Histogram;
  text?: string;
  plugin?: string;
}

export interface DecodedEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  values: DecodedValue[];
}

const one = (fields: ProtoField[], n: number) => fields.find((f) => f.field === n)?.value;

function decodeHistogram(b: Uint8Array): Histogram {
  const f = readFields(b);
  const d = (n: number) => (one(f, n) instanceof Uint8Array ? asDouble(one(f, n) as Uint8Array) : 0);
  const packed = (n: number) =>
    f
      .filter((x) => x.field === n)
      .flatMap((x) => (x.wire === 2 ? asPackedDoubles(x.value as Uint8Array) : [asDouble(x.value as Uint8Array)]));
  return { min: d(1), max: d(2), num: d(3), sum: d(4), sumSquares: d(5), bucketLimit: packed(6), bucket: packed(7) };
}

function decodeValue(b: Uint8Array): DecodedValue {
  const f = readFields(b);
  const v: DecodedValue = { tag: asString((one(f, 1) as Uint8Array) ?? new Uint8Array(0)) };
  const simple = one(f, 2);
  if (simple instanceof Uint8Array) v.scalar = asFloat(simple);
  const histo = one(f, 5);
  if (histo instanceof Uint8Array) v.histogram = decodeHistogram(histo);
  const tensor = one(f, 8);
  if (tensor instanceof Uint8Array) {
    const strings = readFields(tensor)
      .filter((x) => x.field === 8)
      .map((x) => asString(x.value as Uint8Array));
    if (strings.length) v.text = strings.join('\n');
  }
  const meta = one(f, 9);
  if (meta instanceof Uint8Array) {
    const pd = one(readFields(meta), 1);
    if (pd instanceof Uint8Array) v.plugin = asString((one(readFields(pd), 1) as Uint8Array) ?? new Uint8Array(0));
  }
  return v;
}

export function decodeEvent(b: Uint8Array): DecodedEvent {
  const f = readFields(b);
  const wt = one(f, 1),
    step = one(f, 2),
    fv = one(f, 3),
    summary = one(f, 5);
  const e: DecodedEvent = {
    wallTime: wt instanceof Uint8Array ? asDouble(wt) : 0,
    step: typeof step === 'bigint' ? Number(BigInt.asIntN(64, step)) : 0,
    values: [],
  };
  if (fv instanceof Uint8Array) e.fileVersion = asString(fv);
  if (summary instanceof Uint8Array)
    e.values = readFields(summary)
      .filter((x) => x.field === 1)
      .map((x) => decodeValue(x.value as Uint8Array));
  return e;
}

/** The data of every TFRecord in `buf`; a torn last record is dropped, a bad checksum is an error. */
export function readRecords(buf: Uint8Array, source = 'tfevents'): Uint8Array[] {
  const out: Uint8Array[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  let pos = 0;
  while (pos < buf.length) {
    if (pos + 12 > buf.length) break; // torn header
    if (dv.getUint32(pos + 8, true) !== maskedCrc32c(buf.subarray(pos, pos + 8)))
      throw new RlhfError(ErrorCode.FORMAT, `${source}: record at byte ${pos}: length checksum mismatch`);
    const n = Number(dv.getBigUint64(pos, true));
    if (pos + 16 + n > buf.length) break; // torn data
    const data = buf.subarray(pos + 12, pos + 12 + n);
    if (dv.getUint32(pos + 12 + n, true) !== maskedCrc32c(data))
      throw new RlhfError(ErrorCode.FORMAT, `${source}: record at byte ${pos}: data checksum mismatch`);
    out.push(data);
    pos += 16 + n;
  }
  return out;
}

/** Every event of one event file, in order. */
export function readEventFile(path: string): DecodedEvent[] {
  let buf: Uint8Array;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new RlhfError(ErrorCode.IO, `readEventFile: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  return readRecords(buf, path).map(decodeEvent);
}
