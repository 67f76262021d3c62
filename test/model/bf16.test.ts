// dtype 'bf16' (mixed precision on the CPU): forward log-probs and logits within bf16 rounding of
// the f32 model's; generate's log-probs equal the bf16 model's own forward bit for bit; backward's
// gradients close to f32's; AdamW keeps f32 masters and a small SFT run's loss falls; checkpoint +
// resume is exact; LoRA on a bf16 base; clone keeps the dtype; bad dtype named.
import t from 'tap';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { AdamW } from '../../lib/engine/adamw.js';
import { nativeMemoryInUse, nativeWorkspaceBytes } from '../../lib/engine/device.js';
import { estimateTrainingMemory } from '../../lib/engine/memory.js';
import { bitwiseEqual } from '../helpers/tolerance.js';
import { Rng } from '../helpers/random.js';
import { nextTokenBatch, sftSteps } from '../helpers/sft-steps.js';

const VOCAB = 61;
const cfg = tinyConfig({ vocab: VOCAB, hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 96, maxPositions: 128 });

const batchOf = (rng: Rng, B: number, T: number) => nextTokenBatch(rng, VOCAB, B, T);

t.test('forward: bf16 within bf16 rounding of f32; not identical', async (t) => {
  const f32 = await Model.create(cfg, { seed: 5, initStd: 0.1 });
  const b16 = await Model.create(cfg, { seed: 5, initStd: 0.1, dtype: 'bf16' });
  t.equal(b16.dtype, 'bf16');
  t.equal(f32.dtype, 'f32');
  const batch = batchOf(new Rng(1), 3, 24);
  const a = await f32.forward({ ...batch, saveForBackward: false, logits: true });
  const b = await b16.forward({ ...batch, saveForBackward: false, logits: true });
  let worstLp = 0,
    worstZ = 0;
  for (let i = 0; i < a.logprobs.length; i++) worstLp = Math.max(worstLp, Math.abs(a.logprobs[i] - b.logprobs[i]));
  for (let i = 0; i < a.logits!.length; i++) worstZ = Math.max(worstZ, Math.abs(a.logits![i] - b.logits![i]));
  // weights and activations carry relative error <= 2^-9 per GEMM input; through 2 layers and the
  // head of this model (logits of magnitude ~1) that is ~1e-2: bound 5e-2 on logits and log-probs
  t.ok(worstZ < 5e-2, `logits: worst |bf16 - f32| = ${worstZ}`);
  t.ok(worstLp < 5e-2, `log-probs: worst |bf16 - f32| = ${worstLp}`);
  t.ok(worstZ > 0, 'bf16 differs from f32 (the bf16 GEMM ran)');
  // the parameters read back are the f32 masters, untouched by rounding
  t.ok(bitwiseEqual(await f32.getParameter('lm_head.weight'), await b16.getParameter('lm_head.weight')));
  f32.dispose();
  b16.dispose();
});

t.test("generate: log-probs equal the bf16 model's own forward bit for bit", async (t) => {
  const m = await Model.create(cfg, { seed: 3, initStd: 0.3, dtype: 'bf16' });
  const prompts = [[1, 2, 3, 4, 5], [7], [9, 10, 11]];
  const out = await m.generate({ prompts, maxNewTokens: 10, temperature: 1, seed: 11 });
  for (let r = 0; r < prompts.length; r++) {
    const seq = [...prompts[r], ...out[r].tokens];
    const T = seq.length;
    const targets = new Int32Array(T).fill(-1);
    for (let i = prompts[r].length - 1; i < T - 1; i++) targets[i] = seq[i + 1];
    const f = await m.forward({ tokens: Int32Array.from(seq), targets, batch: 1, seqLen: T, saveForBackward: false });
    t.ok(bitwiseEqual(f.logprobs.slice(prompts[r].length - 1, T - 1), out[r].logprobs), `row ${r}`);
  }
  m.dispose();
});

