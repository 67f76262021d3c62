/**
 * Shared benchmark plumbing. Every bench: checks its result against a reference before timing,
 * warms up, takes the median of repeats, prints a table with units and the ratio against the
 * peer, and with --json prints one JSON object per measurement:
 *   {"bench", "impl", "shape", "median_ms", "value", "unit"} (+ "dtype": 'f32' | 'bf16' in gemm and generate)
 * Peers (PyTorch) run as Python scripts in bench/peers/ with the same thread count; a missing
 * peer is printed as skipped with the reason.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { buildInfo } from '../lib/engine/device.js';
import { packageRoot } from '../lib/native.js';

export const argv = process.argv.slice(2);
export const jsonOutput = argv.includes('--json');
export const quick = argv.includes('--quick');

export interface Measurement {
  bench: string;
  impl: string;
  shape: string;
  median_ms: number;
  value: number;
  unit: string;
  /** element type of the weights (the B operand of a GEMM), where a bench compares them */
  dtype?: 'f32' | 'bf16';
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function emit(m: Measurement): void {
  if (jsonOutput) process.stdout.write(JSON.stringify(m) + '\n');
}

/** Prints a header describing the machine, the build and the thread count. */
export function header(title: string): void {
  if (jsonOutput) return;
  const b = buildInfo();
  const cpu = cpus()[0]?.model ?? 'unknown cpu';
  process.stdout.write(
    `\n${title}\n  machine: ${cpu}, ${cpus().length} cores; rlhf ${b.version} ${b.buildSystem} (${b.simd}, ${b.gemmKernel}), ${b.threads} thread(s)\n`,
  );
}

export function table(columns: string[], rows: (string | number)[][]): void {
  if (jsonOutput) return;
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? formatNumber(c) : c)));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const line = (r: string[]) =>
    '  ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  process.stdout.write(line(columns) + '\n' + line(widths.map((w) => '-'.repeat(w))) + '\n');
  for (const r of cells) process.stdout.write(line(r) + '\n');
}

function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Math.abs(x) >= 100) return x.toFixed(1);
  if (Math.abs(x) >= 1) return x.toFixed(2);
  return x.toPrecision(3);
}

export function note(text: string): void {
  if (!jsonOutput) process.stdout.write(`  ${text}\n`);
}

// ---------------------------------------------------------------------------------------------
// PyTorch peer

export interface Peer {
  python?: string;
  reason?: string;
}

let cachedPeer: Peer | undefined;

/** A Python that can import torch: RLHF_PEER_PYTHON, Debian's /usr/bin/python3, or python3. */
export function torchPeer(): Peer {
  if (cachedPeer) return cachedPeer;
  const candidates = [process.env.RLHF_PEER_PYTHON, '/usr/bin/python3', 'python3'].filter((x): x is string => !!x);
  for (const py of candidates) {
    if (py.startsWith('/') && !existsSync(py)) continue;
    const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return (cachedPeer = { python: py });
  }
  return (cachedPeer = { reason: 'PyTorch not found (run bench/peers/install.sh to install Debian python3-torch)' });
}

/** Runs bench/peers/<script> with JSON args; returns its JSON lines (or the reason it could not run). */
export function runPeer(
  script: string,
  args: object,
): { results: Measurement[]; version?: string; blas?: string; reason?: string } {
  const peer = torchPeer();
  if (!peer.python) return { results: [], reason: peer.reason };
  const threads = String(buildInfo().threads);
  // OpenBLAS picks its kernels and blocking from the CPU it detects: no overrides from our environment
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OMP_NUM_THREADS: threads,
    OPENBLAS_NUM_THREADS: threads,
    MKL_NUM_THREADS: threads,
  };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync(
    peer.python,
    [join(packageRoot, 'bench', 'peers', script), JSON.stringify({ ...args, threads: Number(threads) })],
    {
      encoding: 'utf8',
      env,
      maxBuffer: 1 << 26,
    },
  );
  if (r.status !== 0)
    return { results: [], reason: `peer failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` };
  const lines = r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const meta = lines.find((l) => l.meta);
  return { results: lines.filter((l) => !l.meta), version: meta?.version, blas: meta?.blas };
}

export function ratio(ours: number, theirs: number | undefined): string {
  return theirs === undefined ? 'n/a' : `${(ours / theirs).toFixed(2)}x`;
}
