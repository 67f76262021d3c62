// Qwen3 (Qwen3ForCausalLM): per-head q/k RMSNorm before RoPE and a head_dim independent of
// hidden / heads, against test/fixtures/models/qwen3-tiny (float64 PyTorch reference of
// transformers' modeling_qwen3.py; head_dim 24 with hidden 64 and 4 heads, tied embeddings):
// log-probs, entropy, every gradient (q_norm / k_norm included), finite differences through the
// norms, greedy continuation, TP 2, greedy == forward argmax, save -> load with HF names; config
// parsing and its errors; Qwen3ForSequenceClassification (qwen3-tiny-rm) values and gradients.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode } from '../../lib/errors.js';
import { Model } from '../../lib/engine/model.js';
import { configFromHF, configToHF, tinyConfig } from '../../lib/engine/config.js';
import { parameterCount } from '../../lib/engine/memory.js';
import { exportGguf } from '../../lib/io/gguf-export.js';
import { ByteTokenizer } from '../../lib/tokenizer/byte.js';
import { checkFamilyFixture, fixtureTensors, modelFixtures, relTol } from '../helpers/family-fixture.js';
import { assertClose } from '../helpers/tolerance.js';

t.test('qwen3-tiny against the float64 reference (TP 1, 2, and 4: KV heads replicated)', async (t) => {
  await checkFamilyFixture(t, 'qwen3-tiny', {
    tensorParallel: [1, 2, 4],
    finiteDifferences: /^model\.layers\.[01]\.self_attn\.(q_norm|k_norm|q_proj|k_proj)\.weight$/,
    savedNames: [/^model\.layers\.0\.self_attn\.q_norm\.weight$/, /^model\.layers\.1\.self_attn\.k_norm\.weight$/],
    modelType: 'qwen3',
  });
});

t.test('qwen3-tiny: layout, and the norms are not ignored', async (t) => {
  const m = await Model.load(join(modelFixtures, 'qwen3-tiny'));
  t.equal(m.config.headDim, 24);
  t.ok(m.config.qkNorm);
  const shape = (n: string) => m.parameters().find((p) => p.name === n)?.shape;
  t.same(shape('model.layers.0.self_attn.q_proj.weight'), [96, 64], 'q_proj (NH·head_dim, hidden)');
  t.same(shape('model.layers.0.self_attn.o_proj.weight'), [64, 96]);
  t.same(shape('model.layers.0.self_attn.q_norm.weight'), [24]);
  t.same(shape('model.layers.0.self_attn.k_norm.weight'), [24]);
  t.notOk(shape('lm_head.weight'), 'tied embeddings');
  t.equal(
    m.parameters().reduce((s, p) => s + p.size, 0),
    parameterCount(m.config),
    'memory.ts parameterCount counts the norms',
  );
  // q_norm = 2 everywhere instead of the fixture's values changes the outputs (the norm is applied)
  const e = await fixtureTensors('qwen3-tiny');
  const input = {
    tokens: Int32Array.from(e.get('tokens')!),
    targets: Int32Array.from(e.get('targets')!),
    batch: 2,
    seqLen: 12,
    lengths: Int32Array.from(e.get('lengths')!),
  };
  const before = await m.forward(input);
  await m.setParameter('model.layers.0.self_attn.q_norm.weight', new Float32Array(24).fill(2));
  const after = await m.forward(input);
  let diff = 0;
  for (let i = 0; i < before.logprobs.length; i++)
    diff = Math.max(diff, Math.abs(before.logprobs[i] - after.logprobs[i]));
  t.ok(diff > 1e-3, `q_norm changes the log-probs (max |Δ| ${diff.toExponential(1)})`);
  m.dispose();
});

