// RoPE scaling (lib/engine/rope.ts + the native table): frequencies against transformers' formulas
// re-implemented in PyTorch (test/fixtures/models/rope_frequencies.json from make_model_fixtures.py),
// config parsing in both forms (rope_theta + rope_scaling, rope_parameters) and its errors, and two
// model fixtures against the float64 PyTorch reference: a Llama 3.2-style model (llama3 scaling,
// tied embeddings) and a Qwen2 model with YaRN in the rope_parameters form — log-probs, entropy,
// every gradient, finite differences, greedy generation (KV cache) and tensor parallelism 2.
// Dynamic NTK is the identity within the trained length and refused beyond it.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode } from '../../lib/errors.js';
import { Model } from '../../lib/engine/model.js';
import { configFromHF, configToHF, tinyConfig } from '../../lib/engine/config.js';
import { parseRope, ropeFrequencies } from '../../lib/engine/rope.js';
import { readSafetensorsHeader, readTensorF32 } from '../../lib/io/safetensors.js';
import { packageRoot } from '../../lib/native.js';
import { assertClose } from '../helpers/tolerance.js';
import { parameterGradientMismatches } from '../helpers/gradcheck.js';

const fixtures = join(packageRoot, 'test', 'fixtures', 'models');

t.test('frequencies equal the PyTorch re-implementation of transformers for each rope_type', async (t) => {
  const cases = JSON.parse(readFileSync(join(fixtures, 'rope_frequencies.json'), 'utf8')) as {
    name: string;
    config: Record<string, unknown>;
    rotary_dim: number;
    inv_freq: number[];
    attention_factor: number;
  }[];
  t.ok(cases.length >= 6);
  for (const c of cases) {
    const { theta, rope } = parseRope(c.name, c.config, 10000);
    const f = ropeFrequencies(c.rotary_dim, theta, rope, c.config.max_position_embeddings as number);
    // default and dynamic: the native table computes the default frequencies from theta
    const inv =
      f.invFreq ?? Float32Array.from({ length: c.rotary_dim / 2 }, (_, i) => 1 / theta ** ((2 * i) / c.rotary_dim));
    assertClose(t, inv, Float32Array.from(c.inv_freq), { atol: 0, rtol: 2e-6 }, `${c.name}: inv_freq`);
    t.ok(
      Math.abs(f.attentionScaling - c.attention_factor) < 1e-12,
      `${c.name}: attention factor ${f.attentionScaling} vs ${c.attention_factor}`,
    );
    t.equal(f.positionLimit, rope.type === 'dynamic' ? 4096 : 0, `${c.name}: position limit`);
  }
  const llama = cases.find((c) => c.name === 'llama3.1-8b')!;
  const unscaled = Float32Array.from({ length: 64 }, (_, i) => 1 / 500000 ** ((2 * i) / 128));
  t.ok(
    llama.inv_freq[0] === unscaled[0] && llama.inv_freq[63] < unscaled[63] / 7.9,
    'llama3 keeps high frequencies and divides low ones by the factor',
  );
});

