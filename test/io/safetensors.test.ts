// safetensors: round trips (F32/BF16/F16 bit-exact), round-to-nearest-even conversions checked at
// every halfway point, header padding, empty and scalar tensors, sharded checkpoints, one test per
// validation error (code + message naming the file and the problem), and a seeded fuzz test.
import t from 'tap';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RlhfError } from '../../lib/errors.js';
import {
  MAX_HEADER_BYTES,
  bf16ToF32,
  encodeSafetensors,
  f16ToF32,
  f32ToBf16,
  readCheckpointIndex,
  readSafetensorsHeader,
  readTensorBf16,
  readTensorF32,
  writeCheckpointTensors,
  writeSafetensors,
  type TensorToWrite,
} from '../../lib/io/safetensors.js';
import { Rng } from '../helpers/random.js';
import { bitwiseEqual } from '../helpers/tolerance.js';

const root = await mkdtemp(join(tmpdir(), 'rlhf-safetensors-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
let counter = 0;
const fresh = (name = 'x.safetensors') => join(root, `${counter++}-${name}`);
const f32Bits = (...bits: number[]) => new Float32Array(new Uint32Array(bits).buffer);
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** A regex for "<path>: <problem>". */
const at = (path: string, problem: RegExp) => new RegExp(`^${escape(path)}: ${problem.source}`);

/** A file from a header (object or raw text), a data buffer, and optionally a forged header length. */
function rawFile(header: object | string | Uint8Array, data: number | Uint8Array = 0, length?: bigint): Uint8Array {
  const h =
    header instanceof Uint8Array ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}
const concat = (chunks: Uint8Array[]) => Buffer.concat(chunks);
const f32 = (shape: number[], begin: number) => ({
  dtype: 'F32',
  shape,
  data_offsets: [begin, begin + 4 * shape.reduce((a, b) => a * b, 1)],
});

t.test('F32 round trip is bit-exact, metadata and order kept', async (t) => {
  const rng = new Rng(1);
  const special = f32Bits(0x7fc00001, 0xff800000, 0x7f800000, 0x80000000, 0x00000001, 0x007fffff, 0x7f7fffff);
  const tensors: TensorToWrite[] = [
    { name: 'b.weight', shape: [3, 5], data: rng.normalF32(15) },
    { name: '0', shape: [7], data: special },
    { name: 'a', shape: [2, 2, 2], data: rng.f32(8) },
  ];
  const p = fresh();
  await writeSafetensors(p, tensors, { format: 'pt', note: 'ü' });
  const h = await readSafetensorsHeader(p);
  t.same(
    ['b.weight', '0', 'a'].map((n) => h.tensors.get(n)!.byteOffset - h.dataStart),
    [0, 60, 88],
    'data in the given order',
  );
  t.match(
    Buffer.from(await readFile(p)).toString('latin1', 8, h.dataStart),
    /^\{"__metadata__":.*"b\.weight":.*"0":.*"a":/,
    'header in the given order',
  );
  t.same(h.tensors.get('0'), { name: '0', dtype: 'F32', shape: [7], byteOffset: h.dataStart + 60, byteLength: 28 });
  t.same(h.metadata, { format: 'pt', note: 'ü' });
  for (const x of tensors) t.ok(bitwiseEqual(await readTensorF32(h, x.name), x.data), `${x.name} bit-exact`);
  t.same(
    (await readdir(root)).filter((n) => n.includes('.tmp-')),
    [],
    'no temporary files left',
  );
});

t.test('BF16 and F16 round trips are bit-exact for representable values', async (t) => {
  const rng = new Rng(2);
  const half = new Uint16Array(4000).map(() => rng.int(0, 0xffff));
  const finite = (limit: number) => half.filter((h) => (h & 0x7fff) <= limit); // no NaN
  const bf = bf16ToF32(finite(0x7f80)),
    fp = f16ToF32(finite(0x7c00));
  const p = fresh();
  await writeSafetensors(p, [
    { name: 'bf', shape: [bf.length], data: bf, dtype: 'BF16' },
    { name: 'fp', shape: [fp.length], data: fp, dtype: 'F16' },
  ]);
  const h = await readSafetensorsHeader(p);
  t.equal(h.tensors.get('bf')!.dtype, 'BF16');
  t.equal(h.tensors.get('fp')!.byteLength, 2 * fp.length);
  t.ok(bitwiseEqual(await readTensorF32(h, 'bf'), bf), 'bf16 values survive');
  t.ok(bitwiseEqual(await readTensorF32(h, 'fp'), fp), 'f16 values survive (subnormals and infinities included)');
  const nan = await (async () => {
    const q = fresh();
    await writeSafetensors(q, [{ name: 'n', shape: [2], data: f32Bits(0x7f800001, 0xffc00000), dtype: 'F16' }]);
    return readTensorF32(await readSafetensorsHeader(q), 'n');
  })();
  t.ok(Number.isNaN(nan[0]) && Number.isNaN(nan[1]), 'NaN (signalling too) stays NaN');
});

t.test('header padded with spaces to a multiple of 8; unpadded headers read too', async (t) => {
  for (const name of ['a', 'ab', 'abc', 'abcd', 'abcdefgh']) {
    const [head, data] = encodeSafetensors([{ name, shape: [1], data: new Float32Array([1]) }]);
    const n = Number(new DataView(head.buffer, head.byteOffset).getBigUint64(0, true));
    t.equal(head.length, 8 + n);
    t.equal(n % 8, 0, `"${name}": header length ${n}`);
    const text = Buffer.from(head.subarray(8)).toString();
    t.match(text, /^\{.*\} *$/);
    t.same(JSON.parse(text), { [name]: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } });
    t.equal(data.length, 4);
  }
  const p = fresh();
  await writeFile(p, rawFile({ w: f32([1], 0) }, new Uint8Array(new Float32Array([2.5]).buffer)));
  t.same([...(await readTensorF32(await readSafetensorsHeader(p), 'w'))], [2.5]);
});

t.test('empty tensors, scalars, F64 input, no tensors at all', async (t) => {
  const p = fresh();
  await writeSafetensors(p, [
    { name: 'empty', shape: [0], data: new Float32Array(0) },
    { name: 'scalar', shape: [], data: new Float32Array([3]) },
    { name: 'empty2', shape: [2, 0, 3], data: new Float32Array(0), dtype: 'BF16' },
  ]);
  const h = await readSafetensorsHeader(p);
  t.same(h.tensors.get('scalar')!.shape, []);
  t.equal((await readTensorF32(h, 'empty')).length, 0);
  t.equal((await readTensorF32(h, 'empty2')).length, 0);
  t.same([...(await readTensorF32(h, 'scalar'))], [3]);
  const q = fresh();
  await writeFile(
    q,
    rawFile(
      { d: { dtype: 'F64', shape: [3], data_offsets: [0, 24] } },
      new Uint8Array(new Float64Array([1.5, 1e300, 0.1]).buffer),
    ),
  );
  t.same([...(await readTensorF32(await readSafetensorsHeader(q), 'd'))], [1.5, Infinity, Math.fround(0.1)]);
  const e = fresh();
  await writeSafetensors(e, []);
  t.equal((await readSafetensorsHeader(e)).tensors.size, 0);
});

t.test('"__proto__" and other Object.prototype names are plain keys', async (t) => {
  const p = fresh();
  const header = `{"__proto__":${JSON.stringify(f32([1], 0))},"constructor":${JSON.stringify(f32([1], 4))},"__metadata__":{"__proto__":"x","toString":"y"}}`;
  await writeFile(p, rawFile(header, 8));
  const h = await readSafetensorsHeader(p);
  t.same([...h.tensors.keys()], ['__proto__', 'constructor']);
  t.equal(Object.getPrototypeOf(h.metadata), Object.prototype);
  t.ok(Object.hasOwn(h.metadata, '__proto__') && h.metadata['toString'] === 'y');
  t.equal(({} as Record<string, unknown>).dtype, undefined, 'Object.prototype untouched');
  const q = fresh();
  await writeSafetensors(q, [{ name: '__proto__', shape: [1], data: new Float32Array([7]) }], {
    __proto__: 'm',
  } as never);
  t.same([...(await readTensorF32(await readSafetensorsHeader(q), '__proto__'))], [7]);
  await writeFile(p, rawFile({ a: { dtype: 'toString', shape: [1], data_offsets: [0, 4] } }, 4));
  await t.rejects(readSafetensorsHeader(p), { code: 'ERR_RLHF_FORMAT', message: /unknown dtype "toString"/ });
});

t.test('every header violation is ERR_RLHF_FORMAT naming the file and the problem', async (t) => {
  const cases: [string, Uint8Array, RegExp][] = [
    ['short file', new Uint8Array(3), /the file is 3 bytes, shorter than the 8-byte header length/],
    ['length 0', rawFile('', 0, 0n), /header length is 0/],
    [
      'length > max',
      rawFile('{}', 0, BigInt(MAX_HEADER_BYTES) + 1n),
      /header length 104857601 exceeds the limit of 104857600 bytes/,
    ],
    ['length 2^64-1', rawFile('{}', 0, 2n ** 64n - 1n), /header length 18446744073709551615 exceeds the limit/],
    ['length > file', rawFile('{}', 0, 3n), /header length 3 exceeds the 2 bytes after the length field/],
    ['not utf-8', rawFile(new Uint8Array([0x7b, 0xff, 0x7d])), /header is not valid UTF-8/],
    ['BOM', rawFile('\ufeff{}'), /header is not valid JSON/],
    ['not json', rawFile('{"a":'), /header is not valid JSON \(/],
    ['array', rawFile('[1,2]'), /header is not a JSON object \(it is array\(2\)\)/],
    ['null', rawFile('null'), /header is not a JSON object \(it is null\)/],
    ['entry', rawFile({ a: 5 }), /tensor "a": entry is not an object \(it is 5\)/],
    [
      'dtype',
      rawFile({ a: { ...f32([1], 0), dtype: 'F31' } }, 4),
      /tensor "a": unknown dtype "F31" \(expected one of F64, F32/,
    ],
    ['no dtype', rawFile({ a: { shape: [1], data_offsets: [0, 4] } }, 4), /tensor "a": unknown dtype undefined/],
    [
      'shape type',
      rawFile({ a: { ...f32([1], 0), shape: '4' } }, 4),
      /tensor "a": shape "4" is not an array of non-negative integers/,
    ],
    ['shape < 0', rawFile({ a: { ...f32([1], 0), shape: [-1] } }, 4), /tensor "a": shape \[-1\] is not an array/],
    ['shape float', rawFile({ a: { ...f32([1], 0), shape: [1.5] } }, 4), /tensor "a": shape \[1\.5\] is not/],
    [
      'shape unsafe',
      rawFile('{"a":{"dtype":"F32","shape":[9007199254740993],"data_offsets":[0,4]}}', 4),
      /tensor "a": shape \[9007199254740992\] is not/,
    ],
    [
      'offsets order',
      rawFile({ a: { ...f32([1], 0), data_offsets: [4, 0] } }, 4),
      /tensor "a": data_offsets \[4, 0\] are not two integers 0 <= begin <= end/,
    ],
    [
      'offsets one',
      rawFile({ a: { ...f32([1], 0), data_offsets: [0] } }, 4),
      /tensor "a": data_offsets \[0\] are not two integers/,
    ],
    [
      'offsets inf',
      rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,1e400]}}', 4),
      /tensor "a": data_offsets \[0, Infinity\] are not/,
    ],
    [
      'offsets string',
      rawFile({ a: { ...f32([1], 0), data_offsets: [0, '4'] } }, 4),
      /tensor "a": data_offsets \[0, "4"\] are not/,
    ],
    [
      'beyond data',
      rawFile({ a: f32([5], 0) }, 16),
      /tensor "a": data_offsets \[0, 20\] end beyond the 16-byte data buffer/,
    ],
    [
      'size',
      rawFile({ a: { ...f32([4], 0), data_offsets: [0, 12] } }, 12),
      /tensor "a": data_offsets \[0, 12\] hold 12 bytes but F32 shape \[4\] needs 16/,
    ],
    [
      'overflow',
      rawFile({ a: { dtype: 'BF16', shape: [2 ** 52, 2 ** 52], data_offsets: [0, 0] } }),
      /tensor "a": data_offsets \[0, 0\] hold 0 bytes but BF16 shape \[4503599627370496, 4503599627370496\] needs 40564819207303340847894502572032$/,
    ],
    [
      'many dims',
      rawFile(
        `{"a":{"dtype":"F32","shape":[${Array(200000)
          .fill(2 ** 52)
          .join(',')}],"data_offsets":[0,4]}}`,
        4,
      ),
      /tensor "a": data_offsets \[0, 4\] hold 4 bytes but F32 shape \[4503599627370496, .*, \.\.\. \(200000 items\)\] needs more than 2\^64$/,
    ],
    ['overlap', rawFile({ a: f32([2], 0), b: f32([2], 4) }, 12), /tensors "a" \[0, 8\] and "b" \[4, 12\] overlap/],
    ['empty inside', rawFile({ a: f32([2], 0), e: f32([0], 4) }, 8), /tensors "a" \[0, 8\] and "e" \[4, 4\] overlap/],
    [
      'hole',
      rawFile({ a: f32([1], 0), b: f32([1], 8) }, 12),
      /bytes \[4, 8\) of the data buffer belong to no tensor \(a hole before tensor "b"\)/,
    ],
    [
      'trailing',
      rawFile({ a: f32([1], 0) }, 8),
      /the tensors cover 4 bytes of the 8-byte data buffer; the last 4 bytes belong to no tensor/,
    ],
    ['no tensors', rawFile({}, 4), /the tensors cover 0 bytes of the 4-byte data buffer/],
    ['metadata', rawFile({ __metadata__: 'x' }), /__metadata__ is not an object of strings \(it is "x"\)/],
    ['metadata value', rawFile({ __metadata__: { k: 1 } }), /__metadata__\["k"\] is 1, not a string/],
  ];
  for (const [label, bytes, problem] of cases) {
    const p = fresh('model.safetensors');
    await writeFile(p, bytes);
    await t.rejects(
      readSafetensorsHeader(p),
      { name: 'RlhfError', code: 'ERR_RLHF_FORMAT', message: at(p, problem) },
      label,
    );
  }
  const dir = fresh('dir');
  await mkdir(dir);
  const p = join(dir, 'model.safetensors');
  await writeFile(p, rawFile({ 'model.norm.weight': { dtype: 'F32', shape: [4], data_offsets: [0, 12] } }, 12));
  await t.rejects(readSafetensorsHeader(p), {
    message: `${p}: tensor "model.norm.weight": data_offsets [0, 12] hold 12 bytes but F32 shape [4] needs 16`,
  });
  await t.rejects(readSafetensorsHeader(join(dir, 'missing')), { code: 'ERR_RLHF_IO', message: /missing: ENOENT/ });
  await t.rejects(readSafetensorsHeader(dir), { code: 'ERR_RLHF_IO', message: /not a regular file/ });
});

t.test('readTensorF32: unknown names, unsupported dtypes, files changed since the header', async (t) => {
  const p = fresh();
  await writeFile(p, rawFile({ ids: { dtype: 'I32', shape: [2], data_offsets: [0, 8] }, w: f32([1], 8) }, 12));
  const h = await readSafetensorsHeader(p);
  await t.rejects(readTensorF32(h, 'ids'), {
    code: 'ERR_RLHF_UNSUPPORTED',
    message: at(p, /tensor "ids" has dtype I32; only F32, F16, BF16 and F64/),
  });
  await t.rejects(readTensorF32(h, 'nope'), {
    code: 'ERR_RLHF_FORMAT',
    message: at(p, /no tensor "nope" \(the file holds 2\)/),
  });
  await writeFile(p, new Uint8Array(10));
  await t.rejects(readTensorF32(h, 'w'), {
    code: 'ERR_RLHF_IO',
    message: at(p, new RegExp(`the file is 10 bytes, but was ${h.fileSize} when its header was read`)),
  });
});

t.test('writer arguments are checked (TypeError / RangeError naming the field)', async (t) => {
  const d = new Float32Array(2);
  t.throws(() => encodeSafetensors([{ name: 'a', shape: [3], data: d }]), {
    name: 'RangeError',
    message: 'encodeSafetensors: expected tensors[0].data.length to be 3, received 2',
  });
  t.throws(
    () =>
      encodeSafetensors([
        { name: 'a', shape: [2], data: d },
        { name: 'a', shape: [2], data: d },
      ]),
    { name: 'RangeError', message: /tensors\[1\]\.name to be unique among the tensors, received "a"/ },
  );
  t.throws(() => encodeSafetensors([{ name: '__metadata__', shape: [2], data: d }]), {
    name: 'RangeError',
    message: /other than "__metadata__"/,
  });
  t.throws(() => encodeSafetensors([{ name: 'a', shape: [-2], data: d }]), {
    name: 'RangeError',
    message: /tensors\[0\]\.shape\[0\] to be a non-negative integer/,
  });
  t.throws(() => encodeSafetensors([{ name: 'a', shape: [2], data: d, dtype: 'F64' as never }]), {
    name: 'TypeError',
    message: /tensors\[0\]\.dtype to be one of "F32", "BF16", "F16"/,
  });
  t.throws(() => encodeSafetensors([{ name: 'a', shape: [2], data: [0, 0] as never }]), {
    name: 'TypeError',
    message: /tensors\[0\]\.data to be a Float32Array/,
  });
  t.throws(() => encodeSafetensors([], { a: 1 } as never), {
    name: 'TypeError',
    message: /metadata\["a"\] to be a string/,
  });
  t.throws(() => writeCheckpointTensors(root, [], { maxShardBytes: 0 }), {
    name: 'RangeError',
    message: /options\.maxShardBytes to be an integer >= 1/,
  });
  t.throws(() => writeSafetensors(join(root, 'w.safetensors'), [{ name: 'a', shape: [1], data: d }]), {
    name: 'RangeError',
    message: /^writeSafetensors: expected tensors\[0\]\.data\.length to be 1/,
  });
  t.throws(() => readTensorF32({} as never, 'a'), {
    name: 'TypeError',
    message: /readTensorF32: expected header\.tensors to be a Map/,
  });
  t.throws(() => readCheckpointIndex(5 as never), {
    name: 'TypeError',
    message: /readCheckpointIndex: expected dir to be a non-empty string/,
  });
  await t.rejects(writeSafetensors(join(root, 'no/such/dir/x.safetensors'), []), {
    code: 'ERR_RLHF_IO',
    message: /no\/such\/dir\/x\.safetensors/,
  });
});

t.test('checkpoint directories: single file, shards + index, stale files removed', async (t) => {
  const rng = new Rng(7);
  const dir = fresh('ckpt');
  await mkdir(dir);
  const tensors: TensorToWrite[] = [
    { name: 'z.big', shape: [40], data: rng.f32(40) }, // 160 bytes > limit: a shard of its own
    { name: 'a', shape: [10], data: rng.f32(10) },
    { name: 'm', shape: [5, 2], data: rng.f32(10), dtype: 'BF16' },
    { name: 'b', shape: [12], data: rng.f32(12) }, // 40 + 20 + 48 > 100: a third shard
  ];
  await writeFile(join(dir, 'model.safetensors'), 'stale');
  await writeCheckpointTensors(dir, tensors, { maxShardBytes: 100, metadata: { format: 'pt' } });
  const shards = [
    'model-00001-of-00003.safetensors',
    'model-00002-of-00003.safetensors',
    'model-00003-of-00003.safetensors',
  ];
  t.same(
    (await readdir(dir)).sort(),
    [...shards, 'model.safetensors.index.json'],
    'three shards + index; the stale single file is gone',
  );
  const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8'));
  t.same(index, {
    metadata: { total_size: 268 },
    weight_map: { a: shards[1], b: shards[2], m: shards[1], 'z.big': shards[0] },
  });
  t.same(Object.keys(index.weight_map), ['a', 'b', 'm', 'z.big'], 'weight_map sorted');
  const read = await readCheckpointIndex(dir);
  t.same([...read.keys()].sort(), ['a', 'b', 'm', 'z.big']);
  t.equal(read.get('m')!.header.metadata.format, 'pt');
  for (const x of tensors) {
    const got = await readTensorF32(read.get(x.name)!.header, x.name);
    t.ok(bitwiseEqual(got, x.dtype === 'BF16' ? bf16ToF32(f32ToBf16(x.data)) : x.data), `${x.name} read back`);
  }
  await writeCheckpointTensors(dir, tensors);
  t.same(await readdir(dir), ['model.safetensors'], 'rewritten as one file; shards and index removed');
  t.equal((await readCheckpointIndex(dir)).get('a')!.header.path, join(dir, 'model.safetensors'));
});

t.test('index violations name the index, the tensor and the file', async (t) => {
  const dir = fresh('idx');
  await mkdir(dir);
  const index = join(dir, 'model.safetensors.index.json');
  await t.rejects(readCheckpointIndex(dir), {
    code: 'ERR_RLHF_IO',
    message: at(dir, /holds neither model\.safetensors nor model\.safetensors\.index\.json/),
  });
  await writeCheckpointTensors(
    dir,
    [
      { name: 'a', shape: [4], data: new Float32Array(4) },
      { name: 'b', shape: [4], data: new Float32Array(4) },
    ],
    { maxShardBytes: 16 },
  );
  const shard1 = 'model-00001-of-00002.safetensors';
  const cases: [string, string, RegExp][] = [
    ['not json', '{', /not a valid index \(/],
    ['array', '[]', /not a JSON object \(it is array\(0\)\)/],
    ['metadata', '{"metadata": 3, "weight_map": {}}', /"metadata" is 3, not an object/],
    ['no map', '{"metadata": {}}', /"weight_map" is undefined, not an object/],
    ['value', '{"weight_map": {"a": 5}}', /weight_map\["a"\] is 5, not a file name/],
    [
      'escape',
      '{"weight_map": {"a": "../x.safetensors"}}',
      /weight_map\["a"\] names "\.\.\/x\.safetensors", which is not a file inside/,
    ],
    [
      'absolute',
      '{"weight_map": {"a": "/etc/passwd"}}',
      /weight_map\["a"\] names "\/etc\/passwd", which is not a file inside/,
    ],
    ['dir itself', '{"weight_map": {"a": "."}}', /weight_map\["a"\] names "\.", which is not a file inside/],
    [
      'missing file',
      '{"weight_map": {"a": "model-00009-of-00009.safetensors"}}',
      /tensor "a" is mapped to "model-00009-of-00009\.safetensors", which does not exist/,
    ],
    [
      'missing tensor',
      `{"weight_map": {"a": "${shard1}", "zz": "${shard1}"}}`,
      new RegExp(`tensor "zz" is mapped to "${escape(shard1)}", but .*${escape(shard1)} does not hold it`),
    ],
  ];
  for (const [label, text, problem] of cases) {
    await writeFile(index, text);
    await t.rejects(
      readCheckpointIndex(dir),
      { name: 'RlhfError', code: 'ERR_RLHF_FORMAT', message: at(index, problem) },
      label,
    );
  }
  await writeFile(index, `{"weight_map": {"a": "${shard1}"}}`);
  t.same([...(await readCheckpointIndex(dir)).keys()], ['a'], 'only the listed tensors');
  await writeFile(join(dir, shard1), rawFile('{"a":'));
  await t.rejects(
    readCheckpointIndex(dir),
    { code: 'ERR_RLHF_FORMAT', message: at(join(dir, shard1), /header is not valid JSON/) },
    'a broken shard is named',
  );
});

t.test('fuzz: mutated files load or fail with ERR_RLHF_FORMAT / ERR_RLHF_IO, nothing else', async (t) => {
  const rng = new Rng(20240601);
  const valid = concat(
    encodeSafetensors(
      [
        { name: 'embed', shape: [6, 4], data: rng.normalF32(24) },
        { name: 'norm', shape: [4], data: rng.normalF32(4), dtype: 'BF16' },
        { name: 'proj', shape: [3, 3], data: rng.normalF32(9), dtype: 'F16' },
        { name: 'scalar', shape: [], data: new Float32Array([1]) },
        { name: 'empty', shape: [0, 2], data: new Float32Array(0) },
      ],
      { format: 'pt' },
    ),
  );
  const headerLen = Number(new DataView(valid.buffer, valid.byteOffset).getBigUint64(0, true));
  const headerText = Buffer.from(valid.subarray(8, 8 + headerLen)).toString();
  const flip = (from: number, to: number) => {
    const b = Uint8Array.from(valid);
    for (let k = rng.int(1, 3); k > 0; k--) b[rng.int(from, to - 1)] = rng.int(0, 255);
    return b;
  };
  // eslint-disable-next-line no-loss-of-precision -- 1e400 is Infinity on purpose (an out-of-range header number)
  const numbers = [0, -1, 1.5, 1e400, 2 ** 53, 2 ** 53 + 2, 7, 4096, '"8"', 'null', '[]', 1e-7];
  const numberCount = headerText.match(/\d+/g)!.length;
  const mutateNumbers = () => {
    let i = 0;
    const target = rng.int(0, numberCount - 1);
    const text = headerText.replace(/\d+/g, (m) =>
      i++ === target ? String(rng.next() < 0.5 ? rng.pick(numbers) : Number(m) + rng.int(-9, 9)) : m,
    );
    return rawFile(text, valid.subarray(8 + headerLen));
  };
  const variants: [string, Uint8Array, 'fail' | 'ok' | 'any'][] = [];
  for (let i = 0; i < 60; i++)
    variants.push([`truncate ${i}`, valid.subarray(0, rng.int(0, valid.length - 1)), 'fail']);
  for (let i = 0; i < 50; i++) variants.push([`length bytes ${i}`, flip(0, 8), 'any']);
  for (let i = 0; i < 90; i++) variants.push([`header bytes ${i}`, flip(8, 8 + headerLen), 'any']);
  for (let i = 0; i < 40; i++) variants.push([`data bytes ${i}`, flip(8 + headerLen, valid.length), 'ok']);
  for (let i = 0; i < 40; i++) {
    const len = rng.pick([
      0n,
      1n,
      BigInt(rng.int(0, valid.length)),
      BigInt(headerLen + rng.int(-16, 16)),
      2n ** BigInt(rng.int(20, 63)),
      2n ** 64n - 1n,
    ]);
    const b = Uint8Array.from(valid);
    new DataView(b.buffer).setBigUint64(0, len < 0n ? 0n : len, true);
    variants.push([`header length ${len}`, b, 'any']);
  }
  for (let i = 0; i < 80; i++) variants.push([`numbers ${i}`, mutateNumbers(), 'any']);
  const outcomes = { ok: 0, format: 0, io: 0 };
  const p = fresh('fuzz.safetensors');
  const unexpected: string[] = [];
  for (const [label, bytes, expect] of variants) {
    await writeFile(p, bytes);
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), 10_000)));
    const attempt = (async () => {
      const h = await readSafetensorsHeader(p);
      for (const [name, info] of h.tensors)
        if (['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) await readTensorF32(h, name);
    })();
    try {
      await Promise.race([attempt, hang]);
      outcomes.ok++;
      if (expect === 'fail') unexpected.push(`${label}: loaded`);
    } catch (err) {
      if (
        err instanceof RlhfError &&
        (err.code === 'ERR_RLHF_FORMAT' || err.code === 'ERR_RLHF_IO') &&
        err.message.startsWith(p + ': ')
      ) {
        outcomes[err.code === 'ERR_RLHF_IO' ? 'io' : 'format']++;
        if (expect === 'ok') unexpected.push(`${label}: ${err.message}`);
      } else
        unexpected.push(
          `${label}: ${err instanceof Error ? `${err.name} ${(err as RlhfError).code ?? ''} ${err.message}` : String(err)}`,
        );
    } finally {
      clearTimeout(timer);
    }
  }
  t.ok(variants.length >= 300, `${variants.length} variants`);
  t.same(unexpected, [], 'only FORMAT/IO errors naming the file; truncations always fail, data flips always load');
  t.ok(outcomes.format > 150 && outcomes.ok > 40, `outcomes: ${JSON.stringify(outcomes)}`);
});