t.test('Qwen3 config: defaults, round trip, sequence classification, errors naming the key', async (t) => {
  const hf = JSON.parse(readFileSync(join(modelFixtures, 'qwen3-tiny', 'config.json'), 'utf8'));
  const c = configFromHF(hf);
  t.equal(c.family, 'qwen3');
  t.same([c.qkvBias, c.oBias, c.qkNorm, c.tieEmbeddings], [false, false, true, true]);
  t.same(configFromHF(configToHF(c)), { ...c, hf: configFromHF(configToHF(c)).hf }, 'configToHF round trip');
  t.equal(configToHF(c).model_type, 'qwen3');
  const bias = configFromHF({ ...hf, attention_bias: true });
  t.same([bias.qkvBias, bias.oBias], [true, true], 'attention_bias: q/k/v and o biases (as Llama)');
  const noHeadDim = { ...hf };
  delete noHeadDim.head_dim;
  t.equal(configFromHF(noHeadDim).headDim, 128, "head_dim absent: Qwen3Config's default 128, not hidden / heads");
  const rm = configFromHF({ ...hf, architectures: ['Qwen3ForSequenceClassification'], num_labels: 1 });
  t.same([rm.valueHead, rm.lmHead, rm.qkNorm], [true, false, true]);
  const tiny = configFromHF(tinyConfig({ family: 'qwen3', vocab: 50, hidden: 32, layers: 1, heads: 2, ffn: 64 }));
  t.same([tiny.architecture, tiny.qkNorm], ['Qwen3ForCausalLM', true], 'tinyConfig family qwen3');
  t.throws(() => configFromHF({ ...hf, use_sliding_window: true }, 'q.json'), {
    code: ErrorCode.UNSUPPORTED,
    message: /^q\.json: use_sliding_window: true is not supported by the engine \(architecture Qwen3ForCausalLM\)$/,
  });
  t.throws(() => configFromHF({ ...hf, hidden_act: 'gelu' }, 'q.json'), {
    code: ErrorCode.UNSUPPORTED,
    message: /hidden_act "gelu"/,
  });
  t.throws(() => configFromHF({ ...hf, head_dim: 0 }, 'q.json'), {
    code: ErrorCode.FORMAT,
    message: /"head_dim" must be an integer >= 1, got 0/,
  });
});

t.test('Qwen3ForSequenceClassification (a reward model) against the float64 reference (TP 1 and 2)', async (t) => {
  const e = await fixtureTensors('qwen3-tiny-rm');
  const input = {
    tokens: Int32Array.from(e.get('tokens')!),
    batch: 2,
    seqLen: 12,
    lengths: Int32Array.from(e.get('lengths')!),
  };
  for (const tp of [1, 2]) {
    const m = await Model.load(join(modelFixtures, 'qwen3-tiny-rm'), { tensorParallel: tp });
    t.same([m.config.valueHead, m.config.qkNorm], [true, true]);
    const r = await m.forward(input);
    assertClose(t, r.values!, e.get('values')!, relTol(e.get('values')!), `TP ${tp}: values`);
    await m.backward({ dValues: e.get('w_val')! });
    let checked = 0;
    for (const p of m.parameters()) {
      const ref = e.get(`grad.${p.name}`)!;
      if (assertClose(t, await m.getGradient(p.name), ref, relTol(ref, 2e-4), `TP ${tp}: grad ${p.name}`)) checked++;
    }
    t.equal(checked, m.parameters().length, `TP ${tp}: every gradient (score head and q/k norms included)`);
    m.dispose();
  }
});

t.test('GGUF export refuses Qwen3 (its llama.cpp mapping is not verified here)', async (t) => {
  const m = await Model.load(join(modelFixtures, 'qwen3-tiny'));
  await t.rejects(exportGguf(m, join(modelFixtures, 'never-written.gguf'), { tokenizer: new ByteTokenizer() }), {
    code: ErrorCode.UNSUPPORTED,
    message: /Qwen3ForCausalLM is not exported/,
  });
  m.dispose();
});

t.test('Qwen3 with LoRA: the base (q_norm included) frozen, the adapters get gradients', async (t) => {
  const m = await Model.load(join(modelFixtures, 'qwen3-tiny'), {
    lora: { rank: 4, alpha: 8, modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] },
  });
  const e = await fixtureTensors('qwen3-tiny');
  const input = {
    tokens: Int32Array.from(e.get('tokens')!),
    targets: Int32Array.from(e.get('targets')!),
    batch: 2,
    seqLen: 12,
    lengths: Int32Array.from(e.get('lengths')!),
  };
  await m.forward(input);
  await m.backward({ dLogprobs: e.get('w_lp')! });
  const qn = await m.getGradient('model.layers.0.self_attn.q_norm.weight');
  t.ok(
    qn.every((x) => x === 0),
    'frozen base: no q_norm gradient',
  );
  const b = await m.getGradient('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight');
  t.ok(
    b.some((x) => x !== 0),
    'the adapter behind q_norm gets a gradient',
  );
  m.dispose();
});
