/**
 * Data parallelism across processes: training-step tokens/s of the ~6M model at 1 and 2 ranks
 * (Open MPI, `mpirun -np N`, one thread per rank) on the same global batch (8 × 128 tokens,
 * next-token cross-entropy, AdamW with ZeRO-1 at 2 ranks), against PyTorch DDP with the gloo backend
 * (bench/peers/torch_ddp.py) at the same N and threads. Also the bandwidth of one all-reduce of every
 * gradient (MpiGroup.allReduceGradients; DDP peer: dist.all_reduce of the same bytes) beside a
 * single-thread memory copy, and the communication volume per step a cluster would move. At 2
 * ranks: MpiGroup's all-reduce bandwidth by message size (4 KiB to 64 MiB) against the measured
 * memory copy bandwidth, the gradient all-reduce in 25 MiB buckets against one call, and the bytes
 * tensor parallelism over 2 processes would move per step.
 * Checked before timing: the first global loss ≈ ln V, and after the timed steps every rank holds
 * the same weights. Last, GRPO iterations of the 6M policy at 2 ranks with the trainer's gradient
 * all-reduce overlapped with backward (overlapAllReduce, the default) and after it (false), side by
 * side; checked: both runs end with bitwise the same weights.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AdamW } from '../lib/engine/adamw.js';
import { buildInfo } from '../lib/engine/device.js';
import { Model } from '../lib/engine/model.js';
import { initDistributed, shardRange } from '../lib/distributed/index.js';
import { GroupTrainer } from '../lib/train/group.js';
import { ByteTokenizer } from '../lib/tokenizer/index.js';
import { rewardFunction } from '../lib/rewards/types.js';
import { native } from '../lib/native.js';
import { emit, header, median, note, quick, ratio, runPeer, table } from './common.js';
import { MODELS, childArgs } from './model-common.js';

const B = 8,
  T = 128,
  CONFIG = MODELS['6M'];

/** One rank: times training steps on its share of the global batch and one gradient all-reduce. */
async function child(repeats: number): Promise<void> {
  buildInfo();
  const group = initDistributed();
  const model = await Model.create(CONFIG, { seed: 1 });
  const opt = new AdamW(model, { lr: 1e-4 }, { group: group.size > 1 ? group : undefined });
  const V = model.config.vocab;
  let s = 12345;
  const all = Int32Array.from({ length: B * T }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % V);
  const [b0, b1] = shardRange(B, group.rank, group.size);
  const n = (b1 - b0) * T;
  const tokens = all.subarray(b0 * T, b1 * T);
  const targets = tokens.map((_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
  const d = new Float32Array(n).fill(-1 / (B * (T - 1))); // a mean over the GLOBAL batch's targets
  const step = async () => {
    const f = await model.forward({ tokens, targets, batch: b1 - b0, seqLen: T });
    let nll = 0;
    for (let i = 0; i < n; i++) if (targets[i] >= 0) nll -= f.logprobs[i];
    await model.backward({ dLogprobs: d });
    await group.allReduceGradients(model);
    await opt.step();
    await model.zeroGrad();
    return group.allReduceSum(Float64Array.of(nll))[0] / (B * (T - 1));
  };
  const first = await step();
  if (!(Math.abs(first - Math.log(V)) < 0.1)) throw new Error(`loss check failed: ${first} (ln V = ${Math.log(V)})`);
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    group.barrier();
    const t0 = performance.now();
    await step();
    times.push(performance.now() - t0);
  }
  const w = await model.getParameter(model.parameters()[1].name);
  const sum = w.reduce((a, x) => a + x, 0);
  if (group.allReduceSum(Float64Array.of(sum))[0] !== sum * group.size)
    throw new Error('the ranks hold different weights');
  const ar: number[] = [];
  for (let r = 0; r < repeats; r++) {
    group.barrier();
    const t0 = performance.now();
    await group.allReduceGradients(model);
    ar.push(performance.now() - t0);
  }
  // a single-thread memory copy of the gradient bytes, for scale
  const src = new Float32Array(model.numParameters).fill(1),
    dst = new Float32Array(src.length);
  const copy: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    dst.set(src);
    copy.push(performance.now() - t0);
  }
  // the same gradient all-reduce in DDP-sized buckets (the default) and in one call
  const oneCall: number[] = [];
  for (let r = 0; r < repeats; r++) {
    group.barrier();
    const t0 = performance.now();
    await group.allReduceGradients(model, { bucketBytes: 0 });
    oneCall.push(performance.now() - t0);
  }
  // backward + the gradient all-reduce in 4 MiB buckets (several, so that one can start early):
  // after backward (allReduceGradients) against overlapped with it (backwardAllReduce), alternated
  const OVERLAP_BUCKET = 4 << 20;
  const afterMs: number[] = [],
    overlapMs: number[] = [],
    early: number[] = [];
  if (group.size > 1)
    for (let r = 0; r < repeats; r++)
      for (const overlap of [false, true]) {
        await model.forward({ tokens, targets, batch: b1 - b0, seqLen: T });
        await model.zeroGrad();
        group.barrier();
        const t0 = performance.now();
        if (overlap)
          early.push(
            (await group.backwardAllReduce(model, { dLogprobs: d }, { bucketBytes: OVERLAP_BUCKET })).earlyBuckets,
          );
        else {
          await model.backward({ dLogprobs: d });
          await group.allReduceGradients(model, { bucketBytes: OVERLAP_BUCKET });
        }
        (overlap ? overlapMs : afterMs).push(performance.now() - t0);
      }
  await model.zeroGrad();
  // all-reduce of one message by size (a {params, grads} target: the grads are summed)
  const bySize: Record<string, number> = {};
  if (group.size > 1)
    for (const bytes of [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20]) {
      const g = new Float32Array(bytes / 4).fill(1),
        target = { params: new Float32Array(g.length), grads: g };
      const ms: number[] = [];
      for (let r = 0; r < Math.max(repeats, 5); r++) {
        group.barrier();
        const t0 = performance.now();
        await group.allReduceGradients(target, { bucketBytes: 0 });
        ms.push(performance.now() - t0);
      }
      bySize[bytes] = median(ms);
    }
  // memory bandwidth: copies of 64 MiB (beyond the caches), one thread, bytes copied per second
  const big = new Float32Array(16 << 20).fill(1),
    big2 = new Float32Array(big.length);
  const bigCopy: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    big2.set(big);
    bigCopy.push(performance.now() - t0);
  }
  if (group.rank === 0)
    process.stdout.write(
      JSON.stringify({
        ms: median(times),
        allReduceMs: median(ar),
        oneCallMs: median(oneCall),
        copyMs: median(copy),
        bigCopyGBs: (64 << 20) / (median(bigCopy) / 1000) / 1e9,
        params: model.numParameters,
        moments: opt.shard.end - opt.shard.begin,
        bySize,
        ...(group.size > 1
          ? {
              backwardThenAllReduceMs: median(afterMs),
              backwardAllReduceMs: median(overlapMs),
              earlyBuckets: median(early),
              buckets: Math.ceil((4 * model.numParameters) / OVERLAP_BUCKET),
            }
          : {}),
      }) + '\n',
    );
}

