/**
 * Training step (forward + backward + AdamW + zero-grad) tokens/s for the ~6M and ~50M models,
 * batch 8 × 256 tokens, next-token cross-entropy, against the same model in PyTorch eager
 * (bench/peers/torch_model.py) with the same thread count. Also peak memory of both sides. Each
 * model also with gradient checkpointing (model.gradientCheckpointing; torch: torch.utils.checkpoint
 * around every decoder layer, non-reentrant) and with LoRA adapters of rank 16 on every projection
 * of a frozen base (torch: the same adapters by hand, what peft builds).
 * Goals: >= 1.5× PyTorch tokens/s; peak memory no more than PyTorch's.
 */
import { AdamW } from '../lib/engine/adamw.js';
import { buildInfo } from '../lib/engine/device.js';
import { Model } from '../lib/engine/model.js';
import { emit, header, median, note, quick, ratio, runPeer, table } from './common.js';
import { MODELS, childArgs, peakRssMB, runChild, trainStep, type ModelName } from './model-common.js';

const B = 8,
  T = 256;

const LORA = { rank: 16, alpha: 32, modules: 'all-linear' as const };
const LORA_TORCH = {
  rank: 16,
  alpha: 32,
  modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
};
type Variant = 'plain' | 'ckpt' | 'lora';

async function child(name: ModelName, repeats: number, variant: Variant): Promise<void> {
  buildInfo();
  const baseline = peakRssMB();
  const model = await Model.create(MODELS[name], { seed: 1, ...(variant === 'lora' ? { lora: LORA } : {}) });
  const checkpointing = variant === 'ckpt';
  model.gradientCheckpointing = checkpointing;
  const opt = new AdamW(model, { lr: 1e-4 });
  const V = model.config.vocab;
  const step = trainStep(model, opt, B, T);
  let firstLoss = 0,
    lastLoss = 0;
  firstLoss = await step(); // warm-up; also the check: loss ≈ ln V at initialisation
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    lastLoss = await step();
    times.push(performance.now() - t0);
  }
  if (!(Math.abs(firstLoss - Math.log(V)) < 0.1) || !(lastLoss < firstLoss))
    throw new Error(`loss check failed: ${firstLoss} -> ${lastLoss} (ln V = ${Math.log(V)})`);
  process.stdout.write(
    JSON.stringify({
      ms: median(times),
      peak: peakRssMB(),
      baseline,
      params: model.numParameters,
      firstLoss,
      lastLoss,
    }) + '\n',
  );
}

async function main(): Promise<void> {
  const c = childArgs();
  if (c) return child(c.model as ModelName, c.repeats as number, c.variant as Variant);
  header(`train step: forward + backward + AdamW, batch ${B} × ${T} tokens, next-token cross-entropy`);
  const names: ModelName[] = quick ? ['6M'] : ['6M', '50M'];
  const rows: (string | number)[][] = [];
  const mem: (string | number)[][] = [];
  for (const [name, variant] of names.flatMap((n) =>
    (['plain', 'ckpt', 'lora'] as const).map((v) => [n, v] as const),
  )) {
    const repeats = name === '6M' ? 5 : 3;
    const ours = runChild(import.meta.url, { model: name, repeats, variant });
    const shape = `${name} (${(ours.params / 1e6).toFixed(1)}M params) B${B} T${T}${variant === 'plain' ? '' : ` ${variant}`}`;
    const tps = (B * T) / (ours.ms / 1000);
    emit({ bench: 'train-step', impl: 'rlhf', shape, median_ms: ours.ms, value: tps, unit: 'tokens/s' });
    emit({ bench: 'train-peak-memory', impl: 'rlhf', shape, median_ms: ours.ms, value: ours.peak, unit: 'MB' });
    const peer = runPeer('torch_model.py', {
      mode: 'train',
      config: MODELS[name],
      batch: B,
      seq_len: T,
      repeats,
      checkpoint: variant === 'ckpt',
      ...(variant === 'lora' ? { lora: LORA_TORCH } : {}),
    });
    const step = peer.results.find((r) => r.bench === 'train-step');
    const peak = peer.results.find((r) => r.bench === 'train-peak-memory');
    const base = peer.results.find((r) => r.bench === 'train-baseline-memory');
    for (const r of peer.results) emit({ ...r, shape });
    rows.push([shape, tps, step?.value ?? NaN, ratio(tps, step?.value)]);
    mem.push([
      shape,
      ours.peak,
      ours.peak - ours.baseline,
      peak?.value ?? NaN,
      peak && base ? peak.value - base.value : NaN,
    ]);
    if (peer.reason) note(`torch: skipped — ${peer.reason}`);
  }
  table(['model', 'rlhf tokens/s', 'torch eager tokens/s', 'rlhf/torch'], rows);
  table(['model', 'rlhf peak MB', 'rlhf above baseline', 'torch peak MB', 'torch above baseline'], mem);
  note('peak = process peak RSS; "above baseline" subtracts the RSS after the runtime and library were loaded.');
  note("ckpt = gradient checkpointing: each layer's input kept, the layer recomputed in backward (both sides).");
  note(
    'lora = rank-16 adapters on every projection, base frozen (no base gradients, moments for the adapters only; both sides).',
  );
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
