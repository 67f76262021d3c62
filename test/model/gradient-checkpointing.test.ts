// Gradient (activation) checkpointing (model.gradientCheckpointing): forward outputs and every
// gradient bit-identical to the ordinary path — padded rows, packed segments, accumulation over two
// backward calls, a scalar head, tensor parallelism — while the saved activations shrink from the
// documented per-token-per-layer set to the layer input alone.
import t from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { bitwiseEqual } from '../helpers/tolerance.js';
import { Rng } from '../helpers/random.js';

setThreads(1);
const B = 3,
  T = 12,
  N = B * T;
const rng = new Rng(11);
const tokens = Int32Array.from({ length: N }, () => rng.int(0, 96));
const targets = Int32Array.from({ length: N }, (_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
const lengths = Int32Array.from([12, 7, 10]);
// row 2 packs two documents: positions restart and segments separate them
const positions = Int32Array.from({ length: N }, (_, i) => (i < 2 * T ? i % T : (i - 2 * T) % 6));
const segments = Int32Array.from({ length: N }, (_, i) => (i < 2 * T ? 0 : Math.floor((i - 2 * T) / 6)));
const dLogprobs = Float32Array.from({ length: N }, () => rng.normal());
const dEntropy = Float32Array.from({ length: N }, () => rng.normal() * 0.3);
const dValues = Float32Array.from({ length: N }, () => rng.normal());

/** Two forward/backward passes (gradients accumulate); outputs of the first, gradients after each. */
async function run(m: Model) {
  const lm = m.config.lmHead,
    value = m.config.valueHead;
  const pass = async () => {
    const f = await m.forward({
      tokens,
      targets: lm ? targets : undefined,
      lengths,
      positions,
      segments,
      batch: B,
      seqLen: T,
      entropy: lm,
      values: value,
    });
    const bytes = m.activationBytes;
    await m.backward({
      dLogprobs: lm ? dLogprobs : undefined,
      dEntropy: lm ? dEntropy : undefined,
      dValues: value ? dValues : undefined,
    });
    const grads = new Map<string, Float32Array>();
    for (const p of m.parameters()) grads.set(p.name, await m.getGradient(p.name));
    return { f, bytes, grads };
  };
  const first = await pass();
  const second = await pass();
  return { first, second };
}

const configs = [
  ['llama', tinyConfig({ vocab: 97, hidden: 48, layers: 3, heads: 4, kvHeads: 2, ffn: 80, maxPositions: 64 })],
  [
    'glm reward model',
    tinyConfig({
      family: 'glm',
      vocab: 97,
      hidden: 48,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      ffn: 64,
      maxPositions: 64,
      valueHead: true,
    }),
  ],
] as const;

for (const [label, config] of configs) {
  for (const tp of [1, 2]) {
    t.test(`${label}, TP ${tp}: checkpointed forward/backward is bit-identical and saves less`, async (t) => {
      const plain = await Model.create(config, { seed: 4, initStd: 0.3, tensorParallel: tp });
      const ckpt = await Model.create(config, { seed: 4, initStd: 0.3, tensorParallel: tp });
      ckpt.gradientCheckpointing = true;
      t.equal(ckpt.gradientCheckpointing, true);
      const a = await run(plain),
        b = await run(ckpt);
      for (const k of ['logprobs', 'entropy', 'values'] as const)
        if (a.first.f[k]) t.ok(bitwiseEqual(b.first.f[k]!, a.first.f[k]!), `${k} bitwise`);
      for (const step of ['first', 'second'] as const) {
        const bad = [...a[step].grads]
          .filter(([name, g]) => !bitwiseEqual(b[step].grads.get(name)!, g))
          .map(([name]) => name);
        t.same(bad, [], `every gradient bitwise after the ${step} backward`);
      }
      const c = ckpt.config,
        perLayer = 2 * c.hidden + 2 + (c.heads + 2 * c.kvHeads) * c.headDim + c.heads + c.heads * c.headDim + 2 * c.ffn;
      // plain keeps perLayer floats per token per layer; checkpointed the layer input (hidden
      // floats) plus one layer's activations and a residual buffer of scratch (the LM-head state is the same)
      if (tp === 1)
        t.equal(
          a.first.bytes - b.first.bytes,
          4 * N * (c.layers * (perLayer - c.hidden) - (perLayer + c.hidden)),
          'the saving is as documented',
        );
      t.ok(b.first.bytes < a.first.bytes, `saved + scratch: ${b.first.bytes} < ${a.first.bytes} bytes`);
      const clone = await ckpt.clone();
      t.equal(clone.gradientCheckpointing, true, 'clones inherit it');
      ckpt.gradientCheckpointing = false;
      const again = await run(ckpt);
      t.equal(again.first.bytes, a.first.bytes, 'switched off: the full set is saved again');
      for (const m of [plain, ckpt, clone]) m.dispose();
    });
  }
}

t.test('gradientCheckpointing must be a boolean', async (t) => {
  const m = await Model.create(configs[0][1], { seed: 1 });
  t.throws(() => {
    m.gradientCheckpointing = 1 as never;
  }, /Model\.gradientCheckpointing: expected value to be a boolean/);
  m.dispose();
});