/**
 * One rank of a GRPO run on the 6M policy (16 responses of 24 tokens per iteration, one minibatch,
 * gradients summed in 4 MiB buckets):
 * prints the median wall time of the update phases per iteration after the first (policy forward,
 * backward and the gradient sum; AdamW), and a digest of the weights.
 */
async function pgChild(iterations: number, overlap: boolean): Promise<void> {
  const group = initDistributed();
  const policy = await Model.create(CONFIG, { seed: 1 });
  const tokenizer = new ByteTokenizer();
  const reward = rewardFunction('ascii-fraction', (r) =>
    r.responseIds.length ? [...r.responseIds].filter((id) => id < 128).length / r.responseIds.length : 0,
  );
  const trainer = new GroupTrainer({
    policy,
    tokenizer,
    reward,
    prompts: ['q:', 'w:', 'e:', 'r:', 't:', 'y:', 'u:', 'i:'].map((prompt) => ({ prompt })),
    iterations,
    promptsPerIteration: 4,
    samplesPerPrompt: 4,
    sampling: { maxNewTokens: 24, temperature: 1 },
    lr: 1e-4,
    seed: 3,
    group,
    overlapAllReduce: overlap,
    allReduceBucketBytes: 4 << 20, // 7 buckets of the 24.6 MiB of gradients (one 25 MiB bucket could not overlap)
  });
  const updateMs: number[] = [];
  trainer.on('step', (e) => {
    const m = e.metrics as Record<string, number>;
    if (e.step > 1) updateMs.push(1000 * ((m['time/policy'] ?? 0) + (m['time/optimizer'] ?? 0)));
  });
  const t0 = performance.now();
  await trainer.train();
  const seconds = (performance.now() - t0) / 1000;
  let digest = 0;
  for (const p of policy.parameters())
    for (const x of await policy.getParameter(p.name)) digest = (digest * 31 + x) % 1e9;
  if (group.rank === 0) process.stdout.write(JSON.stringify({ updateMs: median(updateMs), seconds, digest }) + '\n');
  trainer.dispose();
}

