// GGUF format: half/bf16 rounding against exhaustive and closed-form references, Q8_0 within its
// stated bound, write → parse round trips of every metadata type and tensor type, bad files named,
// and the exporter's metadata, tensor names, Q/K row order and refusals.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, RlhfError } from '../../lib/errors.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import {
  bf16BitsToF32,
  decodeTensor,
  encodeGguf,
  encodeTensor,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  ggufTensorF32,
  parseGguf,
  quantizeQ8_0,
  dequantizeQ8_0,
  readGguf,
  writeGguf,
  type GgufValue,
} from '../../lib/io/gguf.js';
import { byteLevelAlphabet, exportGguf, ggufTensorName, permuteForPairRope } from '../../lib/io/gguf-export.js';
import { ByteTokenizer } from '../../lib/tokenizer/byte.js';
import { BYTE_TO_CHAR } from '../../lib/tokenizer/bytelevel.js';
import { qwen2Files, writeFixture } from '../fixtures/tokenizers/build.js';
import { Rng } from '../helpers/random.js';

const dir = mkdtempSync(join(tmpdir(), 'rlhf-gguf-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('f16: every finite half round-trips; rounding is to the nearest, ties to even', async (t) => {
  let bad = 0;
  for (let h = 0; h < 0x10000; h++) {
    const x = f16BitsToF32(h);
    if (Number.isNaN(x)) continue;
    if (f32ToF16Bits(x) !== h && !(x === 0 && h === 0x8000 && f32ToF16Bits(-0) === 0x8000)) bad++;
  }
  t.equal(bad, 0, 'f32ToF16Bits(f16BitsToF32(h)) === h for all non-NaN h');
  t.equal(f32ToF16Bits(1), 0x3c00);
  t.equal(f32ToF16Bits(65504), 0x7bff);
  t.equal(f32ToF16Bits(65520), 0x7c00, 'halfway above the largest half rounds to infinity');
  t.equal(f32ToF16Bits(2 ** -25), 0, 'half the smallest subnormal: tie to even (0)');
  t.equal(f32ToF16Bits(3 * 2 ** -25), 2, '1.5 × smallest subnormal: tie to even (2)');
  t.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00, 'tie between 1 and 1+2^-10 goes to even');
  t.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02, 'tie between 1+2^-10 and 1+2^-9 goes to even');
  t.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
  // random values: the chosen half is at least as close as both neighbours
  const rng = new Rng(5);
  for (let i = 0; i < 20000; i++) {
    const x = Math.fround(rng.normal() * 2 ** Math.floor(rng.uniform(-25, 15)));
    const h = f32ToF16Bits(x);
    const d = Math.abs(f16BitsToF32(h) - x);
    for (const n of [h - 1, h + 1])
      if ((n & 0x7c00) !== 0x7c00 && (n & 0x7fff) !== 0x7fff && n >= 0) {
        if (Math.sign(f16BitsToF32(n)) === Math.sign(x) && Math.abs(f16BitsToF32(n) - x) < d) bad++;
      }
  }
  t.equal(bad, 0, 'no neighbour is closer');
});

t.test('bf16: round to nearest (no neighbour closer), ties to even, relative error ≤ 2^-8', async (t) => {
  const rng = new Rng(6);
  let worst = 0,
    closer = 0;
  for (let i = 0; i < 20000; i++) {
    const x = Math.fround(rng.normal() * 10 ** rng.uniform(-4, 4));
    const h = f32ToBf16Bits(x);
    const d = Math.abs(bf16BitsToF32(h) - x);
    worst = Math.max(worst, d / Math.abs(x));
    if ([h - 1, h + 1].some((n) => Math.abs(bf16BitsToF32(n) - x) < d)) closer++;
  }
  t.equal(closer, 0, 'no neighbour is closer');
  t.ok(worst <= 2 ** -8, `max relative error ${worst}`);
  t.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80, 'tie rounds to even (down)');
  t.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82, 'tie rounds to even (up)');
  t.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
});

