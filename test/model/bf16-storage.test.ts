// bf16-only storage (native/model/weight_store.cc): with dtype 'bf16' the frozen matrices — a LoRA
// base, or every matrix of a model made with trainable: false — have no f32 copy. Checked against
// the mixed-precision bf16 model loaded from the same BF16 checkpoint (its masters are the same
// bf16 numbers, so its bf16 copy is too): logits and generate bit for bit; the checkpoint's bits
// load and save as they are; LoRA on the bf16-only base trains, resumes exactly and leaves the
// base's bits alone; the bytes the engine allocates (nativeMemoryInUse, a native counter) are
// estimateTrainingMemory's; what needs an f32 master or gradients is refused, naming it.
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromHF, tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { AdamW } from '../../lib/engine/adamw.js';
import { nativeMemoryInUse } from '../../lib/engine/device.js';
import { estimateTrainingMemory, matrixParameterCount, parameterCount } from '../../lib/engine/memory.js';
import { bf16ToF32, f32ToBf16, readCheckpointIndex, readTensorBf16 } from '../../lib/io/safetensors.js';
import { bitwiseEqual } from '../helpers/tolerance.js';
import { Rng } from '../helpers/random.js';
import { nextTokenBatch, sftSteps } from '../helpers/sft-steps.js';

const VOCAB = 61;
const cfg = tinyConfig({ vocab: VOCAB, hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 96, maxPositions: 128 });
const LORA = { rank: 4, alpha: 8, modules: 'all-linear' as const };
const P = parameterCount(configFromHF(cfg, 'cfg')),
  M = matrixParameterCount(configFromHF(cfg, 'cfg'));

