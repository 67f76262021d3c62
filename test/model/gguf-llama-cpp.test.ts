// GGUF round trip through llama.cpp (node-llama-cpp, prebuilt CPU binary): a random Llama model
// (q/k rows and biases permuted for llama.cpp's pair RoPE; q/k/v/o biases) and a Qwen2 model (q/k/v biases, tied embeddings)
// exported with the byte tokenizer. At f32 (F32 KV cache in llama.cpp) greedy tokens must be equal
// and the first step's top-5 log-probs within 1e-4. A bf16 or q8_0 file is compared with our model
// holding the file's (rounded) weights: llama.cpp also rounds the activations to bf16/q8_0 inside
// its dot products, so only a loose bound holds (0.15; a misplaced tensor, scale or row order moves
// these log-probs by more than 1); the agreement is reported.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel, type Token } from 'node-llama-cpp';
import { tinyConfig } from '../../lib/engine/config.js';
import { exportGguf, type GgufDType } from '../../lib/io/gguf-export.js';
import { decodeTensor, encodeTensor } from '../../lib/io/gguf.js';
import { Model } from '../../lib/engine/model.js';
import { ByteTokenizer } from '../../lib/tokenizer/byte.js';
import { loadTokenizer } from '../../lib/tokenizer/load.js';
import { qwen2Files, writeFixture } from '../fixtures/tokenizers/build.js';

const dir = mkdtempSync(join(tmpdir(), 'rlhf-gguf-cpp-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const tok = new ByteTokenizer();
const PROMPTS = ['The quick brown fox', 'héllo wörld: 3+4=', '<|user|>', 'a'];
const NEW_TOKENS = 16;
const TOP = 5;

let llama: Llama;
t.before(async () => {
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false });
});

/** Our log-softmax of the last position's logits. */
async function ourLastLogprobs(m: Model, ids: number[]): Promise<Float64Array> {
  const T = ids.length,
    V = m.config.vocab;
  const f = await m.forward({
    tokens: Int32Array.from(ids),
    batch: 1,
    seqLen: T,
    logits: true,
    saveForBackward: false,
  });
  const row = f.logits!.subarray((T - 1) * V, T * V);
  let mx = -Infinity;
  for (const v of row) mx = Math.max(mx, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - mx);
  return Float64Array.from(row, (v) => v - mx - Math.log(s));
}

