/**
 * The small subset of the protocol-buffers wire format that TensorBoard event files need: varints,
 * 64-bit doubles, 32-bit floats and length-delimited fields, written and read by hand.
 * Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
 */

/** Appends protobuf fields to a growing byte list. */
export class ProtoWriter {
  #parts: Uint8Array[] = [];
  #length = 0;

  #push(b: Uint8Array): void {
    this.#parts.push(b);
    this.#length += b.length;
  }

  #key(field: number, wire: number): void {
    this.#varint(BigInt(field * 8 + wire));
  }

  #varint(v: bigint): void {
    // negative int64 values take ten bytes (two's complement), as protobuf encodes them
    let x = BigInt.asUintN(64, v);
    const out: number[] = [];
    do {
      let byte = Number(x & 0x7fn);
      x >>= 7n;
      if (x) byte |= 0x80;
      out.push(byte);
    } while (x);
    this.#push(Uint8Array.from(out));
  }

  /** int64 / enum / bool field (varint). */
  varint(field: number, v: number | bigint): this {
    this.#key(field, 0);
    this.#varint(typeof v === 'bigint' ? v : BigInt(Math.trunc(v)));
    return this;
  }

  /** double field (fixed64, little-endian IEEE 754). */
  double(field: number, v: number): this {
    this.#key(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.#push(b);
    return this;
  }

  /** float field (fixed32, little-endian IEEE 754 single precision). */
  float(field: number, v: number): this {
    this.#key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.#push(b);
    return this;
  }

  /** bytes / string / embedded message field (length-delimited). */
  bytes(field: number, v: Uint8Array | string): this {
    const b = typeof v === 'string' ? new TextEncoder().encode(v) : v;
    this.#key(field, 2);
    this.#varint(BigInt(b.length));
    this.#push(b);
    return this;
  }

  /** packed repeated double field. */
  packedDoubles(field: number, values: ArrayLike<number>): this {
    const b = new Uint8Array(8 * values.length);
    const dv = new DataView(b.buffer);
    for (let i = 0; i < values.length; i++) dv.setFloat64(8 * i, values[i], true);
    return this.bytes(field, b);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.#length);
    let o = 0;
    for (const p of this.#parts) (out.set(p, o), (o += p.length));
    return out;
  }
}

/** One decoded field: varints as bigint, fixed64/fixed32 as raw bytes, length-delimited as bytes. */
export interface ProtoField {
  field: number;
  wire: 0 | 1 | 2 | 5;
  value: bigint | Uint8Array;
}

/** Splits a message into its fields, in order; throws a RangeError on malformed input. */
export function readFields(buf: Uint8Array): ProtoField[] {
  const out: ProtoField[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let v = 0n,
      shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new RangeError('protobuf: truncated varint');
      const b = buf[pos++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
      if (shift > 63n) throw new RangeError('protobuf: varint longer than 10 bytes');
    }
  };
  const take = (n: number): Uint8Array => {
    if (pos + n > buf.length)
      throw new RangeError(`protobuf: field runs past the end (${n} bytes at ${pos} of ${buf.length})`);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const field = key >>> 3,
      wire = key & 7;
    if (wire === 0) out.push({ field, wire, value: varint() });
    else if (wire === 1) out.push({ field, wire, value: take(8) });
    else if (wire === 2) out.push({ field, wire, value: take(Number(varint())) });
    else if (wire === 5) out.push({ field, wire, value: take(4) });
    else throw new RangeError(`protobuf: unsupported wire type ${wire} (field ${field})`);
  }
  return out;
}

export const asDouble = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, true);
export const asFloat = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset, 4).getFloat32(0, true);
export const asString = (b: Uint8Array): string => new TextDecoder().decode(b);
export function asPackedDoubles(b: Uint8Array): number[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  return Array.from({ length: b.length / 8 }, (_, i) => dv.getFloat64(8 * i, true));
}
