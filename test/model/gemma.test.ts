// Gemma 2 (Gemma2ForCausalLM) and Gemma 3 text (Gemma3ForCausalLM, gemma3_text) against
// test/fixtures/models/gemma2-tiny and gemma3-tiny (float64 PyTorch reference of transformers'
// modeling_gemma2.py / modeling_gemma3.py): (1 + w) RMSNorm, embeddings × sqrt(hidden), GeGLU with
// the tanh GELU, norms on the attention and MLP outputs, query_pre_attn_scalar, alternating local
// (sliding) and global layers, Gemma 2's attention and final logit soft-caps, Gemma 3's q/k norm
// and its two RoPE bases (local 10000, global 1e6 with linear scaling). Log-probs, entropy, every
// gradient, finite differences, greedy (KV cache), TP 2, save -> load; each feature is shown to
// act by switching it off; config parsing and its errors.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode } from '../../lib/errors.js';
import { Model } from '../../lib/engine/model.js';
import { configFromHF, configToHF } from '../../lib/engine/config.js';
import { parameterCount } from '../../lib/engine/memory.js';
import { checkFamilyFixture, fixtureTensors, modelFixtures } from '../helpers/family-fixture.js';
import { parameterGradientMismatches } from '../helpers/gradcheck.js';

const config = (name: string) => JSON.parse(readFileSync(join(modelFixtures, name, 'config.json'), 'utf8'));

t.test('gemma2-tiny against the float64 reference (TP 1 and 2)', async (t) => {
  await checkFamilyFixture(t, 'gemma2-tiny', {
    finiteDifferences:
      /^(model\.layers\.[01]\.(post_attention_layernorm|pre_feedforward_layernorm|post_feedforward_layernorm|self_attn\.q_proj)\.weight|model\.norm\.weight)$/,
    savedNames: [
      /^model\.layers\.0\.post_attention_layernorm\.weight$/,
      /^model\.layers\.0\.pre_feedforward_layernorm\.weight$/,
      /^model\.layers\.1\.post_feedforward_layernorm\.weight$/,
    ],
    modelType: 'gemma2',
  });
});

t.test('gemma3-tiny against the float64 reference (TP 1, 2, and 4: KV heads replicated)', async (t) => {
  await checkFamilyFixture(t, 'gemma3-tiny', {
    tensorParallel: [1, 2, 4],
    finiteDifferences: /^model\.layers\.[02]\.self_attn\.(q_norm|k_norm|q_proj)\.weight$/,
    savedNames: [
      /^model\.layers\.2\.self_attn\.q_norm\.weight$/,
      /^model\.layers\.0\.post_feedforward_layernorm\.weight$/,
    ],
    modelType: 'gemma3_text',
  });
});

/** max |Δ log-prob| between the fixture model and the same weights under a changed config.json. */
async function effect(name: string, change: Record<string, unknown>): Promise<number> {
  const m = await Model.load(join(modelFixtures, name));
  const other = await Model.create({ ...config(name), ...change });
  for (const p of m.parameters()) await other.setParameter(p.name, await m.getParameter(p.name));
  const e = await fixtureTensors(name);
  const input = {
    tokens: Int32Array.from(e.get('tokens')!),
    targets: Int32Array.from(e.get('targets')!),
    batch: 2,
    seqLen: 12,
    lengths: Int32Array.from(e.get('lengths')!),
  };
  const a = await m.forward(input);
  const b = await other.forward(input);
  m.dispose();
  other.dispose();
  let d = 0;
  for (let i = 0; i < a.logprobs.length; i++) d = Math.max(d, Math.abs(a.logprobs[i] - b.logprobs[i]));
  return d;
}

t.test('each Gemma feature acts (switching it off changes the log-probs)', async (t) => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['gemma2-tiny', { attn_logit_softcapping: null }, 'attention soft-cap'],
    ['gemma2-tiny', { final_logit_softcapping: null }, 'final soft-cap'],
    ['gemma2-tiny', { query_pre_attn_scalar: 16 }, 'query_pre_attn_scalar'],
    ['gemma2-tiny', { layer_types: ['full_attention', 'full_attention'] }, 'the local layer'],
    ['gemma3-tiny', { rope_local_base_freq: 1000000 }, 'the local RoPE base'],
    ['gemma3-tiny', { rope_scaling: null }, "the global layers' rope_scaling"],
    ['gemma3-tiny', { sliding_window: 12 }, 'the window'],
  ];
  for (const [name, change, what] of cases) {
    const d = await effect(name, change);
    t.ok(d > 1e-3, `${name}: ${what} (max |Δ| ${d.toExponential(1)})`);
  }
});

