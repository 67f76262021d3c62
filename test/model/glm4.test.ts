// GLM-4-0414 (Glm4ForCausalLM, model_type glm4) against test/fixtures/models/glm4-tiny (float64
// PyTorch reference of transformers' modular_glm4.py): GLM-4's partial interleaved RoPE, q/k/v
// biases and fused gate_up_proj, plus the extra norms on the attention output
// (post_self_attn_layernorm) and on the MLP output (post_mlp_layernorm). Log-probs, entropy, every
// gradient, finite differences through the new norms, greedy (KV cache), TP 2, save -> load; the
// norms act; config parsing.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Model } from '../../lib/engine/model.js';
import { configFromHF, configToHF } from '../../lib/engine/config.js';
import { parameterCount } from '../../lib/engine/memory.js';
import { checkFamilyFixture, fixtureTensors, modelFixtures } from '../helpers/family-fixture.js';

const hf = JSON.parse(readFileSync(join(modelFixtures, 'glm4-tiny', 'config.json'), 'utf8'));

t.test('glm4-tiny against the float64 reference (TP 1 and 2)', async (t) => {
  await checkFamilyFixture(t, 'glm4-tiny', {
    finiteDifferences:
      /^model\.layers\.[01]\.(post_self_attn_layernorm|post_mlp_layernorm|post_attention_layernorm)\.weight$/,
    savedNames: [
      /^model\.layers\.0\.post_self_attn_layernorm\.weight$/,
      /^model\.layers\.1\.post_mlp_layernorm\.weight$/,
      /^model\.layers\.0\.mlp\.gate_up_proj\.weight$/,
    ],
    modelType: 'glm4',
  });
});

t.test('GLM-4-0414: config, layout, and the extra norms act', async (t) => {
  const c = configFromHF(hf);
  t.same(
    [c.family, c.sandwichNorms, c.ropeInterleaved, c.fusedGateUp, c.qkvBias, c.oBias, c.rotaryDim],
    ['glm4', 2, true, true, true, false, 8],
  );
  t.equal(
    configFromHF({ ...hf, architectures: ['GlmForCausalLM'] }).sandwichNorms,
    0,
    'GlmForCausalLM: no extra norms',
  );
  t.same({ ...configFromHF(configToHF(c)), hf: {} }, { ...c, hf: {} }, 'configToHF round trip');
  t.equal(configToHF(c).model_type, 'glm4');
  const m = await Model.load(join(modelFixtures, 'glm4-tiny'));
  t.equal(
    m.parameters().reduce((s, p) => s + p.size, 0),
    parameterCount(m.config),
    'parameterCount',
  );
  const e = await fixtureTensors('glm4-tiny');
  const input = {
    tokens: Int32Array.from(e.get('tokens')!),
    targets: Int32Array.from(e.get('targets')!),
    batch: 2,
    seqLen: 12,
    lengths: Int32Array.from(e.get('lengths')!),
  };
  const before = await m.forward(input);
  await m.setParameter('model.layers.1.post_mlp_layernorm.weight', new Float32Array(64).fill(3));
  const after = await m.forward(input);
  let d = 0;
  for (let i = 0; i < before.logprobs.length; i++) d = Math.max(d, Math.abs(before.logprobs[i] - after.logprobs[i]));
  t.ok(d > 1e-3, `post_mlp_layernorm changes the log-probs (max |Δ| ${d.toExponential(1)})`);
  m.dispose();
  const rm = configFromHF({ ...hf, architectures: ['Glm4ForSequenceClassification'], num_labels: 1 });
  t.same([rm.valueHead, rm.sandwichNorms], [true, 2]);
});
