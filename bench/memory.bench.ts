/**
 * Memory of a 0.5B-parameter model set up for LoRA training, f32 against bf16, side by side in one
 * run: Qwen2.5-0.5B's shape (494M parameters, tied embeddings, q/k/v biases) with LoRA r16 on
 * every projection, random weights, one step (forward + backward + AdamW) of 1 × 64 tokens. Each arm
 * runs in its own child process, so its peak RSS (getrusage maxRSS) is its own; beside it the
 * engine's own high-water mark (nativeMemoryPeak) and estimateTrainingMemory's peak for the same
 * step. The bf16 arm stores the frozen base in bf16 only (native/model/weight_store.cc); the goal is
 * its peak RSS at ≤ 45% of the f32 arm's. The bf16 arm again with its base loaded from a BF16
 * checkpoint (written first by another child: the bits go straight into the bf16 store), and a
 * frozen bf16 model (trainable: false, a reference model's storage) running a forward. Byte counts are exact; RSS depends a little on the allocator.
 * `--baseline-addon=PATH` (`--baseline-addon PATH` when run directly, not through `npm run bench`):
 * first the same f32 LoRA step on another checkout of the engine (PATH: its build/Release/rlhf.node;
 * its lib compiled to dist/ by `npm run build:ts`), run with its own lib and
 * addon in a child process (bench/memory-baseline.ts) — the engine as it was when the bf16 memory
 * goal was set — and every ratio against it as well as against today's f32 arm.
 * `--quick`: the step's shape only, on a 50M model.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdamW } from '../lib/engine/adamw.js';
import { configFromHF, type ModelConfig } from '../lib/engine/config.js';
import { nativeMemoryCached, nativeMemoryPeak } from '../lib/engine/device.js';
import { estimateTrainingMemory } from '../lib/engine/memory.js';
import { Model, type WeightDType } from '../lib/engine/model.js';
import { resolveLora, type LoraOptions } from '../lib/engine/lora.js';
import { argv, emit, header, note, quick, table } from './common.js';
import { baselineRoot, runBaseline } from './memory-baseline.js';
import { MODELS, childArgs, peakRssMB, runChild, trainStep } from './model-common.js';

/** Qwen2.5-0.5B's config.json fields that set the shape. */
const QWEN_05B = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  vocab_size: 151936,
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  max_position_embeddings: 32768,
  rope_theta: 1000000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
  initializer_range: 0.02,
};
const LORA: LoraOptions = { rank: 16, alpha: 32, modules: 'all-linear' };
const B = 1,
  T = 64;

/** `small`: the --quick model (children get it in their arguments: their argv has no --quick) */
function config(small = quick): ModelConfig {
  return configFromHF(small ? MODELS['50M'] : QWEN_05B, 'memory bench config');
}

interface Arm {
  label: string;
  dtype: WeightDType;
  train: boolean; // LoRA training step; false: a frozen model's forward (no LoRA, trainable false)
  load?: boolean; // Model.load from a BF16 checkpoint (written first, random weights) instead of create
}
const ARMS: Arm[] = [
  { label: 'f32 LoRA r16', dtype: 'f32', train: true },
  { label: 'bf16 LoRA r16', dtype: 'bf16', train: true },
  { label: 'bf16 LoRA r16, loaded from BF16', dtype: 'bf16', train: true, load: true },
  { label: 'bf16 frozen (trainable: false)', dtype: 'bf16', train: false },
];

interface ChildArgs {
  dtype: WeightDType;
  train: boolean;
  dir?: string; // load from here; with write: save a random bf16 model here as BF16
  write?: boolean;
  quick: boolean;
}

