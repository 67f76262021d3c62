/**
 * AdamW: one fused step over n fp32 parameters against torch.optim.AdamW(foreach=True) and
 * against the memory bandwidth measured in the same run. Effective bandwidth = 28 bytes/parameter
 * / step time (read p, g, m, v; write p, m, v). Goals: >= 3x PyTorch, >= 70% of the
 * measured bandwidth.
 *
 * Two ceilings are measured on 256 MiB, both counted as bytes read + bytes written:
 *   copy          dst[i] = src[i]   (the "large copy"; writing a separate buffer also makes
 *                                    the CPU read dst's lines first, traffic this count leaves out)
 *   scale in place x[i] = s·x[i]    (reads and writes the same lines, as AdamW does)
 * The percentage is taken against the higher of the two, the tighter bound.
 */
import { adamwStepReference, ADAMW_DEFAULTS } from '../lib/engine/adamw.js';
import { native } from '../lib/native.js';
import { emit, header, median, note, quick, ratio, runPeer, table } from './common.js';

const M = 1 << 20;
const sizes = quick ? [1 * M, 4 * M] : [1 * M, 4 * M, 16 * M, 64 * M];
const repeats: Record<string, number> = { [M]: 100, [4 * M]: 40, [16 * M]: 12, [64 * M]: 5 };

function fill(n: number, seed: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * scale;
  }
  return a;
}

async function checkAgainstReference(): Promise<void> {
  const n = 4097;
  const p = fill(n, 1, 2),
    g = fill(n, 2, 0.02),
    m = new Float32Array(n),
    v = new Float32Array(n);
  const rp = Float32Array.from(p),
    rm = new Float32Array(n),
    rv = new Float32Array(n);
  await native().bench.adamw({ params: p, grads: g, m, v, lr: 1e-3, weightDecay: 0.01, repeats: 2 }); // warm-up = step 1, repeats = steps 2, 3
  const o = { ...ADAMW_DEFAULTS, lr: 1e-3, weightDecay: 0.01 };
  for (const step of [1, 2, 3]) adamwStepReference(rp, g, rm, rv, step, o);
  for (let i = 0; i < n; i++)
    if (p[i] !== rp[i]) throw new Error(`adamw: parameter ${i} differs from the reference (${p[i]} vs ${rp[i]})`);
}

async function main(): Promise<void> {
  header('adamw: one fused step over n fp32 parameters (28 bytes moved per parameter)');
  await checkAgainstReference();
  const copyN = 64 * M;
  const src = fill(copyN, 3, 1),
    dst = new Float32Array(copyN);
  const copyMs = median(await native().bench.copy({ src, dst, repeats: 10 }));
  const copyOnlyGBs = (2 * copyN * 4) / (copyMs * 1e-3) / 1e9;
  emit({
    bench: 'adamw',
    impl: 'copy',
    shape: `${copyN * 4} bytes`,
    median_ms: copyMs,
    value: copyOnlyGBs,
    unit: 'GB/s',
  });
  const scaleMs = median(await native().bench.scaleInPlace({ x: dst, repeats: 10 }));
  const scaleGBs = (2 * copyN * 4) / (scaleMs * 1e-3) / 1e9;
  emit({
    bench: 'adamw',
    impl: 'scale-in-place',
    shape: `${copyN * 4} bytes`,
    median_ms: scaleMs,
    value: scaleGBs,
    unit: 'GB/s',
  });
  const copyGBs = Math.max(copyOnlyGBs, scaleGBs);

  const ours: Record<number, { ms: number; gbs: number }> = {};
  for (const n of sizes) {
    const p = fill(n, 4, 2),
      g = fill(n, 5, 0.02),
      m = new Float32Array(n),
      v = new Float32Array(n);
    const ms = median(
      await native().bench.adamw({ params: p, grads: g, m, v, lr: 1e-3, weightDecay: 0.01, repeats: repeats[n] }),
    );
    ours[n] = { ms, gbs: (28 * n) / (ms * 1e-3) / 1e9 };
    emit({ bench: 'adamw', impl: 'rlhf', shape: `${n}`, median_ms: ms, value: ours[n].gbs, unit: 'GB/s@28B' });
  }
  const peer = runPeer('torch_adamw.py', { sizes, repeats });
  const theirs: Record<string, { ms: number; gbs: number }> = {};
  for (const r of peer.results) {
    theirs[r.shape] = { ms: r.median_ms, gbs: r.value };
    emit(r);
  }
  table(
    ['params', 'rlhf ms', 'rlhf GB/s', '% of ceiling', `torch ${peer.version ?? ''} ms`, 'speed-up vs torch'],
    sizes.map((n) => [
      `${n / M}M`,
      ours[n].ms,
      ours[n].gbs,
      `${((100 * ours[n].gbs) / copyGBs).toFixed(0)}%`,
      theirs[`${n}`]?.ms ?? NaN,
      ratio(theirs[`${n}`]?.ms ?? NaN, ours[n].ms),
    ]),
  );
  note(
    `bandwidth on ${(copyN * 4) / 2 ** 20} MiB, read + write bytes: copy ${copyOnlyGBs.toFixed(1)} GB/s, scale in place ${scaleGBs.toFixed(1)} GB/s (ceiling used: ${copyGBs.toFixed(1)} GB/s)`,
  );
  if (peer.reason) note(`torch: skipped — ${peer.reason}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
