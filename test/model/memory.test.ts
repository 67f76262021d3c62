// estimateTrainingMemory: every figure equals what the engine's buffers hold (nativeMemoryInUse)
// at each point of a step, and `peak` equals the engine's measured high-water mark
// (nativeMemoryPeak) — with and without gradient checkpointing, for a scalar-head model, and with
// logits too large to cache (the chunked LM-head path). Not counted by the estimate: the kernels'
// thread-local workspaces (GEMM packing, attention rows; grown on first use and kept), warmed up
// before measuring and what they still grow by counted apart.
import t from 'tap';
import { AdamW } from '../../lib/engine/adamw.js';
import { nativeWorkspaceBytes, nativeMemoryInUse, nativeMemoryPeak, setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import type { LoraModuleName } from '../../lib/engine/lora.js';
import { estimateTrainingMemory, loraParameterCount, parameterCount } from '../../lib/engine/memory.js';
import { Model } from '../../lib/engine/model.js';
import type { ProcessGroup } from '../../lib/distributed/index.js';

setThreads(1);

const cases = [
  [
    'llama, targets on every row',
    tinyConfig({ vocab: 101, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64 }),
    { batch: 3, seqLen: 16 },
    false,
  ],
  [
    'llama, checkpointed, entropy',
    tinyConfig({ vocab: 101, hidden: 32, layers: 3, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64 }),
    { batch: 3, seqLen: 16, entropy: true },
    true,
  ],
  [
    'glm reward model (values only)',
    tinyConfig({
      family: 'glm',
      vocab: 101,
      hidden: 32,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      ffn: 48,
      maxPositions: 64,
      valueHead: true,
    }),
    { batch: 4, seqLen: 9 },
    false,
  ],
  [
    'llama with LoRA adapters (moments for the adapters only)',
    tinyConfig({ vocab: 101, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64 }),
    { batch: 3, seqLen: 16, lora: { rank: 4, alpha: 8, modules: ['q_proj', 'v_proj', 'down_proj'] } },
    false,
  ],
  [
    'logits past the 256 MiB cache: chunked',
    tinyConfig({ vocab: 4096, hidden: 16, layers: 1, heads: 2, kvHeads: 1, ffn: 16, maxPositions: 32 }),
    { batch: 640, seqLen: 32 },
    false,
  ],
] as const;

type Shape = {
  batch: number;
  seqLen: number;
  entropy?: boolean;
  lora?: { rank: number; alpha: number; modules: readonly LoraModuleName[] };
};

// Forward outputs are native memory that JS frees only when it collects them, at a time GC picks
// (later under load): every output stays referenced here until the file ends, so no collection
// lowers nativeMemoryInUse in the middle of a measurement.
const keepAlive: unknown[] = [];

async function step(config: (typeof cases)[number][1], shape: Shape, ckpt: boolean): Promise<void> {
  const m = await Model.create(config, { seed: 1, lora: shape.lora });
  m.gradientCheckpointing = ckpt;
  const opt = new AdamW(m, { lr: 1e-3 });
  const N = shape.batch * shape.seqLen,
    lm = m.config.lmHead,
    value = m.config.valueHead;
  const tokens = new Int32Array(N).fill(1);
  const out = await m.forward({
    tokens,
    targets: lm ? tokens : undefined,
    batch: shape.batch,
    seqLen: shape.seqLen,
    entropy: 'entropy' in shape ? shape.entropy : false,
    values: value,
  });
  await m.backward({
    dLogprobs: lm ? new Float32Array(N) : undefined,
    dValues: value ? new Float32Array(N) : undefined,
  });
  await opt.step();
  keepAlive.push(out);
  opt.dispose();
  m.dispose();
}

for (const [label, config, shape, ckpt] of cases) {
  t.test(`${label}: the estimate is the engine's own account`, async (t) => {
    // the workspaces grow on a thread's first use: a step first, and what they still grow by in
    // the measured one (another libuv worker thread may run it) is counted apart
    await step(config, shape, ckpt);
    const base = nativeMemoryInUse(),
      ws0 = nativeWorkspaceBytes();
    const lora = 'lora' in shape ? shape.lora : undefined;
    const m = await Model.create(config, { seed: 1, lora });
    m.gradientCheckpointing = ckpt;
    t.equal(
      m.numParameters,
      parameterCount(m.config) + (m.lora ? loraParameterCount(m.config, m.lora) : 0),
      'parameterCount (+ loraParameterCount)',
    );
    const lm = m.config.lmHead,
      value = m.config.valueHead,
      entropy = 'entropy' in shape && shape.entropy;
    const est = estimateTrainingMemory(m.config, {
      batch: shape.batch,
      seqLen: shape.seqLen,
      entropy,
      lora: m.lora,
      gradientCheckpointing: ckpt,
      values: value,
      targetRows: lm ? undefined : 0,
    });
    t.equal(nativeMemoryInUse() - base, est.parameters + est.gradients, 'after create: parameters + gradients');
    const opt = new AdamW(m, { lr: 1e-3 });
    t.equal(nativeMemoryInUse() - base, est.parameters + est.gradients + est.optimizer, 'with AdamW: + moments');
    const N = shape.batch * shape.seqLen;
    const tokens = Int32Array.from({ length: N }, (_, i) => (i * 37) % m.config.vocab);
    nativeMemoryPeak({ reset: true });
    const f = await m.forward({
      tokens,
      targets: lm ? tokens : undefined,
      batch: shape.batch,
      seqLen: shape.seqLen,
      entropy,
      values: value,
    });
    const resident = est.parameters + est.gradients + est.optimizer;
    const afterForward =
      nativeMemoryInUse() -
      base -
      (nativeWorkspaceBytes() - ws0) -
      resident -
      est.activations -
      est.lmHead -
      est.outputs;
    t.ok(
      afterForward > 0 && afterForward <= est.scratchPeak,
      `after forward: saved ${est.activations} + LM head ${est.lmHead} + outputs ${est.outputs} + forward scratch ${afterForward}`,
    );
    await m.backward({
      dLogprobs: lm ? new Float32Array(N).fill(-1 / N) : undefined,
      dValues: value ? new Float32Array(N).fill(0.1) : undefined,
    });
    await opt.step();
    const grown = nativeWorkspaceBytes() - ws0,
      measured = nativeMemoryPeak() - base;
    t.ok(
      measured >= est.peak && measured <= est.peak + grown,
      `peak ${est.peak} bytes (${(est.peak / 2 ** 20).toFixed(2)} MiB) as estimated: measured ${measured}, of which kernel workspaces grown ${grown}`,
    );
    t.ok(f.logprobs.length === N);
    keepAlive.push(f);
    opt.dispose();
    m.dispose();
    t.ok(
      nativeMemoryInUse() - base - grown <= est.outputs,
      `disposed: all returned but the outputs JS still holds and the kernel workspaces (left ${nativeMemoryInUse() - base - grown}, outputs ${est.outputs})`,
    );
  });
}

t.test('checkpointing saves what the formula says; bad options are named', async (t) => {
  const c = cases[0][1];
  const m = await Model.create(c, { seed: 1 });
  const full = estimateTrainingMemory(m.config, { batch: 8, seqLen: 64 });
  const ck = estimateTrainingMemory(m.config, { batch: 8, seqLen: 64, gradientCheckpointing: true });
  t.ok(ck.activations < full.activations / 4, `activations ${full.activations} → ${ck.activations} bytes`);
  t.same(estimateTrainingMemory(c, { batch: 8, seqLen: 64 }), full, 'a Hugging Face config.json object works too');
  t.throws(
    () => estimateTrainingMemory(m.config, { batch: 0, seqLen: 4 }),
    /estimateTrainingMemory: expected options\.batch/,
  );
  t.throws(() => estimateTrainingMemory(m.config, { batch: 1, seqLen: 4, targetRows: 5 }), /options\.targetRows/);
  m.dispose();
});

t.test('nproc: rank 0 runs its share of the rows and, with ZeRO-1, holds moments for its share', async (t) => {
  const m = await Model.create(cases[0][1], { seed: 1 });
  const one = estimateTrainingMemory(m.config, { batch: 5, seqLen: 32 });
  const two = estimateTrainingMemory(m.config, { batch: 5, seqLen: 32, nproc: 2 });
  const rows3 = estimateTrainingMemory(m.config, { batch: 3, seqLen: 32 });
  t.equal(two.activations, rows3.activations, 'activations of ⌈5 / 2⌉ = 3 rows');
  t.equal(two.parameters, one.parameters, 'every rank holds every parameter');
  t.equal(two.gradients, one.gradients, 'and every gradient (ZeRO stage 1)');
  const n = m.numParameters;
  t.equal(two.optimizer, 2 * 4 * Math.ceil(n / 2), `moments for ⌈${n} / 2⌉ parameters`);
  t.equal(
    estimateTrainingMemory(m.config, { batch: 5, seqLen: 32, nproc: 2, shardOptimizer: false }).optimizer,
    one.optimizer,
    'unsharded: moments for every parameter',
  );
  // the engine's count: AdamW as shard 0 of 2 (the placement is all the constructor reads of a group)
  const base = nativeMemoryInUse();
  const rank0 = { rank: 0, size: 2 } as unknown as ProcessGroup;
  const opt = new AdamW(m, { lr: 1e-3 }, { group: rank0 });
  t.equal(nativeMemoryInUse() - base, two.optimizer, 'a sharded AdamW allocates what the estimate says');
  opt.dispose();
  t.throws(() => estimateTrainingMemory(m.config, { batch: 1, seqLen: 4, nproc: 0 }), /options\.nproc/);
  m.dispose();
});