t.test('backward: gradients within bf16 rounding of f32', async (t) => {
  const f32 = await Model.create(cfg, { seed: 7, initStd: 0.3 });
  const b16 = await Model.create(cfg, { seed: 7, initStd: 0.3, dtype: 'bf16' });
  // each GEMM input carries relative rounding 2^-9; through two layers, attention's softmax
  // derivative and the head that gives ~4e-2 relative L2 at this init (bound 8e-2)
  const T = 16;
  const tokens = new Int32Array(2 * T).map((_, i) => (i * 7919) % VOCAB);
  const targets = new Int32Array(2 * T).map((_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
  const batch = { tokens, targets, batch: 2, seqLen: T };
  for (const m of [f32, b16]) {
    const f = await m.forward({ ...batch, saveForBackward: true });
    await m.backward({ dLogprobs: new Float32Array(f.logprobs.length).fill(-1 / f.logprobs.length) });
  }
  for (const name of [
    'model.layers.0.self_attn.q_proj.weight',
    'model.layers.0.self_attn.k_proj.weight',
    'model.layers.0.self_attn.v_proj.weight',
    'model.layers.1.mlp.down_proj.weight',
    'model.layers.0.mlp.gate_proj.weight',
    'model.embed_tokens.weight',
    'lm_head.weight',
  ]) {
    const ga = await f32.getGradient(name),
      gb = await b16.getGradient(name);
    let num = 0,
      den = 0;
    for (let i = 0; i < ga.length; i++) ((num += (ga[i] - gb[i]) ** 2), (den += ga[i] ** 2));
    const rel = Math.sqrt(num / den);
    t.ok(rel < 8e-2 && rel > 0, `${name}: relative L2 difference ${rel.toExponential(2)}`);
  }
  f32.dispose();
  b16.dispose();
});

/** Steps from .. from + steps - 1 of next-token SFT, cycling through fixed batches; returns the losses. */
const train = (m: Model, opt: AdamW, steps: number, from: number) =>
  sftSteps(m, opt, (s) => batchOf(new Rng(100 + (s % 4)), 4, 16), steps, from);

async function snapshot(m: Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const p of m.parameters()) out.set(p.name, await m.getParameter(p.name));
  return out;
}

t.test('training: loss falls; checkpoint + resume is exact', async (t) => {
  const straight = await Model.create(cfg, { seed: 9, initStd: 0.1, dtype: 'bf16' });
  const optA = new AdamW(straight, { lr: 1e-2 });
  const losses = await train(straight, optA, 12, 0);
  t.ok(losses.at(-1)! < 0.8 * losses[0], `loss ${losses[0].toFixed(3)} -> ${losses.at(-1)!.toFixed(3)}`);

  const first = await Model.create(cfg, { seed: 9, initStd: 0.1, dtype: 'bf16' });
  const optB = new AdamW(first, { lr: 1e-2 });
  await train(first, optB, 6, 0);
  const params = await snapshot(first),
    state = await optB.saveState();
  first.dispose();
  const resumed = await Model.create(cfg, { seed: 1234, dtype: 'bf16' }); // other weights, overwritten
  for (const [name, data] of params) await resumed.setParameter(name, data);
  const optC = new AdamW(resumed, { lr: 1e-2 });
  await optC.loadState(state);
  const tail = await train(resumed, optC, 6, 6);
  t.same(tail, losses.slice(6), 'the resumed run logs the same losses');
  const a = await snapshot(straight),
    b = await snapshot(resumed);
  let same = 0;
  for (const [name, data] of a) same += bitwiseEqual(data, b.get(name)!) ? 1 : 0;
  t.equal(same, a.size, 'every f32 master bitwise equal after 12 straight vs 6 + resume + 6');
  straight.dispose();
  resumed.dispose();
});

t.test('LoRA on a bf16 base: adapters train, the base stays bitwise; clone keeps dtype; bad dtype', async (t) => {
  const m = await Model.create(cfg, { seed: 4, initStd: 0.1, dtype: 'bf16', lora: { rank: 4, modules: 'all-linear' } });
  const base0 = await m.getParameter('model.layers.1.mlp.down_proj.weight');
  const opt = new AdamW(m, { lr: 1e-2 });
  const losses = await train(m, opt, 10, 0);
  t.ok(losses.at(-1)! < losses[0], `LoRA loss ${losses[0].toFixed(3)} -> ${losses.at(-1)!.toFixed(3)}`);
  t.ok(bitwiseEqual(base0, await m.getParameter('model.layers.1.mlp.down_proj.weight')), 'base frozen');
  const c = await m.clone();
  t.equal(c.dtype, 'bf16');
  c.dispose();
  m.dispose();
  await t.rejects(Model.create(cfg, { dtype: 'f16' as 'bf16' }), /dtype/);
});

t.test("memory: the bf16 copy is the estimator's weightCopy, allocated by the first forward", async (t) => {
  const est = estimateTrainingMemory(cfg, { batch: 1, seqLen: 8, dtype: 'bf16' });
  const f32est = estimateTrainingMemory(cfg, { batch: 1, seqLen: 8 });
  t.equal(f32est.weightCopy, 0);
  t.equal(est.weightCopy, est.parameters / 2, '2 bytes per parameter');
  t.equal(est.peak - f32est.peak, est.weightCopy);
  const m = await Model.create(cfg, { seed: 1, dtype: 'bf16' });
  const batch = { tokens: new Int32Array(8).fill(3), batch: 1, seqLen: 8, saveForBackward: false };
  const before = nativeMemoryInUse(),
    ws0 = nativeWorkspaceBytes();
  const f = await m.forward(batch);
  m.releaseActivations();
  const grown = nativeMemoryInUse() - before - (nativeWorkspaceBytes() - ws0) - f.logprobs.byteLength;
  t.equal(grown, est.weightCopy, 'bytes the first forward left allocated');
  m.dispose();
  t.throws(() => estimateTrainingMemory(cfg, { batch: 1, seqLen: 8, dtype: 'f16' as 'bf16' }), /options\.dtype/);
});
