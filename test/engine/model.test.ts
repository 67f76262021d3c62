// Model properties: generate's log-probs equal forward's bit for bit; greedy = argmax of forward;
// finite-difference gradients for every parameter kind and head; backward accumulates; packing
// and padding give the same numbers as separate rows; save/load round trip; activation memory
// as documented; one call at a time; bad input named.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { bitwiseEqual } from '../helpers/tolerance.js';
import { parameterGradientMismatches } from '../helpers/gradcheck.js';
import { Rng } from '../helpers/random.js';

const tiny = (over: Partial<Parameters<typeof tinyConfig>[0]> = {}) =>
  tinyConfig({ vocab: 61, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 256, ...over });

t.test('generate: sampled log-probs equal forward bit for bit; stop tokens; streams', async (t) => {
  for (const family of ['llama', 'glm'] as const) {
    const m = await Model.create(tiny({ family }), { seed: 3, initStd: 0.3 });
    const prompts = [[1, 2, 3, 4, 5], [7], [9, 10, 11]];
    const out = await m.generate({
      prompts,
      maxNewTokens: 12,
      temperature: 1,
      topP: 0.95,
      topK: 40,
      seed: 11,
      stopTokens: [13],
    });
    // recompute every row with forward on prompt + generated tokens
    for (let r = 0; r < prompts.length; r++) {
      const seq = [...prompts[r], ...out[r].tokens];
      const T = seq.length;
      const targets = new Int32Array(T).fill(-1);
      for (let i = prompts[r].length - 1; i < T - 1; i++) targets[i] = seq[i + 1];
      const f = await m.forward({ tokens: Int32Array.from(seq), targets, batch: 1, seqLen: T, saveForBackward: false });
      const got = f.logprobs.slice(prompts[r].length - 1, T - 1);
      t.ok(bitwiseEqual(got, out[r].logprobs), `${family} row ${r}: generate log-probs == forward log-probs (bitwise)`);
      if (out[r].finishReason === 'stop') t.equal(out[r].tokens.at(-1), 13, 'a stopped row ends on the stop token');
      else t.equal(out[r].tokens.length, 12);
    }
    // a row's sample depends only on (seed, stream): the same prompt alone at streamOffset r reproduces row r
    const alone = await m.generate({
      prompts: [prompts[2]],
      maxNewTokens: 12,
      temperature: 1,
      topP: 0.95,
      topK: 40,
      seed: 11,
      stopTokens: [13],
      streamOffset: 2,
    });
    t.same(Array.from(alone[0].tokens), Array.from(out[2].tokens), 'row reproduced alone');
    // explicit per-row streams: rows reordered, each keeps its stream, each samples as before
    const swapped = await m.generate({
      prompts: [prompts[2], prompts[0]],
      maxNewTokens: 12,
      temperature: 1,
      topP: 0.95,
      topK: 40,
      seed: 11,
      stopTokens: [13],
      streams: [2, 0],
    });
    t.same(Array.from(swapped[0].tokens), Array.from(out[2].tokens), 'streams: row 2 reproduced at position 0');
    t.same(Array.from(swapped[1].tokens), Array.from(out[0].tokens), 'streams: row 0 reproduced at position 1');
    t.throws(
      () => m.generate({ prompts: [prompts[0]], maxNewTokens: 2, streams: [0, 1] }),
      /options\.streams/,
      'one stream per prompt',
    );
    t.throws(
      () => m.generate({ prompts: [prompts[0]], maxNewTokens: 2, streams: [0], streamOffset: 1 }),
      /options\.streams/,
      'not with streamOffset',
    );
    t.throws(() => m.generate({ prompts: [prompts[0]], maxNewTokens: 2, streams: [-1] }), /options\.streams\[0\]/);
    m.dispose();
  }
});