t.test('Q8_0: 34-byte blocks, |x − x̂| ≤ d/2 + 127·|d − f16(d)|, zeros stay zero', async (t) => {
  const rng = new Rng(7);
  const n = 32 * 64;
  const x = new Float32Array(n);
  for (let b = 0; b < 64; b++) {
    const scale = 10 ** rng.uniform(-3, 3);
    for (let i = 0; i < 32; i++) x[b * 32 + i] = b === 5 ? 0 : rng.normal() * scale;
  }
  const q = quantizeQ8_0(x);
  t.equal(q.byteLength, 64 * 34);
  const y = dequantizeQ8_0(q, n);
  let violations = 0;
  for (let b = 0; b < 64; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]));
    const d = amax / 127;
    const dh = f16BitsToF32(f32ToF16Bits(d));
    const bound = d / 2 + 127 * Math.abs(d - dh) + 1e-12;
    for (let i = 0; i < 32; i++) if (Math.abs(x[b * 32 + i] - y[b * 32 + i]) > bound) violations++;
  }
  t.equal(violations, 0);
  t.ok(
    y.subarray(5 * 32, 6 * 32).every((v) => v === 0),
    'an all-zero block decodes to zeros',
  );
  t.throws(() => quantizeQ8_0(new Float32Array(33)), RangeError);
});

t.test('write → parse: every metadata type, every tensor type, 32-byte aligned data', async (t) => {
  const meta = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['a.u8', { type: 'u8', value: 250 }],
    ['a.i8', { type: 'i8', value: -5 }],
    ['a.u16', { type: 'u16', value: 65000 }],
    ['a.i16', { type: 'i16', value: -300 }],
    ['a.u32', { type: 'u32', value: 4e9 }],
    ['a.i32', { type: 'i32', value: -2e9 }],
    ['a.f32', { type: 'f32', value: 0.5 }],
    ['a.f64', { type: 'f64', value: Math.PI }],
    ['a.bool', { type: 'bool', value: true }],
    ['a.u64', { type: 'u64', value: 2n ** 40n }],
    ['a.i64', { type: 'i64', value: -(2n ** 40n) }],
    ['a.str', { type: 'string', value: 'héllo ▁ 世界' }],
    ['a.strs', { type: 'array', itemType: 'string', value: ['x', '', 'ÿ'] }],
    ['a.ints', { type: 'array', itemType: 'i32', value: [1, -2, 3] }],
    ['a.empty', { type: 'array', itemType: 'string', value: [] }],
  ]);
  const rng = new Rng(8);
  const rand = (k: number) => Float32Array.from({ length: k }, () => rng.normal());
  const w = rand(3 * 64),
    v = rand(5),
    b = rand(2 * 32),
    h = rand(4 * 7);
  const tensors = [
    { name: 'w', shape: [3, 64], type: 'F32' as const, data: encodeTensor(w, 'F32') },
    { name: 'v', shape: [5], type: 'F32' as const, data: encodeTensor(v, 'F32') },
    { name: 'q', shape: [2, 32], type: 'Q8_0' as const, data: encodeTensor(b, 'Q8_0') },
    { name: 'b', shape: [4, 7], type: 'BF16' as const, data: encodeTensor(h, 'BF16') },
    { name: 'h', shape: [4, 7], type: 'F16' as const, data: encodeTensor(h, 'F16') },
  ];
  const file = join(dir, 'all.gguf');
  await writeGguf(file, meta, tensors);
  const g = await readGguf(file);
  t.equal(g.version, 3);
  t.same([...g.metadata.keys()], [...meta.keys()]);
  for (const [k, val] of meta)
    t.same(
      g.metadata.get(k),
      val.type === 'u64' || val.type === 'i64' ? { type: val.type, value: BigInt(val.value) } : val,
      k,
    );
  t.same(
    g.tensors.map((x) => [x.name, x.shape, x.type]),
    tensors.map((x) => [x.name, x.shape, x.type]),
  );
  t.ok(
    g.tensors.every((x) => x.offset % 32 === 0),
    'tensor data 32-byte aligned in the file',
  );
  t.same(ggufTensorF32(g, 'w'), w, 'F32 exact');
  t.same(ggufTensorF32(g, 'v'), v);
  t.same(ggufTensorF32(g, 'q'), dequantizeQ8_0(encodeTensor(b, 'Q8_0'), 64));
  t.same(
    ggufTensorF32(g, 'b'),
    Float32Array.from(h, (x) => bf16BitsToF32(f32ToBf16Bits(x))),
  );
  t.same(
    ggufTensorF32(g, 'h'),
    Float32Array.from(h, (x) => f16BitsToF32(f32ToF16Bits(x))),
  );
  // header bytes, by hand: magic, version, counts
  const raw = readFileSync(file);
  t.equal(raw.toString('latin1', 0, 4), 'GGUF');
  t.equal(raw.readUInt32LE(4), 3);
  t.equal(raw.readBigUInt64LE(8), 5n);
  t.equal(raw.readBigUInt64LE(16), BigInt(meta.size));

  t.throws(() => parseGguf(Buffer.from('GGML....'), 'x.gguf'), {
    code: ErrorCode.FORMAT,
    message: /x\.gguf: not a GGUF file/,
  });
  const v2 = Buffer.from(raw);
  v2.writeUInt32LE(2, 4);
  t.throws(() => parseGguf(v2, 'v2.gguf'), { message: /version 2 is not supported/ });
  t.throws(() => parseGguf(raw.subarray(0, raw.byteLength - 40), 'cut.gguf'), {
    message: /cut\.gguf: tensor \w+: data runs past the end/,
  });
  t.throws(() => parseGguf(raw.subarray(0, 40), 'short.gguf'), { message: /short\.gguf: truncated/ });
  t.throws(() => encodeGguf(new Map([['k', { type: 'u32', value: -1 }]]), []), TypeError);
  t.throws(() => encodeGguf(meta, [{ ...tensors[0], data: new Uint8Array(3) }]), {
    message: /expected 768 bytes for w/,
  });
  writeFileSync(join(dir, 'junk.gguf'), 'junk');
  await t.rejects(readGguf(join(dir, 'junk.gguf')), RlhfError);
});