t.test('BF16 bits: written as given, read back as they are; only BF16 tensors read as bits', async (t) => {
  // every class of bf16: ±0, subnormal, normal, ±Inf, a NaN with a payload (kept, not quieted)
  const bits = Uint16Array.from([0x0000, 0x8000, 0x0001, 0x3f80, 0xc049, 0x7f80, 0xff80, 0x7f81, 0x7fc3]);
  const path = fresh();
  await writeSafetensors(path, [
    { name: 'b', shape: [3, 3], data: bits, dtype: 'BF16' },
    { name: 'f', shape: [2], data: Float32Array.from([1.5, -2]) },
  ]);
  const h = await readSafetensorsHeader(path);
  t.same(h.tensors.get('b')!.dtype, 'BF16');
  t.same([...(await readTensorBf16(h, 'b'))], [...bits], 'bits as written');
  t.ok(bitwiseEqual(await readTensorF32(h, 'b'), bf16ToF32(bits)), 'readTensorF32 widens the same bits');
  await t.rejects(readTensorBf16(h, 'f'), { name: 'RlhfError', message: /tensor "f" has dtype F32, not BF16/ });
  await t.rejects(readTensorBf16(h, 'zz'), /no tensor "zz"/);
  await t.rejects(
    async () => writeSafetensors(fresh(), [{ name: 'b', shape: [4], data: bits, dtype: 'BF16' }]),
    /tensors\[0\]\.data\.length/,
    'a length that does not match the shape is named',
  );
});
