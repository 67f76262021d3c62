/**
 * Tensor parallelism on one CPU: training-step tokens/s (forward + backward + AdamW +
 * zero-grad, batch 8 × 256 tokens) of the ~6M model with
 *   - TP 1 on 1 thread, TP 1 on all threads (intra-op threading alone),
 *   - TP 2 and TP 4 (thread ranks; all threads split evenly between the ranks),
 *   - TP 2 over two MPI processes (one shard each, the threads split between them), when Open MPI is installed,
 * and PyTorch eager on all threads as the peer. Every configuration first checks that its loss
 * starts at ≈ ln V and falls. Each runs in its own process.
 */
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { initDistributed } from '../lib/distributed/index.js';
import { native } from '../lib/native.js';
import { AdamW } from '../lib/engine/adamw.js';
import { setThreads } from '../lib/engine/device.js';
import { Model } from '../lib/engine/model.js';
import { emit, header, median, note, quick, ratio, runPeer, table } from './common.js';
import { MODELS, childArgs, runChild, trainStep } from './model-common.js';

const B = 8,
  T = 256;

async function child(tp: number, threads: number, repeats: number, mpi: boolean): Promise<void> {
  setThreads(threads);
  const group = mpi ? initDistributed({ backend: 'mpi', tensorParallel: tp }) : undefined;
  const model = await Model.create(MODELS['6M'], {
    seed: 1,
    tensorParallel: tp,
    tensorParallelGroup: mpi ? 'mpi' : 'threads',
  });
  const opt = new AdamW(model, { lr: 1e-4 });
  const V = model.config.vocab;
  const step = trainStep(model, opt, B, T);
  const first = await step();
  const times: number[] = [];
  let last = first;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    last = await step();
    times.push(performance.now() - t0);
  }
  if (!(Math.abs(first - Math.log(V)) < 0.1) || !(last < first))
    throw new Error(`loss check failed: ${first} -> ${last}`);
  if (!group || group.worldRank === 0) process.stdout.write(JSON.stringify({ ms: median(times), first, last }) + '\n');
}

/** The child under `mpirun -np tp` (one shard per process, `threads` threads each). */
function runMpiChild(tp: number, threads: number, repeats: number): Record<string, number> {
  const args = [fileURLToPath(import.meta.url), '--child', JSON.stringify({ tp, threads, repeats, mpi: true })];
  const env = { ...process.env, UV_THREADPOOL_SIZE: '1', OMPI_MCA_rmaps_base_oversubscribe: '1' };
  const root = process.getuid?.() === 0 ? ['--allow-run-as-root'] : [];
  const r = spawnSync('mpirun', ['-np', String(tp), '--oversubscribe', ...root, process.execPath, ...args], {
    encoding: 'utf8',
    env,
  });
  if (r.status !== 0) throw new Error(`mpirun child failed: ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

async function main(): Promise<void> {
  const c = childArgs();
  if (c) return child(c.tp as number, c.threads as number, c.repeats as number, c.mpi === true);
  const all = Math.max(1, Number(process.env.RLHF_THREADS) || cpus().length);
  header(`tensor parallelism: 6M model train step, batch ${B} × ${T}, ${all} thread(s) in all`);
  const repeats = quick ? 2 : 5;
  const configs: { label: string; tp: number; threads: number; mpi?: boolean }[] = [
    { label: 'TP 1, 1 thread', tp: 1, threads: 1 },
    { label: `TP 1, ${all} threads (intra-op only)`, tp: 1, threads: all },
    { label: `TP 2, ${Math.max(1, all / 2)} thread(s) per rank`, tp: 2, threads: all },
    {
      label: `TP 4, ${Math.max(1, Math.floor(all / 4))} thread(s) per rank${all < 4 ? ' (oversubscribed)' : ''}`,
      tp: 4,
      threads: all,
    },
  ];
  const mpi = native().mpiInfo().loadable && spawnSync('mpirun', ['--version']).status === 0;
  if (mpi)
    configs.push({
      label: `TP 2 over 2 MPI processes, ${Math.max(1, all / 2)} thread(s) each`,
      tp: 2,
      threads: Math.max(1, Math.floor(all / 2)),
      mpi: true,
    });
  const peer = runPeer('torch_model.py', { mode: 'train', config: MODELS['6M'], batch: B, seq_len: T, repeats });
  const torch = peer.results.find((r) => r.bench === 'train-step')?.value;
  const measured = configs.map((cfg) => {
    const r = cfg.mpi
      ? runMpiChild(cfg.tp, cfg.threads, repeats)
      : runChild(import.meta.url, { tp: cfg.tp, threads: cfg.threads, repeats });
    emit({
      bench: 'tensor-parallel-train-step',
      impl: 'rlhf',
      shape: cfg.label,
      median_ms: r.ms,
      value: (B * T) / (r.ms / 1000),
      unit: 'tokens/s',
    });
    return { ...cfg, tps: (B * T) / (r.ms / 1000) };
  });
  const intra = measured[1].tps;
  const rows = measured.map((m) => [m.label, m.tps, ratio(m.tps, intra), ratio(m.tps, torch)]);
  if (torch)
    emit({
      bench: 'tensor-parallel-train-step',
      impl: 'torch',
      shape: `torch eager, ${all} threads`,
      median_ms: (B * T * 1000) / torch,
      value: torch,
      unit: 'tokens/s',
    });
  table(['configuration', 'tokens/s', 'vs intra-op', `vs torch eager (${all} thr)`], rows);
  if (peer.reason) note(`torch: skipped — ${peer.reason}`);
  if (!mpi) note('TP over MPI processes: skipped, Open MPI not installed (scripts/install-mpi.sh)');
  note(
    'TP ranks are threads of this process (MPI: processes); every layer adds two all-reduces of batch·seq·hidden floats forward and two backward.',
  );
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