const llamaCfg = tinyConfig({
  vocab: 270,
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  maxPositions: 512,
  bosTokenId: 257,
  eosTokenId: 262,
  padTokenId: 256,
});

t.test('exportGguf (llama, byte tokenizer): hyperparameters, tokenizer, names, q/k rows, dtypes', async (t) => {
  const m = await Model.create({ ...llamaCfg, rope_theta: 20000, rms_norm_eps: 1e-5 }, { seed: 2 });
  const tok = new ByteTokenizer({ extraSpecialTokens: ['<|tool|>'] });
  const file = join(dir, 'llama.gguf');
  await exportGguf(m, file, { tokenizer: tok, dtype: 'q8_0', name: 'tiny' });
  const g = await readGguf(file);
  const val = (k: string) => g.metadata.get(k)?.value;
  t.equal(val('general.architecture'), 'llama');
  t.equal(val('general.name'), 'tiny');
  t.equal(val('general.file_type'), 7);
  t.same(
    [
      'context_length',
      'embedding_length',
      'block_count',
      'feed_forward_length',
      'attention.head_count',
      'attention.head_count_kv',
      'rope.dimension_count',
    ].map((k) => val(`llama.${k}`)),
    [512, 64, 2, 96, 4, 2, 16],
  );
  t.equal(val('llama.rope.freq_base'), 20000);
  t.equal(val('llama.attention.layer_norm_rms_epsilon'), Math.fround(1e-5));
  t.equal(val('tokenizer.ggml.model'), 'gpt2');
  const tokens = val('tokenizer.ggml.tokens') as string[];
  t.equal(tokens.length, 270, 'one token per embedding row');
  t.same(tokens.slice(0, 256), BYTE_TO_CHAR, 'ids 0..255: the byte-level characters');
  t.same(byteLevelAlphabet(), BYTE_TO_CHAR);
  t.same(tokens.slice(256, 264), [...tok.specialTokens]);
  t.equal(tokens[269], '[PAD269]');
  const types = val('tokenizer.ggml.token_type') as number[];
  t.same([types[0], types[255], types[256], types[263], types[264]], [1, 1, 3, 3, 5]);
  t.same(val('tokenizer.ggml.merges'), []);
  t.same(
    [
      val('tokenizer.ggml.bos_token_id'),
      val('tokenizer.ggml.eos_token_id'),
      val('tokenizer.ggml.padding_token_id'),
      val('tokenizer.ggml.add_bos_token'),
    ],
    [257, 262, 256, false],
  );
  t.match(val('tokenizer.chat_template'), /<\|assistant\|>/);

  const names = g.tensors.map((x) => x.name).sort();
  t.same(
    names,
    [
      'output.weight',
      'output_norm.weight',
      'token_embd.weight',
      ...[0, 1].flatMap((l) =>
        ['attn_k', 'attn_norm', 'attn_output', 'attn_q', 'attn_v', 'ffn_down', 'ffn_gate', 'ffn_norm', 'ffn_up'].map(
          (s) => `blk.${l}.${s}.weight`,
        ),
      ),
    ].sort(),
  );
  const byName = new Map(g.tensors.map((x) => [x.name, x]));
  t.equal(byName.get('blk.0.attn_norm.weight')!.type, 'F32', 'norms stay f32');
  t.equal(byName.get('blk.0.ffn_down.weight')!.type, 'Q8_0');
  t.same(byName.get('blk.0.ffn_down.weight')!.shape, [64, 96]);
  // Q/K: row h·D + 2j + i of the file is row h·D + i·D/2 + j of ours (D = 16); V unchanged
  const D = 16;
  for (const [hf, gg, heads] of [
    ['q_proj', 'attn_q', 4],
    ['k_proj', 'attn_k', 2],
  ] as const) {
    const ours = await m.getParameter(`model.layers.1.self_attn.${hf}.weight`);
    const theirs = ggufTensorF32(g, `blk.1.${gg}.weight`);
    const want = dequantizeQ8_0(quantizeQ8_0(permuteForPairRope(ours, heads, 64)), ours.length);
    t.same(theirs, want, `${hf}: the permuted rows, quantized`);
    let moved = 0;
    for (let h = 0; h < heads; h++)
      for (let j = 0; j < D / 2; j++)
        for (let i = 0; i < 2; i++) {
          const src = ours.subarray((h * D + i * (D / 2) + j) * 64, (h * D + i * (D / 2) + j + 1) * 64);
          const dst = theirs.subarray((h * D + 2 * j + i) * 64, (h * D + 2 * j + i + 1) * 64);
          let amax = 0;
          for (const x of src) amax = Math.max(amax, Math.abs(x));
          if (src.some((x, c) => Math.abs(x - dst[c]) > amax / 127)) moved++;
        }
    t.equal(moved, 0, `${hf}: each row lands where llama.cpp's pair RoPE expects it`);
  }
  t.same(ggufTensorF32(g, 'blk.0.attn_norm.weight'), await m.getParameter('model.layers.0.input_layernorm.weight'));

  for (const dtype of ['f32', 'bf16'] as const) {
    const f = join(dir, `llama-${dtype}.gguf`);
    await exportGguf(m, f, { tokenizer: tok, dtype });
    const gd = await readGguf(f);
    const w = await m.getParameter('model.layers.0.mlp.up_proj.weight');
    const got = ggufTensorF32(gd, 'blk.0.ffn_up.weight');
    if (dtype === 'f32') t.same(got, w, 'f32: exact');
    else t.same(got, decodeTensor(encodeTensor(w, 'BF16'), 'BF16', w.length), 'bf16: rounded to nearest even');
  }
  m.dispose();
});