t.test('Gemma configs: defaults, layer types, round trip, errors naming the key', async (t) => {
  const g2 = configFromHF(config('gemma2-tiny'));
  t.same(
    [g2.family, g2.normOffset, g2.embedScale, g2.sandwichNorms, g2.geluTanh, g2.qkNorm, g2.ropeLocalTheta],
    ['gemma2', 1, Math.fround(8), 1, true, false, 0],
  );
  t.same([g2.slidingWindow, g2.slidingLayers, g2.attnSoftcap, g2.finalSoftcap], [5, [1, 0], 2, 3]);
  t.equal(g2.attnScale, 24 ** -0.5);
  const g3 = configFromHF(config('gemma3-tiny'));
  t.same(
    [g3.family, g3.qkNorm, g3.slidingLayers, g3.ropeLocalTheta, g3.ropeTheta],
    ['gemma3', true, [1, 1, 0], 10000, 1e6],
  );
  t.same([g3.attnSoftcap, g3.finalSoftcap, g3.rope.type], [0, 0, 'linear']);
  for (const c of [g2, g3]) {
    const back = configToHF(c);
    t.equal(back.hidden_activation, 'gelu_pytorch_tanh');
    t.notOk('hidden_act' in back && back.hidden_act === 'silu', 'no SiLU written for Gemma');
    const again = configFromHF(back);
    t.same({ ...again, hf: {} }, { ...c, hf: {} }, `${c.family}: configToHF round trip`);
  }
  t.equal(configToHF(g3).model_type, 'gemma3_text');
  // Gemma2Config defaults when keys are absent: soft-caps 50 / 30, query_pre_attn_scalar 256, window 4096
  const bare = { ...config('gemma2-tiny') };
  for (const k of ['attn_logit_softcapping', 'final_logit_softcapping', 'query_pre_attn_scalar', 'sliding_window'])
    delete bare[k];
  const d2 = configFromHF(bare);
  t.same([d2.attnSoftcap, d2.finalSoftcap, d2.attnScale, d2.slidingWindow], [50, 30, 1 / 16, 4096]);
  // Gemma 3: sliding_window_pattern 6 by default; explicit layer_types win
  const g3bare = { ...config('gemma3-tiny'), num_hidden_layers: 7 };
  delete g3bare.sliding_window_pattern;
  t.same(configFromHF(g3bare).slidingLayers, [1, 1, 1, 1, 1, 0, 1]);
  t.same(
    configFromHF({ ...config('gemma3-tiny'), layer_types: ['full_attention', 'sliding_attention', 'full_attention'] })
      .slidingLayers,
    [0, 1, 0],
  );
  const m = await Model.load(join(modelFixtures, 'gemma3-tiny'));
  t.equal(
    m.parameters().reduce((s, p) => s + p.size, 0),
    parameterCount(m.config),
    'parameterCount counts Gemma norms',
  );
  m.dispose();
  const err = (name: string, change: Record<string, unknown>, code: string, message: RegExp) =>
    t.throws(() => configFromHF({ ...config(name), ...change }, 'g.json'), { code, message });
  err(
    'gemma2-tiny',
    { hidden_activation: 'gelu' },
    ErrorCode.UNSUPPORTED,
    /^g\.json: hidden_activation "gelu" \(only "gelu_pytorch_tanh"\) is not supported/,
  );
  err(
    'gemma2-tiny',
    { layer_types: ['sliding_attention'] },
    ErrorCode.FORMAT,
    /^g\.json: layer_types must list num_hidden_layers \(2\) entries/,
  );
  err(
    'gemma2-tiny',
    { query_pre_attn_scalar: 0 },
    ErrorCode.FORMAT,
    /"query_pre_attn_scalar" must be a positive number, got 0/,
  );
  err(
    'gemma2-tiny',
    { attn_logit_softcapping: -1 },
    ErrorCode.FORMAT,
    /"attn_logit_softcapping" must be a positive number, got -1/,
  );
  err('gemma2-tiny', { sliding_window: null }, ErrorCode.FORMAT, /"sliding_window" must be an integer >= 1, got null/);
  err(
    'gemma3-tiny',
    { use_bidirectional_attention: true },
    ErrorCode.UNSUPPORTED,
    /^g\.json: use_bidirectional_attention true changes the model's math/,
  );
  err(
    'gemma3-tiny',
    { rope_local_base_freq: 0 },
    ErrorCode.FORMAT,
    /"rope_local_base_freq" must be a positive number, got 0/,
  );
});

