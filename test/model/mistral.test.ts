// Mistral (MistralForCausalLM): sliding-window attention on every layer, against
// test/fixtures/models/mistral-tiny (float64 PyTorch reference of transformers' Mistral with
// masking_utils' sliding window: query i sees keys j with i − 5 < j <= i) — the window (5) is
// shorter than the sequences (12) and than prompt + generation (5 + 8, 6 + 10), so training
// forward, backward and the KV-cached generate path all cross it; config parsing and its errors.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode } from '../../lib/errors.js';
import { Model } from '../../lib/engine/model.js';
import { configFromHF, configToHF } from '../../lib/engine/config.js';
import { checkFamilyFixture, fixtureTensors, modelFixtures } from '../helpers/family-fixture.js';

const hf = JSON.parse(readFileSync(join(modelFixtures, 'mistral-tiny', 'config.json'), 'utf8'));

t.test('mistral-tiny against the float64 reference (TP 1 and 2)', async (t) => {
  await checkFamilyFixture(t, 'mistral-tiny', {
    finiteDifferences: /^model\.layers\.0\.self_attn\.(q|k|v)_proj\.weight$/,
    savedNames: [/^model\.layers\.1\.self_attn\.q_proj\.weight$/, /^lm_head\.weight$/],
    modelType: 'mistral',
  });
});

t.test('the window is applied: without it the same weights give other log-probs', async (t) => {
  const m = await Model.load(join(modelFixtures, 'mistral-tiny'));
  t.equal(m.config.slidingWindow, 5);
  const plain = await Model.create({ ...hf, sliding_window: null });
  t.equal(plain.config.slidingWindow, 0);
  for (const p of m.parameters()) await plain.setParameter(p.name, await m.getParameter(p.name));
  const e = await fixtureTensors('mistral-tiny');
  const input = {
    tokens: Int32Array.from(e.get('tokens')!),
    targets: Int32Array.from(e.get('targets')!),
    batch: 2,
    seqLen: 12,
    lengths: Int32Array.from(e.get('lengths')!),
  };
  const a = await m.forward(input);
  const b = await plain.forward(input);
  // positions 0..4 see at most 5 keys either way: identical; later positions differ
  let early = 0,
    late = 0;
  for (let i = 0; i < 24; i++) {
    const d = Math.abs(a.logprobs[i] - b.logprobs[i]);
    if (i % 12 < 5) early = Math.max(early, d);
    else late = Math.max(late, d);
  }
  t.equal(early, 0, 'positions inside the window: identical');
  t.ok(late > 1e-3, `positions past the window differ (max |Δ| ${late.toExponential(1)})`);
  m.dispose();
  plain.dispose();
});

t.test('Mistral config: defaults, round trip, errors naming the key', async (t) => {
  const c = configFromHF(hf);
  t.same([c.family, c.slidingWindow, c.qkvBias, c.oBias, c.qkNorm], ['mistral', 5, false, false, false]);
  const back = configToHF(c);
  t.equal(back.sliding_window, 5);
  t.equal(back.model_type, 'mistral');
  t.equal(configFromHF(back).slidingWindow, 5, 'round trip');
  const absent = { ...hf };
  delete absent.sliding_window;
  t.equal(configFromHF(absent).slidingWindow, 4096, "sliding_window absent: MistralConfig's default 4096");
  t.equal(configFromHF({ ...hf, sliding_window: null }).slidingWindow, 0, 'null: full attention');
  t.equal(configToHF(configFromHF({ ...hf, sliding_window: null })).sliding_window, null);
  t.same(
    [configFromHF({ ...hf, attention_bias: true }).qkvBias, configFromHF({ ...hf, attention_bias: true }).oBias],
    [false, false],
    'attention_bias is not read by Mistral (its projections have no bias)',
  );
  const rm = configFromHF({ ...hf, architectures: ['MistralForSequenceClassification'], num_labels: 1 });
  t.same([rm.valueHead, rm.slidingWindow], [true, 5]);
  t.throws(() => configFromHF({ ...hf, sliding_window: 0 }, 'm.json'), {
    code: ErrorCode.FORMAT,
    message: /^m\.json: "sliding_window" must be an integer >= 1, got 0$/,
  });
  t.throws(() => configFromHF({ ...hf, sliding_window: 'x' }, 'm.json'), {
    code: ErrorCode.FORMAT,
    message: /"sliding_window" must be an integer >= 1, got "x"/,
  });
  t.throws(() => configFromHF({ ...hf, layer_types: ['sliding_attention', 'full_attention'] }, 'm.json'), {
    code: ErrorCode.UNSUPPORTED,
    message: /^m\.json: layer_types .* changes the model's math and is not implemented for MistralForCausalLM$/,
  });
});
