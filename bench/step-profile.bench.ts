/**
 * Where a training step's time goes: per step and per phase (forward, backward, AdamW,
 * zero-grad) the wall time, tokens/s, achieved FLOP/s against this CPU's measured peak, the share
 * of CPU time spent in the kernel and the minor page faults (process.resourceUsage(), i.e.
 * getrusage), for the 6M model (B8 × T256) and the demo's model shape (B32 × T96), beside the same
 * step in PyTorch eager (bench/peers/torch_model.py, which reports the same counters).
 *
 * Peak: an FMA loop of the widest vectors on every pool thread at once (bench.fmaPeak), the best
 * of 200 short repeats. Model FLOPs per token: 6 × (weights of every GEMM: q, k, v, o, gate, up, down, LM
 * head) + 12 × layers × heads × head_dim × (T + 1) / 2 (causal attention, forward and backward);
 * the recomputation in backward and the element-wise passes are not counted.
 *
 * `RLHF_BASELINE_ADDON=path/to/rlhf.node` also runs our step with that addon (a build of another
 * commit) in the same run, as "rlhf (baseline)". Counts (faults, FLOPs) are exact; times depend on
 * what else runs on the machine.
 * Goals: system time ≤ 5% of CPU time, ≤ 1000 faults per step, ≥ 45% of peak, ≥ 3× PyTorch (6M).
 */
import { AdamW } from '../lib/engine/adamw.js';
import { buildInfo } from '../lib/engine/device.js';
import { Model } from '../lib/engine/model.js';
import { tinyConfig } from '../lib/engine/config.js';
import { native } from '../lib/native.js';
import { emit, header, median, note, quick, ratio, runPeer, table } from './common.js';
import { MODELS, childArgs } from './model-common.js';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SHAPES = {
  '6M': { config: MODELS['6M'], B: 8, T: 256 },
  demo: {
    config: tinyConfig({ vocab: 512, hidden: 128, layers: 4, heads: 4, kvHeads: 2, ffn: 341, maxPositions: 256 }),
    B: 32,
    T: 96,
  },
} as const;
type ShapeName = keyof typeof SHAPES;

function flopsPerToken(name: ShapeName): number {
  const { T } = SHAPES[name];
  const c = SHAPES[name].config as Record<string, number>;
  const hd = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  const qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * hd,
    ad = c.num_attention_heads * hd;
  const perLayer = c.hidden_size * qkv + ad * c.hidden_size + 3 * c.hidden_size * c.intermediate_size;
  const gemm = 6 * (c.num_hidden_layers * perLayer + c.vocab_size * c.hidden_size);
  const attention = 12 * c.num_hidden_layers * ad * ((T + 1) / 2);
  return gemm + attention;
}

interface Usage {
  user: number;
  system: number;
  faults: number;
}
function usage(): Usage {
  const u = process.resourceUsage();
  return { user: u.userCPUTime, system: u.systemCPUTime, faults: u.minorPageFault };
}

const PHASES = ['forward', 'backward', 'adamw', 'zeroGrad'] as const;