t.test('config forms, round trip and errors naming the key', async (t) => {
  const base = tinyConfig({ vocab: 50, hidden: 32, layers: 1, heads: 2, ffn: 64 });
  const scaling = {
    rope_type: 'llama3',
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 8192,
  };
  const hub = configFromHF({ ...base, rope_theta: 500000, rope_scaling: scaling, tie_word_embeddings: true });
  const v5 = configFromHF({ ...base, rope_parameters: { ...scaling, rope_theta: 500000 }, tie_word_embeddings: true });
  t.same(hub.rope, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
  t.same(v5.rope, hub.rope, 'rope_parameters reads the same');
  t.equal(v5.ropeTheta, 500000, 'rope_theta inside rope_parameters');
  t.ok(hub.tieEmbeddings);
  t.same(configFromHF(configToHF(hub)).rope, hub.rope, 'configToHF writes rope_scaling back');
  t.same(configFromHF(configToHF(v5)).rope, v5.rope, 'and keeps rope_parameters');
  t.same(
    configFromHF({ ...base, rope_scaling: { type: 'linear', factor: 2 } }).rope,
    { type: 'linear', factor: 2 },
    'the legacy "type" key',
  );
  t.same(configFromHF({ ...base, rope_scaling: null }).rope, { type: 'default', factor: 1 });
  t.equal(
    configFromHF({
      ...base,
      architectures: ['GlmForCausalLM'],
      rope_parameters: { rope_type: 'default', rope_theta: 10000, partial_rotary_factor: 0.25 },
    }).rotaryDim,
    4,
    'partial_rotary_factor inside rope_parameters',
  );
  const err = (cfg: Record<string, unknown>, message: RegExp, code: string = ErrorCode.UNSUPPORTED) =>
    t.throws(() => configFromHF({ ...base, ...cfg }, 'cfg.json'), { name: 'RlhfError', code, message });
  err(
    { rope_scaling: { rope_type: 'longrope', short_factor: [1], long_factor: [1] } },
    /^cfg\.json: rope_scaling\.rope_type "longrope" is not supported \(supported: default, linear, dynamic, llama3, yarn\)$/,
  );
  err(
    { rope_scaling: { ...scaling, mscale: 1 } },
    /^cfg\.json: rope_scaling\.mscale is not supported with rope_type "llama3" \(it would change the model's math\)$/,
  );
  err(
    { rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 1e4, beta: 3 } },
    /^cfg\.json: rope_parameters\.beta is not supported with rope_type "linear"/,
  );
  err(
    { rope_scaling: { rope_type: 'llama3', factor: 8 } },
    /^cfg\.json: rope_scaling\.low_freq_factor is required with rope_type "llama3"$/,
    ErrorCode.FORMAT,
  );
  err(
    { rope_scaling: { rope_type: 'linear', factor: 0.5 } },
    /rope_scaling\.factor must be >= 1, got 0\.5/,
    ErrorCode.FORMAT,
  );
  err(
    { rope_scaling: { rope_type: 'yarn', factor: 4, truncate: 'no' } },
    /rope_scaling\.truncate must be a boolean/,
    ErrorCode.FORMAT,
  );
  err(
    {
      rope_parameters: {
        full_attention: { rope_type: 'default', rope_theta: 1e6 },
        sliding_attention: { rope_type: 'default', rope_theta: 1e4 },
      },
    },
    /rope_parameters per layer type \(full_attention, sliding_attention\) is not supported/,
  );
  err(
    { rope_scaling: { rope_type: 'linear', factor: 2 }, rope_parameters: { rope_type: 'linear', factor: 3 } },
    /rope_scaling .* disagrees with rope_parameters/,
    ErrorCode.FORMAT,
  );
  err({ rope_scaling: 'linear' }, /expected rope_scaling to be an object or null/, ErrorCode.FORMAT);
  // keys of other architectures that would change the math are refused, by name; neutral values pass
  err(
    { final_logit_softcapping: 30 },
    /^cfg\.json: final_logit_softcapping 30 changes the model's math and is not implemented for LlamaForCausalLM$/,
  );
  err(
    { layer_types: ['sliding_attention', 'full_attention'] },
    /^cfg\.json: layer_types \["sliding_attention","full_attention"\] changes the model's math/,
  );
  err({ pretraining_tp: 2 }, /^cfg\.json: pretraining_tp 2 changes/);
  t.ok(
    configFromHF({ ...base, pretraining_tp: 1, final_logit_softcapping: null, layer_types: ['full_attention'] }),
    'neutral values load',
  );
});

async function expected(dir: string, file = 'expected.safetensors'): Promise<Map<string, Float32Array>> {
  const h = await readSafetensorsHeader(join(fixtures, dir, file));
  const out = new Map<string, Float32Array>();
  for (const [name, info] of h.tensors) {
    if (info.dtype === 'I32') {
      const raw = readFileSync(h.path).subarray(info.byteOffset, info.byteOffset + info.byteLength);
      out.set(
        name,
        Float32Array.from(new Int32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))),
      );
    } else out.set(name, await readTensorF32(h, name));
  }
  return out;
}

function tol(ref: Float32Array, rel = 1e-4) {
  let m = 0;
  for (const x of ref) m = Math.max(m, Math.abs(x));
  return { atol: rel * Math.max(m, 1e-6), rtol: 1e-4 };
}