async function child(a: ChildArgs): Promise<void> {
  nativeMemoryPeak(); // loads the addon: the process baseline below includes it
  const startRss = process.memoryUsage().rss / 2 ** 20;
  const cfg = config(a.quick);
  if (a.write) {
    const w = await Model.create(cfg, { dtype: 'bf16', trainable: false });
    await w.save(a.dir!, { dtype: 'BF16', tokenizer: { save: async () => {} } });
    console.log(JSON.stringify({ rss: peakRssMB() }));
    return;
  }
  const opts = a.train ? { seed: 1, lora: LORA, dtype: a.dtype } : { dtype: a.dtype, trainable: false };
  const m = a.dir ? await Model.load(a.dir, opts) : await Model.create(cfg, opts);
  const afterCreate = peakRssMB();
  let loss = 0;
  if (a.train) {
    const opt = new AdamW(m, { lr: 1e-4 });
    loss = await trainStep(m, opt, B, T)();
  } else {
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % cfg.vocab);
    const targets = tokens.map((_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
    await m.forward({ tokens, targets, batch: B, seqLen: T });
  }
  const s = m.storageBytes;
  console.log(
    JSON.stringify({
      rss: peakRssMB(),
      startRss,
      activations: m.activationBytes / 2 ** 20,
      cached: nativeMemoryCached() / 2 ** 20,
      afterCreate,
      nativePeak: nativeMemoryPeak() / 2 ** 20,
      parameters: s.parameters / 2 ** 20,
      weightCopy: s.weightCopy / 2 ** 20,
      gradients: s.gradients / 2 ** 20,
      loss,
    }),
  );
}

/** `--baseline-addon PATH` (or `--baseline-addon=PATH`), checked before any arm runs. */
function baselineAddon(): string | undefined {
  const i = argv.findIndex((a) => a === '--baseline-addon' || a.startsWith('--baseline-addon='));
  if (i < 0) return undefined;
  const path = argv[i].includes('=') ? argv[i].slice(argv[i].indexOf('=') + 1) : argv[i + 1];
  if (!path || path.startsWith('--')) throw new Error('--baseline-addon: expected a path to rlhf.node');
  baselineRoot(path);
  return path;
}

const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(1)}%`;
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

async function main(): Promise<void> {
  const cfg = config();
  const addon = baselineAddon();
  header(`memory: ${quick ? '50M' : 'Qwen2.5-0.5B-shaped'} model, LoRA r16 all-linear, one step of ${B} × ${T} tokens`);
  const rows: string[][] = [];
  const results: Record<string, Record<string, number>> = {};
  const BASELINE = 'baseline-as-filed f32 LoRA r16';
  if (addon) {
    const r = runBaseline({ addon, hfConfig: quick ? MODELS['50M'] : QWEN_05B, lora: LORA, batch: B, seqLen: T });
    results[BASELINE] = r;
    rows.push([
      BASELINE,
      r.rss.toFixed(0),
      r.afterCreate.toFixed(0),
      r.nativePeak.toFixed(0),
      r.estimate.toFixed(0),
      `${r.parameters.toFixed(0)} / – / ${r.gradients.toFixed(0)}`,
    ]);
    emit({
      bench: 'memory',
      impl: 'rlhf-baseline',
      shape: BASELINE,
      median_ms: 0,
      value: r.rss,
      unit: 'peak RSS MiB',
      dtype: 'f32',
    });
  }
  const dir = await mkdtemp(join(tmpdir(), 'rlhf-memory-bench-'));
  try {
    runChild(import.meta.url, { dtype: 'bf16', train: false, dir: join(dir, 'ckpt'), write: true, quick });
    for (const arm of ARMS) await measure(arm, arm.load ? join(dir, 'ckpt') : undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  async function measure(arm: Arm, from: string | undefined): Promise<void> {
    const r = runChild(import.meta.url, { dtype: arm.dtype, train: arm.train, quick, ...(from ? { dir: from } : {}) });
    const est = estimateTrainingMemory(cfg, {
      batch: B,
      seqLen: T,
      dtype: arm.dtype,
      ...(arm.train ? { lora: resolveLora('memory bench', LORA, cfg) } : { trainable: false }),
      targetRows: B * (T - 1),
    });
    results[arm.label] = { ...r, estimate: est.peak / 2 ** 20 };
    // a frozen model runs no training step: its forward saves nothing, so no estimate is shown
    rows.push([
      arm.label,
      r.rss.toFixed(0),
      r.afterCreate.toFixed(0),
      r.nativePeak.toFixed(0),
      arm.train ? (est.peak / 2 ** 20).toFixed(0) : '–',
      `${r.parameters.toFixed(0)} / ${r.weightCopy.toFixed(0)} / ${r.gradients.toFixed(0)}`,
    ]);
    emit({
      bench: 'memory',
      impl: 'rlhf',
      shape: arm.label,
      median_ms: 0,
      value: r.rss,
      unit: 'peak RSS MiB',
      dtype: arm.dtype,
    });
  }
  table(
    ['arm', 'peak RSS MiB', 'RSS after create', 'engine peak MiB', 'estimate peak MiB', 'f32 / bf16 / grads MiB'],
    rows,
  );
  const f32 = results['f32 LoRA r16'];
  const against = addon ? [results[BASELINE], f32] : [f32];
  const ratioRows = ['bf16 LoRA r16', 'bf16 LoRA r16, loaded from BF16', ...(addon ? ['f32 LoRA r16'] : [])].map(
    (label) => {
      const r = results[label];
      return [
        label,
        ...against.flatMap((base) => [
          pct(r.rss, base.rss),
          pct(r.nativePeak, base.nativePeak),
          pct(r.estimate, base.estimate),
        ]),
      ];
    },
  );
  table(
    [
      'arm (goal: peak RSS ≤ 45%)',
      ...(addon ? ['RSS / baseline', 'engine / baseline', 'estimate / baseline'] : []),
      'RSS / f32',
      'engine / f32',
      'estimate / f32',
    ],
    ratioRows,
  );
  breakdown(cfg, results['bf16 LoRA r16']);
  // the estimate for a longer step (1 × 512 tokens, the figure the earlier mixed-precision README quoted)
  const lora = resolveLora('memory bench', LORA, cfg);
  const long = (dtype: WeightDType) =>
    estimateTrainingMemory(cfg, { batch: 1, seqLen: 512, dtype, lora }).peak / 2 ** 20;
  note(`estimate for 1 × 512 tokens: f32 ${long('f32').toFixed(0)} MiB, bf16 ${long('bf16').toFixed(0)} MiB`);
}

/**
 * Where the bf16 arm's bytes go: estimateTrainingMemory's parts (exact buffer sizes) beside the
 * child's counters (storageBytes, activationBytes after the step, the allocator's cache) and the
 * process before the model (Node, V8 and the addon's code); what peak RSS holds beyond the engine
 * peak and that baseline is allocator and page slack.
 */
function breakdown(cfg: ModelConfig, r: Record<string, number>): void {
  const e = estimateTrainingMemory(cfg, {
    batch: B,
    seqLen: T,
    dtype: 'bf16',
    lora: resolveLora('memory bench', LORA, cfg),
    targetRows: B * (T - 1),
  });
  table(
    ['bf16 LoRA r16: part', 'estimate MiB', 'measured MiB'],
    [
      ['f32 parameters (adapters, norms, biases, head)', mib(e.parameters), r.parameters.toFixed(1)],
      ['bf16 store (frozen matrices)', mib(e.weightCopy), r.weightCopy.toFixed(1)],
      ['gradients', mib(e.gradients), r.gradients.toFixed(1)],
      ['AdamW moments', mib(e.optimizer), '–'],
      ['saved activations', mib(e.activations), '–'],
      ['LM head (lse, entropy, cached logits)', mib(e.lmHead), '–'],
      ['outputs to JS', mib(e.outputs), '–'],
      ['scratch at its largest', mib(e.scratchPeak), '–'],
      ['engine peak', mib(e.peak), r.nativePeak.toFixed(1)],
      ['activations and scratch held after the step (activationBytes)', '–', r.activations.toFixed(1)],
      ['allocator cache after the step', '–', r.cached.toFixed(1)],
      ['process before the model (Node, V8, addon)', '–', r.startRss.toFixed(1)],
      ['peak RSS − engine peak − process baseline', '–', (r.rss - r.nativePeak - r.startRss).toFixed(1)],
      ['peak RSS', '–', r.rss.toFixed(1)],
    ],
  );
}

const args = childArgs();
if (args) await child(args as unknown as ChildArgs);
else await main();