function ranks(
  np: number,
  repeats: number | Record<string, unknown>,
): Record<string, number> & {
  bySize?: Record<string, number>;
  backwardAllReduceMs?: number;
  backwardThenAllReduceMs?: number;
  earlyBuckets?: number;
  buckets?: number;
} {
  const me = fileURLToPath(import.meta.url);
  const args = [me, '--child', JSON.stringify(typeof repeats === 'number' ? { repeats } : repeats)];
  // UV_THREADPOOL_SIZE=1: every MPI call of a rank from one thread, as `--nproc` runs them (lib/distributed)
  const env = { ...process.env, RLHF_THREADS: '1', OMPI_MCA_rmaps_base_oversubscribe: '1', UV_THREADPOOL_SIZE: '1' };
  const r =
    np === 1
      ? spawnSync(process.execPath, args, { encoding: 'utf8', env })
      : spawnSync(
          'mpirun',
          [
            '-np',
            String(np),
            '--oversubscribe',
            ...(process.getuid?.() === 0 ? ['--allow-run-as-root'] : []),
            process.execPath,
            ...args,
          ],
          { encoding: 'utf8', env },
        );
  if (r.status !== 0) throw new Error(`benchmark ranks failed: ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

async function main(): Promise<void> {
  const c = childArgs();
  if (c?.pg) return pgChild(c.iterations as number, c.overlap as boolean);
  if (c) return child(c.repeats as number);
  header(`data parallelism: training step of the 6M model, global batch ${B} × ${T} tokens, 1 thread per rank`);
  const info = native().mpiInfo();
  if (!info.loadable) {
    note(`skipped: ${info.error} (scripts/install-mpi.sh)`);
    return;
  }
  const repeats = quick ? 3 : 5;
  const rows: (string | number)[][] = [];
  const comm: (string | number)[][] = [];
  const sizes: (string | number)[][] = [];
  const overlapRows: (string | number)[][] = [];
  let one: number | undefined;
  for (const np of [1, 2]) {
    const ours = ranks(np, repeats);
    const tps = (B * T) / (ours.ms / 1000);
    one ??= tps;
    const shape = `6M (${(ours.params / 1e6).toFixed(1)}M params) B${B} T${T} N${np}`;
    emit({ bench: 'dp-train-step', impl: 'rlhf', shape, median_ms: ours.ms, value: tps, unit: 'tokens/s' });
    const peer = runPeer('torch_ddp.py', { config: CONFIG, batch: B, seq_len: T, repeats, nproc: np, rank_threads: 1 });
    const theirs = peer.results.find((x) => x.bench === 'ddp-train-step');
    const theirsAr = peer.results.find((x) => x.bench === 'ddp-allreduce');
    for (const x of peer.results) emit({ ...x, shape });
    rows.push([
      `N=${np}`,
      tps,
      (tps / one).toFixed(2) + 'x',
      theirs?.value ?? peer.reason ?? 'n/a',
      ratio(tps, theirs?.value),
      String(ours.moments),
    ]);
    const bytes = 4 * ours.params;
    const gbps = bytes / (ours.allReduceMs / 1000) / 1e9;
    emit({ bench: 'dp-allreduce', impl: 'rlhf', shape, median_ms: ours.allReduceMs, value: gbps, unit: 'GB/s' });
    if (np > 1)
      comm.push([
        `N=${np}`,
        (bytes / 2 ** 20).toFixed(1),
        ours.allReduceMs,
        gbps,
        theirsAr ? theirsAr.value : 'n/a',
        bytes / (ours.copyMs / 1000) / 1e9,
        ((2 * (np - 1)) / np) * (bytes / 2 ** 20) + ((np - 1) / np) * (bytes / 2 ** 20),
        ours.oneCallMs,
      ]);
    for (const [b, ms] of Object.entries(ours.bySize ?? {})) {
      const alg = Number(b) / (ms / 1000) / 1e9;
      emit({
        bench: 'mpi-allreduce',
        impl: 'rlhf',
        shape: `${b} bytes N${np}`,
        median_ms: ms,
        value: alg,
        unit: 'GB/s',
      });
      sizes.push([
        Number(b) >= 2 ** 20 ? `${Number(b) / 2 ** 20} MiB` : `${Number(b) / 1024} KiB`,
        ms,
        alg,
        (alg * 2 * (np - 1)) / np,
        ((alg * 2 * (np - 1)) / np / ours.bigCopyGBs).toFixed(2),
      ]);
    }
    if (np > 1) note(`memory copy bandwidth (64 MiB, 1 thread): ${ours.bigCopyGBs.toFixed(1)} GB/s`);
    if (ours.backwardAllReduceMs !== undefined) {
      const [after, overlapped] = [ours.backwardThenAllReduceMs!, ours.backwardAllReduceMs];
      emit({ bench: 'dp-backward-allreduce', impl: 'after', shape, median_ms: after, value: after, unit: 'ms' });
      emit({
        bench: 'dp-backward-allreduce',
        impl: 'overlapped',
        shape,
        median_ms: overlapped,
        value: overlapped,
        unit: 'ms',
      });
      overlapRows.push([
        `N=${np}`,
        after,
        overlapped,
        (after / overlapped).toFixed(2) + 'x',
        `${ours.earlyBuckets} of ${ours.buckets}`,
      ]);
    }
  }
  table(['ranks', 'rlhf tok/s', 'vs 1 rank', 'torch DDP tok/s', 'rlhf/torch', 'AdamW moments/rank'], rows);
  table(
    [
      'ranks',
      'gradient MiB',
      'all-reduce ms',
      'rlhf GB/s',
      'gloo GB/s',
      'memcpy GB/s (1 thread)',
      'MiB sent per rank per step',
      'one call ms (vs 25 MiB buckets)',
    ],
    comm,
  );
  table(['message (N=2)', 'all-reduce ms', 'algbw GB/s', 'busbw GB/s', 'busbw / memcpy'], sizes);
  note('algbw = message bytes / time; busbw = algbw · 2(N−1)/N (what each rank sends and receives in a ring).');
  table(
    ['ranks', 'backward, then all-reduce ms', 'all-reduce overlapped ms', 'speed-up', 'buckets begun during backward'],
    overlapRows,
  );
  note(
    'both in 4 MiB buckets, last first (the same bits); overlapped: ProcessGroup.backwardAllReduce sums each bucket on a second thread once backward has made it final.',
  );
  // Tensor parallelism over K processes, per training step of this batch: each layer all-reduces
  // its (B·T, C) activations twice forward (after o_proj and down_proj) and twice backward (the
  // column-parallel inputs' gradients); the vocabulary-parallel head adds three (B·T) all-reduces.
  const C = Number(CONFIG.hidden_size),
    L = Number(CONFIG.num_hidden_layers);
  const tpRows: (string | number)[][] = [];
  for (const K of [2, 4]) {
    const perRing = (2 * (K - 1)) / K;
    const acts = 4 * L * B * T * C * 4,
      head = 3 * B * T * 4;
    tpRows.push([`K=${K}`, (acts + head) / 2 ** 20, (perRing * (acts + head)) / 2 ** 20, 4 * L + 3]);
  }
  table(['tensor parallel', 'MiB all-reduced per step', 'MiB sent per rank per step', 'all-reduces per step'], tpRows);
  note(
    'per step each rank sends ≥ 2(N−1)/N of the gradient bytes (ring all-reduce) plus (N−1)/N of the parameter bytes (ZeRO-1 all-gather);',
  );
  note(
    'on one 2-core machine the ranks share the cores and memory bus, so N=2 cannot beat N=1 by much: on a cluster the step scales while',
  );
  note('compute per rank (≈ 6·params·tokens/N FLOPs) outweighs that traffic over the network.');

  // the trainer's overlapped all-reduce (GroupTrainer overlapAllReduce) against the plain path, alternated
  const pgRows: (string | number)[][] = [];
  const pg: Record<string, { updateMs: number[]; digest?: number }> = {
    after: { updateMs: [] },
    overlapped: { updateMs: [] },
  };
  for (let r = 0; r < (quick ? 1 : 2); r++)
    for (const overlap of [false, true]) {
      const x = ranks(2, { pg: true, iterations: quick ? 4 : 6, overlap });
      const k = overlap ? 'overlapped' : 'after';
      pg[k].updateMs.push(x.updateMs);
      if (pg[k].digest !== undefined && pg[k].digest !== x.digest) throw new Error(`GRPO ${k}: reruns differ`);
      pg[k].digest = x.digest;
    }
  if (pg.after.digest !== pg.overlapped.digest)
    throw new Error('GRPO: overlapped and plain all-reduce gave other weights');
  const [after, overlapped] = [median(pg.after.updateMs), median(pg.overlapped.updateMs)];
  const shape = '6M GRPO 16 × 24 tokens N2';
  emit({ bench: 'dp-grpo-update', impl: 'after', shape, median_ms: after, value: after, unit: 'ms' });
  emit({ bench: 'dp-grpo-update', impl: 'overlapped', shape, median_ms: overlapped, value: overlapped, unit: 'ms' });
  pgRows.push(['N=2', after, overlapped, (after / overlapped).toFixed(2) + 'x']);
  table(['GRPO update (ranks)', 'all-reduce after backward ms', 'overlapped ms', 'speed-up'], pgRows);
  note(
    'per iteration after the first: policy forward, backward, gradient sum in 4 MiB buckets and AdamW (medians); the same weights bit for bit (checked).',
  );
}

await main();
