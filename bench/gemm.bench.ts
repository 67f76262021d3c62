/**
 * GEMM: GFLOP/s of the engine's f32 sgemm against torch.matmul (OpenBLAS) on the same machine
 * with the same thread count, square sizes 256..2048 (C = A·B, row-major, beta = 0).
 * Goal: >= 0.9x PyTorch at 1024 and 2048.
 */
import { native } from '../lib/native.js';
import { emit, header, median, note, quick, ratio, runPeer, table } from './common.js';

const sizes = quick ? [256, 512] : [256, 512, 1024, 2048];
const repeats: Record<string, number> = { 256: 200, 512: 60, 1024: 15, 2048: 5 };

function randomMatrix(n: number, seed: number): Float32Array {
  const a = new Float32Array(n * n);
  let s = seed >>> 0;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 4294967296 - 0.5;
  }
  return a;
}

async function main(): Promise<void> {
  header('gemm: C = A·B, f32, row-major (GFLOP/s = 2n³ / time)');
  const ours: Record<number, { ms: number; gflops: number }> = {};
  for (const n of sizes) {
    const a = randomMatrix(n, 1),
      b = randomMatrix(n, 2),
      c = new Float32Array(n * n);
    const opts = { m: n, n, k: n, a, b, c };
    await native().gemm(opts);
    // check 64 sampled entries against float64 dot products before timing
    let worst = 0;
    for (let s = 0; s < 64; s++) {
      const i = (s * 7919) % n,
        j = (s * 104729) % n;
      let acc = 0;
      for (let p = 0; p < n; p++) acc += a[i * n + p] * b[p * n + j];
      worst = Math.max(worst, Math.abs(c[i * n + j] - acc));
    }
    if (worst > 1e-5 * n) throw new Error(`gemm ${n}: result off by ${worst} against the float64 reference`);
    const times = await native().bench.gemm(opts, repeats[n]);
    const ms = median(times);
    ours[n] = { ms, gflops: (2 * n ** 3) / (ms * 1e-3) / 1e9 };
    emit({
      bench: 'gemm',
      impl: 'rlhf',
      shape: `${n}x${n}x${n}`,
      median_ms: ms,
      value: ours[n].gflops,
      unit: 'GFLOP/s',
    });
  }
  const peer = runPeer('torch_gemm.py', { sizes, repeats });
  const theirs: Record<string, number> = {};
  for (const r of peer.results) {
    theirs[r.shape] = r.value;
    emit(r);
  }
  table(
    ['n', 'rlhf GFLOP/s', `torch ${peer.version ?? ''} GFLOP/s`, 'rlhf/torch'],
    sizes.map((n) => [
      String(n),
      ours[n].gflops,
      theirs[`${n}x${n}x${n}`] ?? NaN,
      ratio(ours[n].gflops, theirs[`${n}x${n}x${n}`]),
    ]),
  );
  if (peer.reason) note(`torch: skipped — ${peer.reason}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
