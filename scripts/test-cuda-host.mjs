#!/usr/bin/env node
// `npm run test:cuda-host`: every CUDA kernel (native/cuda/*.cu) compiled by the host C++ compiler
// against the emulation harness (native/cuda/emu) and run against the CPU kernels on random inputs
// (native/cuda/tests). Builds the test_cuda_host target in build-native/ (the CPU CMake build that
// `npm test` uses) and prints the binary's "N passed, N failed, N skipped" line last.
// Exported for scripts/test.mjs: runCudaHostTests() -> { passed, failed, skipped, ok }.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = join(root, 'build-native');

function run(cmd, argv, capture) {
  const r = spawnSync(cmd, argv, {
    cwd: root,
    encoding: 'utf8',
    stdio: capture ? 'pipe' : 'inherit',
    maxBuffer: 1 << 28,
  });
  if (r.error) throw r.error;
  return r;
}

export function runCudaHostTests({ configure = true } = {}) {
  mkdirSync(buildDir, { recursive: true });
  if (configure) {
    const c = run('cmake', ['-S', root, '-B', buildDir, '-DRLHF_CUDA=OFF', '-DCMAKE_BUILD_TYPE=Release'], true);
    if (c.status !== 0) {
      process.stdout.write(c.stdout + c.stderr + 'FAILED: cmake configure\n');
      return { passed: 0, failed: 1, skipped: 0, ok: false };
    }
  }
  const b = run('cmake', ['--build', buildDir, '--target', 'test_cuda_host', '--parallel', '2'], true);
  if (b.status !== 0) {
    process.stdout.write(b.stdout + b.stderr + 'FAILED: building test_cuda_host\n');
    return { passed: 0, failed: 1, skipped: 0, ok: false };
  }
  const t = run(join(buildDir, 'test_cuda_host'), [], true);
  const out = (t.stdout ?? '') + (t.stderr ?? '');
  process.stdout.write(out);
  const m = out.match(/(\d+) passed, (\d+) failed, (\d+) skipped/);
  if (!m) return { passed: 0, failed: 1, skipped: 0, ok: false };
  const r = { passed: Number(m[1]), failed: Number(m[2]), skipped: Number(m[3]) };
  if (t.status !== 0 && r.failed === 0) r.failed = 1; // crashed after printing
  return { ...r, ok: t.status === 0 && r.failed === 0 };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = runCudaHostTests();
  process.stdout.write(`${r.passed} passed, ${r.failed} failed\n`);
  process.exitCode = r.ok ? 0 : 1;
}