for (const [name, type] of [
  ['llama3-rope-tiny', 'llama3'],
  ['qwen2-yarn-tiny', 'yarn'],
] as const) {
  t.test(
    `${name}: forward, every gradient, finite differences, greedy, TP 2 against the float64 reference`,
    async (t) => {
      const e = await expected(name);
      const B = 2,
        T = 12;
      const input = {
        tokens: Int32Array.from(e.get('tokens')!),
        targets: Int32Array.from(e.get('targets')!),
        batch: B,
        seqLen: T,
        lengths: Int32Array.from(e.get('lengths')!),
        entropy: true,
      };
      for (const tp of [1, 2]) {
        const m = await Model.load(join(fixtures, name), { tensorParallel: tp });
        t.equal(m.config.rope.type, type);
        const r = await m.forward(input);
        assertClose(t, r.logprobs, e.get('logprobs')!, tol(e.get('logprobs')!), `TP ${tp}: logprobs`);
        assertClose(t, r.entropy!, e.get('entropy')!, tol(e.get('entropy')!), `TP ${tp}: entropy`);
        await m.backward({ dLogprobs: e.get('w_lp')!, dEntropy: e.get('w_ent')! });
        let checked = 0;
        for (const p of m.parameters())
          if (
            assertClose(
              t,
              await m.getGradient(p.name),
              e.get(`grad.${p.name}`)!,
              tol(e.get(`grad.${p.name}`)!, 2e-4),
              `TP ${tp}: grad ${p.name}`,
            )
          )
            checked++;
        t.equal(checked, m.parameters().length, 'every gradient');
        const g = await expected(name, 'expected_greedy.safetensors');
        const [seq] = await m.generate({
          prompts: [Int32Array.from(g.get('prompt')!)],
          maxNewTokens: 8,
          temperature: 0,
          stopTokens: [],
        });
        t.same(
          Array.from(seq.tokens),
          Array.from(g.get('tokens')!),
          `TP ${tp}: greedy continuation (KV cache) equals the reference`,
        );
        if (tp === 1) {
          if (name === 'llama3-rope-tiny')
            t.notOk(
              m.parameters().some((p) => p.name === 'lm_head.weight'),
              'tied embeddings: no lm_head',
            );
          // finite differences through the scaled rotation (q/k projections feed RoPE)
          const w = new Float32Array(B * T).fill(0);
          for (let i = 0; i < B * T; i++) if (input.targets[i] >= 0) w[i] = ((i * 7) % 5) - 2;
          const loss = async () => {
            const out = await m.forward({ ...input, entropy: false });
            let s = 0;
            for (let i = 0; i < w.length; i++) s += w[i] * out.logprobs[i];
            return s;
          };
          for (const p of m.parameters().filter((p) => /layers\.0\.self_attn\.(q|k)_proj\.weight$/.test(p.name))) {
            await m.zeroGrad();
            await m.forward({ ...input, entropy: false });
            await m.backward({ dLogprobs: w });
            t.same(
              await parameterGradientMismatches(m, p, await m.getGradient(p.name), loss),
              [],
              `finite differences: ${p.name}`,
            );
          }
          // the scaling is not ignored: the same weights without it give other log-probs
          const hf = JSON.parse(readFileSync(join(fixtures, name, 'config.json'), 'utf8'));
          delete hf.rope_scaling;
          if (hf.rope_parameters)
            hf.rope_parameters = { rope_type: 'default', rope_theta: hf.rope_parameters.rope_theta };
          const plain = await Model.create(hf);
          for (const p of m.parameters()) await plain.setParameter(p.name, await m.getParameter(p.name));
          const pr = await plain.forward(input);
          let diff = 0;
          for (let i = 0; i < pr.logprobs.length; i++) diff = Math.max(diff, Math.abs(pr.logprobs[i] - r.logprobs[i]));
          t.ok(diff > 1e-3, `unscaled RoPE differs (max |Δ logprob| ${diff.toExponential(1)})`);
          plain.dispose();
        }
        m.dispose();
      }
    },
  );
}

t.test('dynamic NTK: the default rotation within the trained length, an error past it', async (t) => {
  const base = tinyConfig({ vocab: 40, hidden: 32, layers: 1, heads: 2, ffn: 48, maxPositions: 64 });
  const plain = await Model.create(base, { seed: 4, initStd: 0.3 });
  const dyn = await Model.create(
    { ...base, rope_scaling: { rope_type: 'dynamic', factor: 2.0, original_max_position_embeddings: 8 } },
    { seed: 4, initStd: 0.3 },
  );
  const tokens = Int32Array.from({ length: 8 }, (_, i) => (i * 7) % 40);
  const targets = Int32Array.from({ length: 8 }, (_, i) => (i * 3 + 1) % 40);
  const a = await plain.forward({ tokens, targets, batch: 1, seqLen: 8 });
  const b = await dyn.forward({ tokens, targets, batch: 1, seqLen: 8 });
  t.same(Array.from(b.logprobs), Array.from(a.logprobs), 'identical within original_max_position_embeddings');
  const long = Int32Array.from({ length: 9 }, (_, i) => i % 40);
  await t.rejects(dyn.forward({ tokens: long, targets: long, batch: 1, seqLen: 9 }), {
    code: ErrorCode.UNSUPPORTED,
    message: /rope: position 8 is past max_position_embeddings \(8\) of a model with dynamic NTK rope scaling/,
  });
  t.ok(
    (await plain.forward({ tokens: long, targets: long, batch: 1, seqLen: 9 })).logprobs.length === 9,
    'the unscaled model has no such limit',
  );
  plain.dispose();
  dyn.dispose();
});
