/**
 * GEMM: GFLOP/s of the engine's f32 sgemm and its bf16-weight GEMM (A f32 rounded to bf16, B
 * bf16, f32 accumulation) against torch.matmul at f32 and at bf16 on the same machine with the
 * same thread count, square sizes 256..4096 (C = A·B, row-major, beta = 0), all in one run.
 * Goals: f32 >= 0.9x PyTorch at 1024 and 2048; bf16 >= 1.7x our f32 at 1024..4096 and >= 2x
 * torch's bf16 matmul. --json rows carry dtype ('f32' | 'bf16').
 */
import { native } from '../lib/native.js';
import { emit, header, median, note, quick, ratio, runPeer, table } from './common.js';

const sizes = quick ? [256, 512] : [256, 512, 1024, 2048, 4096];
const repeats: Record<string, number> = { 256: 200, 512: 60, 1024: 15, 2048: 5, 4096: 3 };
type DType = 'f32' | 'bf16';
const dtypes: DType[] = ['f32', 'bf16'];

function randomMatrix(n: number, seed: number): Float32Array {
  const a = new Float32Array(n * n);
  let s = seed >>> 0;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 4294967296 - 0.5;
  }
  return a;
}

/** bf16 bits of each value, rounded to nearest even (as the engine's f32_to_bf16; no NaN here). */
function toBf16(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = bits[i];
    out[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** The value of the bf16 rounding of x (what the engine multiplies). */
function roundBf16(x: number): number {
  return new Float32Array(new Uint32Array([toBf16(new Float32Array([x]))[0] << 16]).buffer)[0];
}

async function main(): Promise<void> {
  header('gemm: C = A·B, row-major (GFLOP/s = 2n³ / time); bf16: A rounded to bf16, B bf16, f32 sums');
  const ours: Record<string, number> = {};
  for (const dtype of dtypes) {
    for (const n of sizes) {
      const a = randomMatrix(n, 1),
        b32 = randomMatrix(n, 2),
        c = new Float32Array(n * n);
      const b = dtype === 'bf16' ? toBf16(b32) : b32;
      const opts = { m: n, n, k: n, a, b, c, dtype };
      await native().gemm(opts);
      // 64 sampled entries against float64 dot products (of the bf16-rounded inputs for bf16)
      const av = dtype === 'bf16' ? roundBf16 : (x: number) => x;
      let worst = 0;
      for (let s = 0; s < 64; s++) {
        const i = (s * 7919) % n,
          j = (s * 104729) % n;
        let acc = 0;
        for (let p = 0; p < n; p++) acc += av(a[i * n + p]) * av(b32[p * n + j]);
        worst = Math.max(worst, Math.abs(c[i * n + j] - acc));
      }
      if (worst > 1e-5 * n) throw new Error(`gemm ${dtype} ${n}: result off by ${worst} against the float64 reference`);
      const times = await native().bench.gemm(opts, repeats[n]);
      const ms = median(times);
      ours[`${dtype} ${n}`] = (2 * n ** 3) / (ms * 1e-3) / 1e9;
      emit({
        bench: 'gemm',
        impl: 'rlhf',
        shape: `${n}x${n}x${n}`,
        median_ms: ms,
        value: ours[`${dtype} ${n}`],
        unit: 'GFLOP/s',
        dtype,
      });
    }
  }
  const peer = runPeer('torch_gemm.py', { sizes: { f32: sizes, bf16: sizes }, repeats, dtypes });
  const theirs: Record<string, number> = {};
  for (const r of peer.results) {
    theirs[`${r.dtype ?? 'f32'} ${r.shape.split('x')[0]}`] = r.value;
    emit(r);
  }
  const torchName = `torch ${peer.version ?? ''}`;
  table(
    [
      'n',
      'f32 GFLOP/s',
      `${torchName} f32`,
      'f32/torch',
      'bf16 GFLOP/s',
      `${torchName} bf16`,
      'bf16/torch bf16',
      'bf16/f32',
    ],
    sizes.map((n) => [
      String(n),
      ours[`f32 ${n}`],
      theirs[`f32 ${n}`] ?? NaN,
      ratio(ours[`f32 ${n}`], theirs[`f32 ${n}`]),
      ours[`bf16 ${n}`],
      theirs[`bf16 ${n}`] ?? NaN,
      ratio(ours[`bf16 ${n}`], theirs[`bf16 ${n}`]),
      ratio(ours[`bf16 ${n}`], ours[`f32 ${n}`]),
    ]),
  );
  note(`bf16 kernel: ${native().buildInfo().gemmBf16Kernel}`);
  if (peer.reason) note(`torch: skipped — ${peer.reason}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