t.test(
  'temperature: generate returns log π_T of the full tempered distribution, which forward(temperature) reproduces bit for bit',
  async (t) => {
    const m = await Model.create(tiny(), { seed: 5, initStd: 0.3 });
    t.teardown(() => m.dispose());
    const prompts = [[1, 2, 3, 4, 5], [7], [9, 10, 11]];
    for (const filter of [{}, { topK: 5, topP: 0.9 }]) {
      const out = await m.generate({ prompts, maxNewTokens: 10, temperature: 0.7, seed: 3, stopTokens: [], ...filter });
      for (let r = 0; r < prompts.length; r++) {
        const seq = [...prompts[r], ...out[r].tokens];
        const T = seq.length;
        const targets = new Int32Array(T).fill(-1);
        for (let i = prompts[r].length - 1; i < T - 1; i++) targets[i] = seq[i + 1];
        const at = async (temperature: number) =>
          (
            await m.forward({
              tokens: Int32Array.from(seq),
              targets,
              batch: 1,
              seqLen: T,
              temperature,
              saveForBackward: false,
            })
          ).logprobs.slice(prompts[r].length - 1, T - 1);
        const label = `${JSON.stringify(filter)} row ${r}`;
        t.ok(
          bitwiseEqual(await at(0.7), out[r].logprobs),
          `${label}: generate log-probs == forward at T 0.7 (bitwise)`,
        );
        t.notOk(bitwiseEqual(await at(1), out[r].logprobs), `${label}: and not forward at T 1`);
      }
    }
    // tempered logits z/T fed to the sampler at T 1: the same draws as a plain softmax(z/T) sampler would make
    // (native/tests/test_sampling.cc checks frequencies); here the greedy limit is unchanged by T
    const g0 = await m.generate({ prompts, maxNewTokens: 6, temperature: 0, stopTokens: [] });
    const g1 = await m.generate({ prompts, maxNewTokens: 6, temperature: 1e-3, seed: 1, stopTokens: [] });
    t.same(
      g1.map((x) => Array.from(x.tokens)),
      g0.map((x) => Array.from(x.tokens)),
      'T → 0 approaches greedy',
    );
    await t.rejects(
      m.generate({ prompts, maxNewTokens: 2, temperature: 1e-40 }),
      /temperature/,
      'a temperature whose inverse overflows is refused',
    );
  },
);

t.test('greedy decoding equals the argmax of forward', async (t) => {
  const m = await Model.create(tiny(), { seed: 4, initStd: 0.3 });
  const [g] = await m.generate({ prompts: [[3, 1, 4]], maxNewTokens: 6, temperature: 0, stopTokens: [] });
  const seq = [3, 1, 4, ...g.tokens];
  const f = await m.forward({
    tokens: Int32Array.from(seq),
    batch: 1,
    seqLen: seq.length,
    logits: true,
    saveForBackward: false,
  });
  const V = m.config.vocab;
  for (let i = 2; i < seq.length - 1; i++) {
    const row = f.logits!.subarray(i * V, (i + 1) * V);
    let best = 0;
    for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j;
    t.equal(seq[i + 1], best, `step ${i - 2}`);
  }
});

