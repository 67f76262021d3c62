// frozenReference (lib/train/reference.ts), the default reference of the preference and
// policy-gradient trainers: a LoRA policy's base view, otherwise a frozen clone. Its log-probs
// against a trainable clone's (the reference the trainers made before), bit for bit at f32 and at
// bf16 when the masters are bf16 numbers; with f32 masters at bf16 only the embedding lookup
// differs (the frozen clone reads the bf16 embedding), checked within a bf16 rounding bound. Its
// storage (native storageBytes counters) against estimateTrainingMemory's frozen account and the
// bytes it saves over the trainable clone; the preference trainer's default reference is it.
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromHF, tinyConfig } from '../../lib/engine/config.js';
import { setThreads } from '../../lib/engine/device.js';
import { estimateTrainingMemory, matrixParameterCount, parameterCount } from '../../lib/engine/memory.js';
import { Model, type WeightDType } from '../../lib/engine/model.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { PreferenceTrainer } from '../../lib/train/preference.js';
import { frozenReference } from '../../lib/train/reference.js';
import { bitwiseEqual } from '../helpers/tolerance.js';
import { Rng } from '../helpers/random.js';

setThreads(1);
const tok = new ByteTokenizer();
const VOCAB = 264;
const cfg = tinyConfig({
  vocab: VOCAB,
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  maxPositions: 128,
  eosTokenId: tok.eosId,
});
const P = parameterCount(configFromHF(cfg, 'cfg')),
  M = matrixParameterCount(configFromHF(cfg, 'cfg'));

function batchOf(seed: number, B: number, T: number) {
  const rng = new Rng(seed);
  const tokens = new Int32Array(B * T).map(() => rng.int(0, VOCAB - 1));
  const targets = new Int32Array(B * T).fill(-1);
  for (let b = 0; b < B; b++) for (let i = 0; i < T - 1; i++) targets[b * T + i] = tokens[b * T + i + 1];
  return { tokens, targets, batch: B, seqLen: T };
}

async function logprobs(m: Model, seed = 5): Promise<Float32Array> {
  return (await m.forward(batchOf(seed, 3, 17))).logprobs;
}

const root = await mkdtemp(join(tmpdir(), 'rlhf-reference-'));
t.teardown(() => rm(root, { recursive: true, force: true }));

for (const dtype of ['f32', 'bf16'] as WeightDType[])
  t.test(`${dtype}: frozen reference = trainable clone, bit for bit, without gradient storage`, async (t) => {
    // at bf16 the masters are bf16 numbers (loaded from a BF16 checkpoint), as a trained bf16 model's are not
    const dir = join(root, `ckpt-${dtype}`);
    const src = await Model.create(cfg, { seed: 3, initStd: 0.2 });
    await src.save(dir, { dtype: dtype === 'bf16' ? 'BF16' : 'F32' });
    src.dispose();
    const policy = await Model.load(dir, { dtype });
    const before = await frozenReference(policy);
    const old = await policy.clone();
    const ref = await frozenReference(policy);
    t.equal(ref.trainable, false);
    t.not(ref, policy);
    const lpOld = await logprobs(old),
      lpRef = await logprobs(ref);
    t.ok(bitwiseEqual(lpRef, lpOld), 'log-probs bitwise those of a trainable clone');
    t.ok(bitwiseEqual(lpRef, await logprobs(policy)), 'and of the policy itself');
    t.ok(bitwiseEqual(await logprobs(ref, 9), await logprobs(before, 9)), 'deterministic');
    // bytes: the native counters against the estimator's frozen account and the closed forms
    const s = ref.storageBytes,
      o = old.storageBytes;
    const est = estimateTrainingMemory(cfg, { batch: 1, seqLen: 1, dtype, trainable: false, optimizer: false });
    t.equal(s.gradients, 0);
    t.equal(s.parameters, est.parameters);
    t.equal(s.weightCopy, est.weightCopy);
    if (dtype === 'f32') {
      t.equal(s.parameters, 4 * P);
      t.equal(o.parameters + o.weightCopy + o.gradients - (s.parameters + s.weightCopy), 4 * P, 'saves the gradients');
    } else {
      t.equal(s.parameters, 4 * (P - M), 'f32: the vectors only');
      t.equal(s.weightCopy, 2 * P, 'the bf16 store spans the layout (its vector slots unused)');
      t.ok(o.gradients >= 4 * P && o.parameters >= 4 * P, 'the trainable clone holds f32 masters and gradients');
    }
    t.comment(
      `${dtype}: trainable clone ${o.parameters + o.weightCopy + o.gradients} B, frozen ${s.parameters + s.weightCopy} B`,
    );
    for (const m of [policy, before, old, ref]) m.dispose();
  });

t.test('bf16 with f32 masters: only the embedding lookup differs (bf16-rounded)', async (t) => {
  const policy = await Model.create(cfg, { seed: 4, dtype: 'bf16' });
  const old = await policy.clone();
  const ref = await frozenReference(policy);
  const a = await logprobs(old),
    b = await logprobs(ref);
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  t.ok(maxDiff > 0, 'the lookup reads different numbers (the test can see it)');
  // the embedding rows move by at most 2^-9 relative; through two layers of a model at its default
  // init (0.02 std) the log-probs (about -5.6) move by well under 1e-2 (seen: 1.8e-3)
  t.ok(maxDiff < 1e-2, `max |Δ log-prob| ${maxDiff}`);
  // rounding the policy's embedding master to bf16 makes them bitwise equal again
  const embed = policy.parameters()[0].name;
  await policy.setParameterBf16(embed, await policy.getParameterBf16(embed));
  const again = await policy.clone();
  t.ok(bitwiseEqual(await logprobs(ref), await logprobs(again)), 'bitwise once the embedding is bf16');
  for (const m of [policy, old, ref, again]) m.dispose();
});

t.test('LoRA policy: the base view, no copy', async (t) => {
  const policy = await Model.create(cfg, { seed: 6, lora: { rank: 4, alpha: 8, modules: 'all-linear' } });
  const ref = await frozenReference(policy);
  t.equal(ref.adaptersOf, policy);
  ref.dispose();
  t.ok((await logprobs(policy)).length > 0, 'disposing the view leaves the policy');
  policy.dispose();
});

t.test('tensor-parallel policy: a plain clone (its shards have no frozen storage), the same log-probs', async (t) => {
  const policy = await Model.create(cfg, { seed: 8, initStd: 0.2, tensorParallel: 2 });
  const ref = await frozenReference(policy);
  t.equal(ref.tensorParallel, 2);
  t.equal(ref.trainable, true, 'trainable: false is refused by the tensor-parallel engine');
  t.ok(bitwiseEqual(await logprobs(ref), await logprobs(policy)), "log-probs bit for bit the policy's");
  ref.dispose();
  policy.dispose();
});

t.test("the preference trainer's default reference is frozen", async (t) => {
  const policy = await Model.create(cfg, { seed: 7 });
  const data = [
    { prompt: 'q:', chosen: 'ab', rejected: 'cd' },
    { prompt: 'r:', chosen: 'ba', rejected: 'dc' },
  ];
  const trainer = new PreferenceTrainer({ policy, tokenizer: tok, loss: 'dpo', train: data, eval: data, seqLen: 16 });
  await trainer.evaluate();
  t.equal(trainer.reference?.trainable, false);
  t.equal(trainer.reference?.storageBytes.gradients, 0);
  trainer.reference?.dispose();
  policy.dispose();
});