function sameBits(a: Uint16Array, b: Uint16Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const batchOf = (rng: Rng, B: number, T: number) => nextTokenBatch(rng, VOCAB, B, T);

const root = await mkdtemp(join(tmpdir(), 'rlhf-bf16-storage-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
// a BF16 checkpoint: random f32 weights rounded to bf16 by save
const ckpt = join(root, 'bf16-ckpt');
{
  const m = await Model.create(cfg, { seed: 21, initStd: 0.2 });
  await m.save(ckpt, { dtype: 'BF16' });
  m.dispose();
}

async function bitsOf(dir: string): Promise<Map<string, Uint16Array>> {
  const index = await readCheckpointIndex(dir);
  const out = new Map<string, Uint16Array>();
  for (const [name, entry] of index) out.set(name, await readTensorBf16(entry.header, name));
  return out;
}

t.test('frozen bf16-only model = mixed-precision bf16 model, bit for bit', async (t) => {
  const mixed = await Model.load(ckpt, { dtype: 'bf16' });
  const frozen = await Model.load(ckpt, { dtype: 'bf16', trainable: false });
  t.equal(frozen.trainable, false);
  t.equal(frozen.numTrainableParameters, 0);
  const s = frozen.storageBytes;
  t.same(s, { parameters: 4 * (P - M), weightCopy: 2 * P, gradients: 0 }, 'storage');
  t.equal(mixed.storageBytes.parameters, 4 * P, 'the mixed model keeps every f32 master');
  const batch = batchOf(new Rng(3), 3, 20);
  const a = await mixed.forward({ ...batch, saveForBackward: false, logits: true });
  const b = await frozen.forward({ ...batch, logits: true }); // saveForBackward defaults to false when frozen
  t.ok(bitwiseEqual(a.logits!, b.logits!), 'logits');
  t.ok(bitwiseEqual(a.logprobs, b.logprobs), 'log-probs');
  const prompts = [[1, 2, 3], [9], [4, 5, 6, 7]];
  for (const staticBatch of [false, true]) {
    const ga = await mixed.generate({ prompts, maxNewTokens: 8, seed: 5, staticBatch });
    const gb = await frozen.generate({ prompts, maxNewTokens: 8, seed: 5, staticBatch });
    t.ok(
      ga.every((r, i) => r.tokens.join() === gb[i].tokens.join() && bitwiseEqual(r.logprobs, gb[i].logprobs)),
      `generate (${staticBatch ? 'static batch' : 'session'}): tokens and log-probs`,
    );
  }
  // what the file holds is what the model holds: widened exactly, and as bits
  const file = await bitsOf(ckpt);
  for (const name of ['model.embed_tokens.weight', 'model.layers.1.self_attn.o_proj.weight', 'lm_head.weight']) {
    t.ok(sameBits(await frozen.getParameterBf16(name), file.get(name)!), `${name}: the file's bits`);
    t.ok(bitwiseEqual(await frozen.getParameter(name), bf16ToF32(file.get(name)!)), `${name}: widened`);
  }
  t.throws(() => frozen.backward({ dLogprobs: new Float32Array(60) }), /trainable: false/, 'backward refused');
  t.throws(() => new AdamW(frozen, { lr: 1e-3 }), /trainable: false/, 'AdamW refused');
  mixed.dispose();
  frozen.dispose();
});

t.test(
  'random init: a bf16-only matrix is the f32 init rounded to nearest even; the rest is the f32 init',
  async (t) => {
    const f32 = await Model.create(cfg, { seed: 8, initStd: 0.3 });
    const frozen = await Model.create(cfg, { seed: 8, initStd: 0.3, dtype: 'bf16', trainable: false });
    let rounded = 0,
      kept = 0;
    for (const p of f32.parameters()) {
      const want = await f32.getParameter(p.name);
      if (p.shape.length === 2) rounded += sameBits(await frozen.getParameterBf16(p.name), f32ToBf16(want)) ? 1 : 0;
      else kept += bitwiseEqual(await frozen.getParameter(p.name), want) ? 1 : 0;
    }
    const matrices = f32.parameters().filter((p) => p.shape.length === 2).length;
    t.equal(rounded, matrices, `${matrices} matrices rounded`);
    t.equal(kept, f32.parameters().length - matrices, 'norms kept in f32');
    f32.dispose();
    frozen.dispose();
  },
);

t.test('save as BF16 is bitwise; setParameter rounds to nearest even', async (t) => {
  const frozen = await Model.load(ckpt, { dtype: 'bf16', trainable: false });
  const out = join(root, 'resaved');
  await frozen.save(out, { dtype: 'BF16' });
  const a = await bitsOf(ckpt),
    b = await bitsOf(out);
  t.same([...b.keys()].sort(), [...a.keys()].sort(), 'same tensors');
  t.ok(
    [...a].every(([n, bits]) => sameBits(bits, b.get(n)!)),
    'every tensor bitwise equal',
  );
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even (1); 1 + 3·2^-8 → 1 + 2^-6
  const name = 'model.layers.0.mlp.up_proj.weight';
  const p = frozen.parameters().find((q) => q.name === name)!;
  const data = new Float32Array(p.size).fill(1 + 2 ** -8);
  data[1] = 1 + 3 * 2 ** -8;
  data[2] = -2.5;
  await frozen.setParameter(name, data);
  const back = await frozen.getParameter(name);
  t.same([back[0], back[1], back[2]], [1, 1 + 2 ** -6, -2.5], 'rounded to nearest even, exact values kept');
  frozen.dispose();
});

/** Steps from .. from + steps - 1 of next-token SFT, cycling through fixed batches; returns the losses. */
const train = (m: Model, opt: AdamW, steps: number, from: number) =>
  sftSteps(m, opt, (s) => batchOf(new Rng(200 + (s % 3)), 4, 16), steps, from);

t.test('LoRA on a bf16-only base: = mixed at B = 0; trains; resumes exactly; base bits unchanged', async (t) => {
  const mixed = await Model.load(ckpt, { dtype: 'bf16' });
  const m = await Model.load(ckpt, { dtype: 'bf16', lora: LORA, seed: 3 });
  t.equal(m.storageBytes.weightCopy, 2 * P, 'the base in bf16');
  t.equal(m.storageBytes.parameters, 4 * (P - M + m.numTrainableParameters), 'f32: the norms and the adapters only');
  const batch = batchOf(new Rng(4), 2, 24);
  const a = await mixed.forward({ ...batch, saveForBackward: false, logits: true });
  const b = await m.forward({ ...batch, saveForBackward: false, logits: true });
  t.ok(bitwiseEqual(a.logits!, b.logits!), 'logits equal the mixed model (the adapters add exact zeros: B = 0)');
  // withoutAdapters(): the bf16-only base alone, inference by default
  const view = m.withoutAdapters();
  const v = await view.forward({ ...batch, logits: true });
  t.ok(bitwiseEqual(v.logits!, a.logits!), 'withoutAdapters() = the mixed model');
  mixed.dispose();

  const base0 = await bitsOf(ckpt);
  const opt = new AdamW(m, { lr: 2e-2 });
  const losses = await train(m, opt, 10, 0);
  t.ok(losses.at(-1)! < 0.9 * losses[0], `loss ${losses[0].toFixed(4)} -> ${losses.at(-1)!.toFixed(4)}`);
  let unchanged = 0;
  for (const [name, bits] of base0) unchanged += sameBits(await m.getParameterBf16(name), bits) ? 1 : 0;
  t.equal(unchanged, base0.size, 'every base tensor keeps its bits');
  t.same(
    [...(await m.getGradient('model.layers.0.self_attn.q_proj.weight'))].filter((x) => x !== 0),
    [],
    'a frozen weight reads a zero gradient',
  );

  // resume: 4 straight vs 2 + save (base BF16, adapters F32) + load + 2
  const straight = await Model.load(ckpt, { dtype: 'bf16', lora: LORA, seed: 3 });
  const optS = new AdamW(straight, { lr: 2e-2 });
  const all = await train(straight, optS, 4, 0);
  const first = await Model.load(ckpt, { dtype: 'bf16', lora: LORA, seed: 3 });
  const optF = new AdamW(first, { lr: 2e-2 });
  await train(first, optF, 2, 0);
  const mid = join(root, 'lora-mid');
  await first.save(mid, { dtype: 'BF16' });
  const state = await optF.saveState();
  first.dispose();
  const resumed = await Model.load(mid, { dtype: 'bf16' });
  t.ok(resumed.lora, 'the adapter came back');
  const optR = new AdamW(resumed, { lr: 2e-2 });
  await optR.loadState(state);
  const tail = await train(resumed, optR, 2, 2);
  t.same(tail, all.slice(2), 'the resumed run logs the same losses');
  let same = 0;
  const params = straight.parameters();
  for (const p of params)
    same += bitwiseEqual(await straight.getParameter(p.name), await resumed.getParameter(p.name)) ? 1 : 0;
  t.equal(same, params.length, 'every parameter bitwise equal');
  for (const x of [m, straight, resumed]) x.dispose();
});

t.test('allocated bytes (nativeMemoryInUse) = the estimate, f32 and bf16, LoRA and frozen', async (t) => {
  const arms = [
    ['f32 LoRA (gradients for the adapters only)', { lora: LORA }],
    ['bf16 LoRA', { lora: LORA, dtype: 'bf16' }],
    ['bf16 frozen', { dtype: 'bf16', trainable: false }],
    ['f32 frozen', { trainable: false }],
  ] as const;
  for (const [label, opts] of arms) {
    const before = nativeMemoryInUse();
    const m = await Model.create(cfg, { seed: 1, ...opts });
    const held = nativeMemoryInUse() - before;
    const est = estimateTrainingMemory(cfg, {
      batch: 1,
      seqLen: 8,
      lora: m.lora,
      dtype: m.dtype,
      trainable: m.trainable,
      optimizer: false,
    });
    t.equal(held, est.parameters + est.weightCopy + est.gradients, `${label}: ${held} bytes`);
    const s = m.storageBytes;
    t.same(
      [s.parameters, s.weightCopy, s.gradients],
      [est.parameters, est.weightCopy, est.gradients],
      `${label}: parts`,
    );
    m.dispose();
  }
});

t.test('clone({trainable: false}): a frozen bf16-only copy with the same logits', async (t) => {
  const policy = await Model.load(ckpt, { dtype: 'bf16' });
  const ref = await policy.clone({ trainable: false });
  t.equal(ref.trainable, false);
  t.equal(ref.storageBytes.gradients, 0, 'no gradient storage');
  t.equal(ref.storageBytes.parameters, 4 * (P - M), 'no f32 matrices');
  const batch = batchOf(new Rng(6), 2, 12);
  const a = await policy.forward({ ...batch, saveForBackward: false, logits: true });
  const b = await ref.forward({ ...batch, logits: true });
  t.ok(bitwiseEqual(a.logits!, b.logits!), "logits bit for bit (the policy's masters are bf16 numbers here)");
  await t.rejects(async () => policy.clone({ trainable: 1 as unknown as boolean }), /trainable/);
  policy.dispose();
  ref.dispose();
});

t.test('refusals name what needs an f32 master or gradients', async (t) => {
  await t.rejects(
    Model.create(cfg, { dtype: 'bf16', trainable: false, tensorParallel: 2 }),
    /tensorParallel/,
    'tensor parallelism',
  );
  await t.rejects(Model.create(cfg, { trainable: false, tensorParallel: 2 }), /trainable: false/);
  await t.rejects(Model.create(cfg, { trainable: 'no' as unknown as boolean }), /trainable/);
  const m = await Model.create(cfg, { dtype: 'bf16', trainable: false });
  await t.rejects(async () => m.setParameterBf16('lm_head.weight', new Uint16Array(3)), /Uint16Array/, 'wrong length');
  await t.rejects(async () => m.setParameterBf16('lm_head.weight', new Float32Array(3) as never), /Uint16Array/);
  await t.rejects(async () => m.setParameter('nope', new Float32Array(1)), /nope/);
  m.dispose();
});