t.test('Gemma 3 with rope_parameters per layer type (the form newer transformers write)', async (t) => {
  const flat = config('gemma3-tiny');
  const { rope_theta: _t, rope_scaling: _s, rope_local_base_freq: _l, ...rest } = flat;
  const perType = {
    ...rest,
    rope_parameters: {
      full_attention: { rope_type: 'linear', factor: 2.0, rope_theta: 1000000 },
      sliding_attention: { rope_type: 'default', rope_theta: 10000 },
    },
  };
  const a = configFromHF(flat),
    b = configFromHF(perType);
  t.same(
    [b.ropeTheta, b.rope, b.ropeLocalTheta],
    [a.ropeTheta, a.rope, a.ropeLocalTheta],
    'same RoPE as the flat form',
  );
  t.same(configFromHF(configToHF(b)).rope, b.rope, 'round trip keeps rope_parameters');
  const m = await Model.load(join(modelFixtures, 'gemma3-tiny'));
  const other = await Model.create(perType);
  for (const p of m.parameters()) await other.setParameter(p.name, await m.getParameter(p.name));
  const e = await fixtureTensors('gemma3-tiny');
  const input = {
    tokens: Int32Array.from(e.get('tokens')!),
    targets: Int32Array.from(e.get('targets')!),
    batch: 2,
    seqLen: 12,
  };
  t.same(
    Array.from((await other.forward(input)).logprobs),
    Array.from((await m.forward(input)).logprobs),
    'identical log-probs',
  );
  m.dispose();
  other.dispose();
  t.throws(
    () =>
      configFromHF(
        {
          ...perType,
          rope_parameters: {
            ...perType.rope_parameters,
            sliding_attention: { rope_type: 'yarn', factor: 2, rope_theta: 1e4 },
          },
        },
        'g.json',
      ),
    {
      code: ErrorCode.UNSUPPORTED,
      message: /^g\.json: rope_parameters\.sliding_attention\.rope_type "yarn" is not supported/,
    },
  );
});

t.test(
  'LoRA on Gemma 2: adapter gradients through the sandwich norms and soft-caps (finite differences)',
  async (t) => {
    const m = await Model.load(join(modelFixtures, 'gemma2-tiny'), {
      lora: { rank: 2, alpha: 4, modules: ['q_proj', 'o_proj', 'down_proj'] },
    });
    // B = 0 at the start (PEFT): give the adapters weights so that A's gradient is not zero
    for (const p of m.parameters().filter((p) => p.name.includes('lora_B')))
      await m.setParameter(
        p.name,
        Float32Array.from({ length: p.size }, (_, i) => 0.3 * Math.sin(i + 1)),
      );
    const e = await fixtureTensors('gemma2-tiny');
    const input = {
      tokens: Int32Array.from(e.get('tokens')!),
      targets: Int32Array.from(e.get('targets')!),
      batch: 2,
      seqLen: 12,
      lengths: Int32Array.from(e.get('lengths')!),
    };
    const w = e.get('w_lp')!;
    const loss = async () => {
      const out = await m.forward({ ...input });
      let s = 0;
      for (let i = 0; i < w.length; i++) s += w[i] * out.logprobs[i];
      return s;
    };
    const adapters = m
      .parameters()
      .filter((p) => /layers\.[01]\.(self_attn\.o_proj|mlp\.down_proj)\.lora_[AB]/.test(p.name));
    t.equal(adapters.length, 8);
    for (const p of adapters) {
      await m.zeroGrad();
      await m.forward(input);
      await m.backward({ dLogprobs: w });
      t.same(
        await parameterGradientMismatches(m, p, await m.getGradient(p.name), loss),
        [],
        `finite differences: ${p.name}`,
      );
    }
    m.dispose();
  },
);

t.test('a Gemma model created from scratch starts with (1 + w) = 1 norms and trains', async (t) => {
  const m = await Model.create(config('gemma3-tiny'), { seed: 3 });
  t.ok(
    (await m.getParameter('model.layers.0.input_layernorm.weight')).every((x) => x === 0),
    'w = 0 (HF init)',
  );
  t.ok((await m.getParameter('model.layers.0.self_attn.q_norm.weight')).every((x) => x === 0));
  m.dispose();
});