async function child(name: ShapeName, repeats: number): Promise<void> {
  buildInfo();
  const { config, B, T } = SHAPES[name];
  const model = await Model.create(config, { seed: 1 });
  const opt = new AdamW(model, { lr: 1e-4 });
  const V = model.config.vocab,
    N = B * T;
  let s = 12345;
  const tokens = Int32Array.from({ length: N }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % V);
  const targets = tokens.map((_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
  const d = new Float32Array(N).fill(-1 / (B * (T - 1)));
  const ms: Record<string, number[]> = { step: [], forward: [], backward: [], adamw: [], zeroGrad: [] };
  const faults: Record<string, number[]> = { step: [], forward: [], backward: [], adamw: [], zeroGrad: [] };
  let firstLoss = NaN,
    lastLoss = NaN;
  let u0: Usage | undefined;
  for (let r = -2; r < repeats; r++) {
    // two warm-up steps
    if (r === 0) u0 = usage();
    const t0 = performance.now(),
      f0 = usage().faults;
    const marks: [number, number][] = [];
    const f = await model.forward({ tokens, targets, batch: B, seqLen: T });
    marks.push([performance.now(), usage().faults]);
    await model.backward({ dLogprobs: d });
    marks.push([performance.now(), usage().faults]);
    await opt.step();
    marks.push([performance.now(), usage().faults]);
    await model.zeroGrad();
    marks.push([performance.now(), usage().faults]);
    let loss = 0;
    for (let i = 0; i < N; i++) loss -= f.logprobs[i];
    loss /= B * (T - 1);
    if (r === -2) firstLoss = loss;
    lastLoss = loss;
    if (r < 0) continue;
    let [tp, fp] = [t0, f0];
    PHASES.forEach((p, i) => {
      (ms[p].push(marks[i][0] - tp), faults[p].push(marks[i][1] - fp));
      [tp, fp] = marks[i];
    });
    (ms.step.push(tp - t0), faults.step.push(fp - f0));
  }
  const u1 = usage();
  if (!(Math.abs(firstLoss - Math.log(V)) < 0.1) || !(lastLoss < firstLoss))
    throw new Error(`loss check failed: ${firstLoss} -> ${lastLoss} (ln V = ${Math.log(V)})`);
  const cpu = u1.user - u0!.user + (u1.system - u0!.system);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const out: Record<string, number> = { sysShare: (u1.system - u0!.system) / cpu, cpuPerStepMs: cpu / 1000 / repeats };
  for (const k of Object.keys(ms)) ((out[`${k}Ms`] = median(ms[k])), (out[`${k}Faults`] = mean(faults[k])));
  process.stdout.write(JSON.stringify(out) + '\n');
}

function runOurs(name: ShapeName, repeats: number, addon?: string): Record<string, number> {
  const env = { ...process.env };
  if (addon) env.RLHF_ADDON = addon;
  const r = spawnSync(
    process.execPath,
    [fileURLToPath(import.meta.url), '--child', JSON.stringify({ name, repeats })],
    { encoding: 'utf8', env, maxBuffer: 1 << 24 },
  );
  if (r.status !== 0) throw new Error(`benchmark child failed: ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

async function measurePeak(): Promise<{ flops: number; threads: number; simd: string }> {
  // short repeats (~1 ms at full speed), the best of many: on a shared machine some repeat runs
  // without being preempted
  const iterations = 200_000;
  const r = await native().bench.fmaPeak({ iterations, repeats: 200 });
  return { flops: r.flops / (Math.min(...r.ms) / 1000), threads: r.threads, simd: r.simd };
}

async function main(): Promise<void> {
  const c = childArgs();
  if (c) return child(c.name as ShapeName, c.repeats as number);
  header('step profile: one training step (forward + backward + AdamW + zero-grad) per phase');
  const peak = await measurePeak();
  note(
    `measured peak: ${(peak.flops / 1e9).toFixed(1)} GFLOP/s fp32 (${peak.simd} FMA loop on ${peak.threads} thread(s))`,
  );
  emit({
    bench: 'fma-peak',
    impl: 'rlhf',
    shape: `${peak.threads} threads`,
    median_ms: 0,
    value: peak.flops / 1e9,
    unit: 'GFLOP/s',
  });
  const baseline = process.env.RLHF_BASELINE_ADDON;
  const names: ShapeName[] = quick ? ['6M'] : ['6M', 'demo'];
  const rows: (string | number)[][] = [];
  const phases: (string | number)[][] = [];
  for (const name of names) {
    const { B, T, config } = SHAPES[name];
    const repeats = name === '6M' ? 7 : 15;
    const fpt = flopsPerToken(name);
    // FLOPs of a step per CPU-second it used, against one thread's share of the peak
    const cpuPeakShare = (cpuMs: number) => (100 * ((B * T * fpt) / (cpuMs / 1000))) / (peak.flops / peak.threads);
    const shape = `${name} B${B} T${T}`;
    const runs: [string, Record<string, number>][] = [];
    if (baseline) runs.push(['rlhf (baseline)', runOurs(name, repeats, baseline)]);
    runs.push(['rlhf', runOurs(name, repeats)]);
    const peer = runPeer('torch_model.py', { mode: 'train', config, batch: B, seq_len: T, repeats });
    const tstep = peer.results.find((r) => r.bench === 'train-step');
    const tsys = peer.results.find((r) => r.bench === 'train-sys-share');
    const tfaults = peer.results.find((r) => r.bench === 'train-faults-per-step');
    const tcpu = peer.results.find((r) => r.bench === 'train-cpu-per-step');
    for (const [impl, o] of runs) {
      const tps = (B * T) / (o.stepMs / 1000),
        fl = tps * fpt;
      emit({ bench: 'step-profile', impl, shape, median_ms: o.stepMs, value: tps, unit: 'tokens/s' });
      emit({
        bench: 'step-profile-peak-share',
        impl,
        shape,
        median_ms: o.stepMs,
        value: (100 * fl) / peak.flops,
        unit: '%',
      });
      emit({
        bench: 'step-profile-faults',
        impl,
        shape,
        median_ms: o.stepMs,
        value: o.stepFaults,
        unit: 'faults/step',
      });
      emit({ bench: 'step-profile-sys-share', impl, shape, median_ms: o.stepMs, value: 100 * o.sysShare, unit: '%' });
      rows.push([
        `${shape} ${impl}`,
        tps,
        fl / 1e9,
        (100 * fl) / peak.flops,
        o.cpuPerStepMs,
        cpuPeakShare(o.cpuPerStepMs),
        100 * o.sysShare,
        o.stepFaults,
        ratio(tps, tstep?.value),
      ]);
      phases.push([`${shape} ${impl}`, ...PHASES.flatMap((p) => [o[`${p}Ms`], o[`${p}Faults`]])]);
    }
    if (tstep) {
      const fl = tstep.value * fpt;
      rows.push([
        `${shape} torch`,
        tstep.value,
        fl / 1e9,
        (100 * fl) / peak.flops,
        tcpu?.value ?? NaN,
        tcpu ? cpuPeakShare(tcpu.value) : NaN,
        tsys?.value ?? NaN,
        tfaults?.value ?? NaN,
        '1.00x',
      ]);
    }
    for (const r of peer.results) emit({ ...r, shape });
    if (peer.reason) note(`torch: skipped — ${peer.reason}`);
    else if (peer.blas) note(`torch ${peer.version}: BLAS ${peer.blas}`);
  }
  table(
    [
      'step',
      'tokens/s',
      'GFLOP/s',
      '% peak',
      'CPU ms/step',
      '% peak per CPU s',
      'sys % of CPU',
      'faults/step',
      'vs torch',
    ],
    rows,
  );
  table(['step', ...PHASES.flatMap((p) => [`${p} ms`, 'faults'])], phases);
  note(
    `model FLOPs per token: ${names.map((n) => `${n} ${(flopsPerToken(n) / 1e6).toFixed(1)}M`).join(', ')} (6 × GEMM weights + causal attention).`,
  );
  note(
    'times are medians over the steady-state steps; faults are means (minor page faults); sys % = system / (user + system) CPU time;',
  );
  note('CPU ms/step (user + system, all threads) depends less than wall time on what else runs on the machine;');
  note('"% peak per CPU s" = the step\'s FLOPs per CPU-second it used, against one thread\'s share of the peak.');
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