/** llama.cpp: greedy continuation of `ids` and the log-probs of the first step. */
async function llamaCpp(model: LlamaModel, ids: number[]): Promise<{ tokens: number[]; first: Map<number, number> }> {
  const ctx = await model.createContext({
    contextSize: 128,
    batchSize: 128,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  try {
    const seq = ctx.getSequence();
    const tokens: number[] = [];
    let first = new Map<number, number>();
    let input: number[] = ids;
    for (let step = 0; step < NEW_TOKENS; step++) {
      const items = input.map((id, i) =>
        i === input.length - 1
          ? ([id, { generateNext: { token: true, probabilities: step === 0, options: { temperature: 0 } } }] as const)
          : id,
      );
      const out = await seq.controlledEvaluate(items as never);
      const next = out[input.length - 1]!.next!;
      if (step === 0) first = new Map([...next.probabilities!.entries()].map(([k, p]) => [k as number, Math.log(p)]));
      tokens.push(next.token as number);
      input = [next.token as number];
    }
    return { tokens, first };
  } finally {
    await ctx.dispose();
  }
}

const configs = {
  llama: {
    ...tinyConfig({
      vocab: 263,
      hidden: 64,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      ffn: 128,
      maxPositions: 256,
      bosTokenId: 257,
      eosTokenId: 262,
      padTokenId: 256,
    }),
    attention_bias: true,
  },
  qwen2: tinyConfig({
    family: 'qwen2',
    vocab: 263,
    hidden: 64,
    layers: 2,
    heads: 4,
    kvHeads: 1,
    ffn: 96,
    maxPositions: 256,
    tieEmbeddings: true,
    eosTokenId: 262,
    padTokenId: 256,
  }),
};

for (const [family, cfg] of Object.entries(configs)) {
  t.test(`${family}: llama.cpp reproduces our model from the GGUF`, async (t) => {
    const m = await Model.create({ ...cfg, rope_theta: 5000 }, { seed: 7, initStd: 0.15 });
    // non-zero biases, so that a bias left out or misplaced (or a q/k bias not permuted) changes the numbers
    const biases = m.parameters().filter((p) => p.name.endsWith('_proj.bias'));
    t.ok(biases.length >= (family === 'llama' ? 8 : 6), 'the model has q/k/v (and for llama o) biases');
    for (const p of biases)
      await m.setParameter(
        p.name,
        Float32Array.from({ length: p.size }, (_, i) => 0.3 * Math.sin(i + p.offset)),
      );
    const bounds: Record<GgufDType, number> = { f32: 1e-4, bf16: 0.15, q8_0: 0.15 };
    for (const dtype of ['f32', 'bf16', 'q8_0'] as const) {
      // our reference: the weights exactly as the file stores them (matrices rounded, norms and biases f32)
      const ref = dtype === 'f32' ? m : await m.clone();
      if (dtype !== 'f32')
        for (const p of ref.parameters().filter((p) => p.shape.length === 2))
          await ref.setParameter(
            p.name,
            decodeTensor(
              encodeTensor(await ref.getParameter(p.name), dtype === 'bf16' ? 'BF16' : 'Q8_0'),
              dtype === 'bf16' ? 'BF16' : 'Q8_0',
              p.size,
            ),
          );
      const ours = [];
      for (const p of PROMPTS) {
        const ids = tok.encode(p, { addSpecialTokens: true });
        const [g] = await ref.generate({ prompts: [ids], maxNewTokens: NEW_TOKENS, temperature: 0, stopTokens: [] });
        ours.push({ ids, tokens: Array.from(g.tokens), logprobs: await ourLastLogprobs(ref, ids) });
      }
      if (ref !== m) ref.dispose();
      const file = join(dir, `${family}-${dtype}.gguf`);
      await exportGguf(m, file, { tokenizer: tok, dtype });
      const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
      try {
        t.same(
          model.tokenize('héllo <|end|>', false),
          tok.encode('héllo <|end|>'),
          `${dtype}: llama.cpp splits text into our byte ids`,
        );
        t.same(model.tokenize('<|end|>', true), [262], `${dtype}: special tokens map to our ids`);
        t.equal(
          model.detokenize(tok.encode('héllo wörld') as Token[]),
          'héllo wörld',
          `${dtype}: llama.cpp decodes our ids`,
        );
        let worst = 0,
          sameTokens = 0,
          sameTop1 = 0;
        for (const [i, o] of ours.entries()) {
          const cpp = await llamaCpp(model, o.ids);
          const top = Array.from(o.logprobs.keys())
            .sort((a, b) => o.logprobs[b] - o.logprobs[a])
            .slice(0, TOP);
          for (const id of top) worst = Math.max(worst, Math.abs((cpp.first.get(id) ?? -Infinity) - o.logprobs[id]));
          if (cpp.tokens[0] === o.tokens[0]) sameTop1++;
          if (cpp.tokens.every((x, j) => x === o.tokens[j])) sameTokens++;
          if (dtype === 'f32') t.same(cpp.tokens, o.tokens, `f32 prompt ${i}: greedy tokens equal`);
        }
        t.comment(
          `${family} ${dtype}: top-${TOP} first-step log-probs max |diff| ${worst.toExponential(2)}; first token equal ${sameTop1}/${PROMPTS.length}; all ${NEW_TOKENS} greedy tokens equal ${sameTokens}/${PROMPTS.length}`,
        );
        t.ok(
          worst <= bounds[dtype],
          `${dtype}: top-${TOP} log-probs within ${bounds[dtype]} (max |diff| ${worst.toExponential(2)})`,
        );
      } finally {
        await model.dispose();
      }
    }
    m.dispose();
  });
}

t.test(
  'a byte-level BPE tokenizer.json (Qwen2 style): llama.cpp tokenizes as we do and decodes the same greedy tokens',
  async (t) => {
    const tokDir = await writeFixture(join(dir, 'qwen-tok'), qwen2Files());
    const hf = await loadTokenizer(tokDir);
    const m = await Model.create(
      tinyConfig({
        family: 'qwen2',
        vocab: hf.vocabSize + 4,
        hidden: 64,
        layers: 2,
        heads: 4,
        kvHeads: 2,
        ffn: 96,
        maxPositions: 256,
      }),
      { seed: 3, initStd: 0.15 },
    );
    const file = join(dir, 'qwen-hf.gguf');
    await exportGguf(m, file, { tokenizer: tokDir });
    const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
    try {
      for (const text of [
        'Hello world, how are you doing today?',
        'What is 2 + 2 = 4?  I can help.\n\nFine thanks',
        "You're a helpful assistant: 12345 ünïcödé 世界",
      ])
        t.same(model.tokenize(text, false), hf.encode(text), `same ids for ${JSON.stringify(text)}`);
      const ids = hf.encodePrompt([{ role: 'user', content: 'Hi there, what is 2 + 2?' }]);
      t.same(
        model.tokenize(
          hf.applyChatTemplate([{ role: 'user', content: 'Hi there, what is 2 + 2?' }], { addGenerationPrompt: true }),
          true,
        ),
        ids,
        'chat prompt with special tokens',
      );
      const [g] = await m.generate({ prompts: [ids], maxNewTokens: NEW_TOKENS, temperature: 0, stopTokens: [] });
      const cpp = await llamaCpp(model, ids);
      t.same(cpp.tokens, Array.from(g.tokens), 'greedy tokens equal');
      t.equal(model.detokenize(cpp.tokens as Token[]), hf.decode(g.tokens), 'and decode to the same text');
    } finally {
      await model.dispose();
      m.dispose();
    }
  },
);

t.test('a LoRA model: the file holds W + (α/r)·B·A and llama.cpp matches our forward with live adapters', async (t) => {
  const m = await Model.create(configs.llama, {
    seed: 9,
    initStd: 0.15,
    lora: { rank: 4, alpha: 6, modules: 'all-linear' },
  });
  for (const p of m.parameters().filter((p) => p.name.includes('.lora_B.')))
    await m.setParameter(
      p.name,
      Float32Array.from({ length: p.size }, (_, i) => 0.2 * Math.cos(3 * i + p.offset)),
    );
  const file = join(dir, 'lora.gguf');
  await exportGguf(m, file, { tokenizer: tok });
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  try {
    let worst = 0;
    for (const p of PROMPTS) {
      const ids = tok.encode(p, { addSpecialTokens: true });
      const ours = await ourLastLogprobs(m, ids);
      const cpp = await llamaCpp(model, ids);
      const [g] = await m.generate({ prompts: [ids], maxNewTokens: NEW_TOKENS, temperature: 0, stopTokens: [] });
      t.same(cpp.tokens, Array.from(g.tokens), `greedy tokens equal for ${JSON.stringify(p)}`);
      for (const id of Array.from(ours.keys())
        .sort((a, b) => ours[b] - ours[a])
        .slice(0, TOP))
        worst = Math.max(worst, Math.abs((cpp.first.get(id) ?? -Infinity) - ours[id]));
    }
    t.ok(worst <= 1e-4, `top-${TOP} log-probs within 1e-4 (max |diff| ${worst.toExponential(2)})`);
  } finally {
    await model.dispose();
    m.dispose();
  }
});

t.teardown(async () => {
  await llama?.dispose();
});