t.test(
  'exportGguf (qwen2, tokenizer.json): vocabulary, merges, pre-tokenizer, template; tied output omitted',
  async (t) => {
    const tokDir = await writeFixture(join(dir, 'qwen-tok'), qwen2Files());
    const json = qwen2Files()['tokenizer.json'];
    const size = Object.keys(json.model.vocab).length + json.added_tokens.length;
    const m = await Model.create(
      tinyConfig({ family: 'qwen2', vocab: size + 3, hidden: 32, layers: 1, heads: 2, ffn: 64, tieEmbeddings: true }),
      { seed: 1 },
    );
    const file = join(dir, 'qwen.gguf');
    await exportGguf(m, file, { tokenizer: tokDir });
    const g = await readGguf(file);
    const val = (k: string) => g.metadata.get(k)?.value;
    t.equal(val('general.architecture'), 'qwen2');
    t.equal(val('tokenizer.ggml.pre'), 'qwen2');
    const tokens = val('tokenizer.ggml.tokens') as string[];
    for (const [text, id] of Object.entries(json.model.vocab)) if (tokens[id] !== text) t.fail(`token ${id}`);
    const im = json.added_tokens.find((a: { content: string }) => a.content === '<|im_end|>')!;
    t.equal(tokens[im.id], '<|im_end|>');
    t.equal((val('tokenizer.ggml.token_type') as number[])[im.id], 3, 'special added token: CONTROL');
    t.equal(tokens[size + 2], `[PAD${size + 2}]`);
    t.same(val('tokenizer.ggml.merges'), json.model.merges);
    t.equal(val('tokenizer.ggml.eos_token_id'), im.id);
    t.equal(val('tokenizer.chat_template'), qwen2Files()['tokenizer_config.json'].chat_template);
    t.notOk(
      g.tensors.some((x) => x.name === 'output.weight'),
      'tied embeddings: no output.weight',
    );
    t.ok(
      g.tensors.some((x) => x.name === 'blk.0.attn_q.bias'),
      'q/k/v biases kept',
    );
    // qwen2 rows are not permuted
    t.same(ggufTensorF32(g, 'blk.0.attn_q.weight'), await m.getParameter('model.layers.0.self_attn.q_proj.weight'));
    m.dispose();
  },
);