t.test('finite differences: every parameter kind, every head', async (t) => {
  for (const [label, cfg] of [
    ['glm (qkv bias, fused gate_up, partial interleaved rope), logprobs + entropy', tiny({ family: 'glm' })],
    ['qwen2 reward model, values', tiny({ family: 'qwen2', valueHead: true })],
  ] as const) {
    const m = await Model.create(cfg, { seed: 5, initStd: 0.2 });
    const rng = new Rng(6);
    const B = 2,
      T = 7,
      N = B * T,
      V = m.config.vocab;
    const tokens = Int32Array.from({ length: N }, () => rng.int(0, V - 1));
    const targets = Int32Array.from({ length: N }, (_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
    const wl = rng.f32(N),
      we = rng.f32(N),
      wv = rng.f32(N);
    const lengths = [T, 5];
    const isRm = m.config.valueHead;
    const loss = async () => {
      const f = await m.forward({
        tokens,
        targets: isRm ? undefined : targets,
        batch: B,
        seqLen: T,
        lengths,
        entropy: !isRm,
        saveForBackward: false,
      });
      let s = 0;
      for (let i = 0; i < N; i++) s += isRm ? wv[i] * f.values![i] : wl[i] * f.logprobs[i] + we[i] * f.entropy![i];
      return s;
    };
    await m.forward({ tokens, targets: isRm ? undefined : targets, batch: B, seqLen: T, lengths, entropy: !isRm });
    await m.backward(isRm ? { dValues: wv } : { dLogprobs: wl, dEntropy: we });
    const bad: string[] = [];
    for (const p of m.parameters()) {
      const grad = await m.getGradient(p.name);
      bad.push(...(await parameterGradientMismatches(m, p, grad, loss)));
    }
    t.same(bad, [], `${label}: ${m.parameters().length} parameters × 3 entries`);
    m.dispose();
  }
});

t.test('backward accumulates (+=): two forward/backward pairs double the gradients; zeroGrad resets', async (t) => {
  const m = await Model.create(tiny(), { seed: 7 });
  const N = 2 * 9,
    tokens = Int32Array.from({ length: N }, (_, i) => (i * 7) % 61),
    targets = tokens.map((x, i) => (i % 9 === 8 ? -1 : tokens[i + 1]));
  const d = new Float32Array(N).fill(-1 / N);
  await m.forward({ tokens, targets, batch: 2, seqLen: 9 });
  await m.backward({ dLogprobs: d });
  const g1 = await m.getGradient('model.layers.1.mlp.down_proj.weight');
  await m.forward({ tokens, targets, batch: 2, seqLen: 9 }); // backward runs once per forward
  await m.backward({ dLogprobs: d });
  const g2 = await m.getGradient('model.layers.1.mlp.down_proj.weight');
  t.ok(
    g2.every((x, i) => Math.abs(x - 2 * g1[i]) <= 1e-6 + 1e-5 * Math.abs(x)),
    'doubled',
  );
  await m.zeroGrad();
  t.ok(
    (await m.getGradient('model.embed_tokens.weight')).every((x) => x === 0),
    'zeroed',
  );
});

t.test('padding and packing equal separate rows', async (t) => {
  const m = await Model.create(tiny(), { seed: 8, initStd: 0.3 });
  const a = [5, 9, 3, 8, 1],
    b = [4, 4, 2];
  const run = async (seq: number[]) => {
    const tg = Int32Array.from(seq, (_, i) => (i + 1 < seq.length ? seq[i + 1] : -1));
    return (
      await m.forward({
        tokens: Int32Array.from(seq),
        targets: tg,
        batch: 1,
        seqLen: seq.length,
        saveForBackward: false,
      })
    ).logprobs;
  };
  const la = await run(a),
    lb = await run(b);
  // padded batch: row 1 = b padded to 5
  const tokens = Int32Array.from([...a, ...b, 0, 0]);
  const targets = Int32Array.from([9, 3, 8, 1, -1, 4, 2, -1, -1, -1]);
  const padded = await m.forward({ tokens, targets, batch: 2, seqLen: 5, lengths: [5, 3], saveForBackward: false });
  t.ok(
    bitwiseEqual(padded.logprobs.subarray(0, 5), la) && bitwiseEqual(padded.logprobs.subarray(5, 8), lb),
    'padded rows bit-identical',
  );
  t.same(Array.from(padded.logprobs.subarray(8)), [0, 0], 'padding outputs 0');
  // packed: one row holding a then b, segments and restarted positions
  const packed = await m.forward({
    tokens: Int32Array.from([...a, ...b]),
    targets: Int32Array.from([9, 3, 8, 1, -1, 4, 2, -1]),
    positions: Int32Array.from([0, 1, 2, 3, 4, 0, 1, 2]),
    segments: Int32Array.from([0, 0, 0, 0, 0, 1, 1, 1]),
    batch: 1,
    seqLen: 8,
    saveForBackward: false,
  });
  const close = (x: Float32Array, y: Float32Array) => x.every((v, i) => Math.abs(v - y[i]) < 1e-5);
  t.ok(
    close(packed.logprobs.subarray(0, 5), la) && close(packed.logprobs.subarray(5, 8), lb),
    'packed documents do not see each other',
  );
});

t.test('save and load: Hugging Face names, identical outputs, bf16 option, atomic', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-save-'));
  try {
    const m = await Model.create(tiny({ family: 'qwen2' }), { seed: 9 });
    const tokens = Int32Array.from([1, 2, 3, 4]),
      targets = Int32Array.from([2, 3, 4, -1]);
    const before = await m.forward({ tokens, targets, batch: 1, seqLen: 4, saveForBackward: false });
    await m.save(join(dir, 'ckpt'));
    const cfg = JSON.parse(readFileSync(join(dir, 'ckpt', 'config.json'), 'utf8'));
    t.same(cfg.architectures, ['Qwen2ForCausalLM']);
    const loaded = await Model.load(join(dir, 'ckpt'));
    t.same(
      loaded.parameters().map((p) => p.name),
      m.parameters().map((p) => p.name),
    );
    t.ok(
      loaded.parameters().some((p) => p.name === 'model.layers.0.self_attn.q_proj.bias'),
      'transformers names',
    );
    const after = await loaded.forward({ tokens, targets, batch: 1, seqLen: 4, saveForBackward: false });
    t.ok(bitwiseEqual(before.logprobs, after.logprobs), 'loads back identically');
    await m.save(join(dir, 'ckpt-bf16'), { dtype: 'BF16' });
    const b = await Model.load(join(dir, 'ckpt-bf16'));
    const ab = await b.forward({ tokens, targets, batch: 1, seqLen: 4, saveForBackward: false });
    t.ok(
      ab.logprobs.every((x, i) => Math.abs(x - before.logprobs[i]) < 0.05),
      'bf16 checkpoint close',
    );
    // a failing save leaves the old checkpoint intact
    await t.rejects(
      m.save(join(dir, 'ckpt'), {
        extraFiles: async () => {
          throw new Error('disk full');
        },
      }),
      /disk full/,
    );
    const again = await Model.load(join(dir, 'ckpt'));
    t.ok(
      bitwiseEqual(
        (await again.forward({ tokens, targets, batch: 1, seqLen: 4, saveForBackward: false })).logprobs,
        before.logprobs,
      ),
      'old checkpoint intact',
    );
    // a CausalLM checkpoint loaded as a critic: backbone kept, score head initialised
    const critic = await Model.load(join(dir, 'ckpt'), { architecture: 'Qwen2ForSequenceClassification' });
    t.equal(critic.config.valueHead, true);
    t.ok(bitwiseEqual(await critic.getParameter('model.norm.weight'), await m.getParameter('model.norm.weight')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('bad checkpoints and configs: one clear error each', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-bad-'));
  try {
    const m = await Model.create(tiny(), { seed: 1 });
    await m.save(join(dir, 'a'));
    const cfg = JSON.parse(readFileSync(join(dir, 'a', 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'a', 'config.json'), JSON.stringify({ ...cfg, hidden_size: 64, head_dim: 16 }));
    await t.rejects(Model.load(join(dir, 'a')), {
      code: 'ERR_RLHF_FORMAT',
      message: /has shape \[61, 32\], but config\.json .* needs \[61, 64\]/,
    });
    writeFileSync(join(dir, 'a', 'config.json'), JSON.stringify({ ...cfg, architectures: ['GPT2LMHeadModel'] }));
    await t.rejects(Model.load(join(dir, 'a')), {
      code: 'ERR_RLHF_UNSUPPORTED',
      message: /GPT2LMHeadModel.*supported: LlamaForCausalLM/,
    });
    writeFileSync(
      join(dir, 'a', 'config.json'),
      JSON.stringify({ ...cfg, rope_scaling: { type: 'longrope', short_factor: [1], long_factor: [1] } }),
    );
    await t.rejects(Model.load(join(dir, 'a')), {
      code: 'ERR_RLHF_UNSUPPORTED',
      message: /rope_scaling\.rope_type "longrope" is not supported/,
    });
    await t.rejects(Model.load(join(dir, 'missing')), { code: 'ERR_RLHF_IO' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('activation memory per token per layer is as documented', async (t) => {
  const m = await Model.create(tiny(), { seed: 2 });
  const c = m.config,
    B = 3,
    T = 10,
    N = B * T;
  const perTokenPerLayer =
    2 * c.hidden + 2 + (c.heads + 2 * c.kvHeads) * c.headDim + c.heads + c.heads * c.headDim + 2 * c.ffn;
  const tokens = new Int32Array(N).fill(1);
  await m.forward({ tokens, batch: B, seqLen: T, saveForBackward: true, targets: new Int32Array(N).fill(-1) });
  const saved = 4 * N * (c.layers * perTokenPerLayer + 2 * c.hidden + 1);
  const scratch = 4 * N * (c.hidden + c.ffn);
  t.equal(
    m.activationBytes,
    saved + scratch,
    `${perTokenPerLayer} floats per token per layer (+ final norm state and per-call scratch)`,
  );
  m.releaseActivations();
  t.equal(m.activationBytes, 0);
});

t.test('one call at a time, disposed, bad inputs', async (t) => {
  const m = await Model.create(tiny(), { seed: 2 });
  const tokens = new Int32Array(8).fill(1);
  const p = m.forward({ tokens, batch: 1, seqLen: 8 });
  await t.rejects(m.forward({ tokens, batch: 1, seqLen: 8 }), {
    code: 'ERR_RLHF_BUSY',
    message: /the model is busy with another call; await it before calling forward\(\)/,
  });
  await p;
  t.throws(() => m.forward({ tokens, batch: 2, seqLen: 8 }), {
    name: 'RangeError',
    message: 'Model.forward: expected batch.tokens.length to be 16, received 8',
  });
  await t.rejects(m.forward({ tokens: new Int32Array(8).fill(99), batch: 1, seqLen: 8 }), {
    name: 'RangeError',
    message: /tokens\[0\] = 99 is outside the vocabulary \[0, 61\)/,
  });
  t.throws(() => m.generate({ prompts: [[1]], maxNewTokens: 2, topP: 1.5 }), {
    name: 'RangeError',
    message: /options\.topP to be a finite number > 0 and <= 1, received 1\.5/,
  });
  await t.rejects(m.backward({ dEntropy: new Float32Array(8) }), {
    message: /dEntropy needs the forward to have computed entropy/,
  });
  await t.rejects(m.generate({ prompts: [[1]], maxNewTokens: 300 }), {
    name: 'RangeError',
    message: /exceeds max_position_embeddings \(256\)/,
  });
  m.dispose();
  t.throws(() => m.forward({ tokens, batch: 1, seqLen: 8 }), { code: 'ERR_RLHF_DISPOSED' });
});