t.test(
  "Model.save(path, {format: 'gguf'}): the file exportGguf writes; the tokenizer from the model or its folder",
  async (t) => {
    const tok = new ByteTokenizer();
    const m = await Model.create(llamaCfg, { seed: 5 });
    const viaExport = join(dir, 'save-export.gguf'),
      viaSave = join(dir, 'save-save.gguf');
    await exportGguf(m, viaExport, { tokenizer: tok, dtype: 'q8_0', name: 'n' });
    await m.save(viaSave, { format: 'gguf', tokenizer: tok, dtype: 'q8_0', name: 'n' });
    t.ok(readFileSync(viaSave).equals(readFileSync(viaExport)), 'byte-identical to exportGguf');
    m.tokenizer = tok; // the model's own tokenizer when options.tokenizer is absent
    await m.save(viaSave, { format: 'gguf', dtype: 'q8_0', name: 'n' });
    t.ok(readFileSync(viaSave).equals(readFileSync(viaExport)), 'Model.tokenizer used');
    // a model loaded from a checkpoint folder: its tokenizer files
    const ckpt = join(dir, 'save-ckpt');
    await m.save(ckpt);
    const loaded = await Model.load(ckpt);
    await loaded.save(viaSave, { format: 'gguf', dtype: 'f32' });
    const g = await readGguf(viaSave);
    t.same(ggufTensorF32(g, 'blk.0.ffn_up.weight'), await m.getParameter('model.layers.0.mlp.up_proj.weight'));
    t.equal((g.metadata.get('tokenizer.ggml.tokens')!.value as string[]).length, llamaCfg.vocab_size);
    const bare = await Model.create(llamaCfg, { seed: 5 });
    await t.rejects(bare.save(viaSave, { format: 'gguf' }), { name: 'TypeError', message: /options\.tokenizer/ });
    await t.rejects(bare.save(viaSave, { format: 'gguf', tokenizer: tok, maxShardBytes: 1 }), {
      message: /maxShardBytes/,
    });
    await t.rejects(bare.save(viaSave, { format: 'gguf', tokenizer: tok, dtype: 'F16' }), { message: /dtype/ });
    await t.rejects(bare.save(ckpt, { format: 'onnx' as never }), { message: /format/ });
    for (const x of [m, loaded, bare]) x.dispose();
  },
);

t.test('exportGguf refuses what llama.cpp would not read faithfully', async (t) => {
  const tok = new ByteTokenizer();
  const glm = await Model.create(tinyConfig({ family: 'glm', vocab: 263, hidden: 32, layers: 1, heads: 2, ffn: 64 }));
  await t.rejects(exportGguf(glm, join(dir, 'glm.gguf'), { tokenizer: tok }), {
    code: ErrorCode.UNSUPPORTED,
    message: /GLM-4/,
  });
  glm.dispose();
  const rm = await Model.create(tinyConfig({ vocab: 263, hidden: 32, layers: 1, heads: 2, ffn: 64, valueHead: true }));
  await t.rejects(exportGguf(rm, join(dir, 'rm.gguf'), { tokenizer: tok }), {
    code: ErrorCode.UNSUPPORTED,
    message: /no LM head/,
  });
  rm.dispose();
  const small = await Model.create(tinyConfig({ vocab: 100, hidden: 32, layers: 1, heads: 2, ffn: 64 }));
  await t.rejects(exportGguf(small, join(dir, 's.gguf'), { tokenizer: tok }), {
    code: ErrorCode.UNSUPPORTED,
    message: /263 tokens but the model's vocabulary is 100/,
  });
  await t.rejects(exportGguf(small, join(dir, 's.gguf'), { tokenizer: tok, dtype: 'q4' as never }), TypeError);
  await t.rejects(exportGguf(small, join(dir, 's.gguf'), { tokenizer: 3 as never }), { message: /options\.tokenizer/ });
  // a SentencePiece-style (Unigram, Metaspace) tokenizer.json has no faithful "gpt2" mapping
  const spm = join(dir, 'spm');
  const metaspace = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
  await writeFixture(spm, {
    'tokenizer.json': {
      version: '1.0',
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: metaspace,
      post_processor: null,
      decoder: metaspace,
      model: {
        type: 'Unigram',
        unk_id: 0,
        vocab: [
          ['<unk>', 0],
          ['<s>', 0],
          ['</s>', 0],
          ['▁a', -1],
          ['b', -2],
        ],
        byte_fallback: false,
      },
    },
    'tokenizer_config.json': { eos_token: '</s>', bos_token: '<s>' },
  });
  await t.rejects(exportGguf(small, join(dir, 's.gguf'), { tokenizer: spm }), {
    code: ErrorCode.UNSUPPORTED,
    message: /only byte-level BPE tokenizers.*"Unigram"/,
  });
  small.dispose();
  t.throws(() => ggufTensorName('model.layers.0.mlp.gate_up_proj.weight'), { code: ErrorCode.UNSUPPORTED });
});
