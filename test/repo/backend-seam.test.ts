// The backend seam holds: native/model calls kernels only through its Backend (be_->…), never a
// native/cpu kernel directly, so a model on another device never runs a CPU kernel on device
// memory. Allowed: the CPU backend itself (backend_cpu.cc), cpu:: types, and the host-side math
// on host memory listed below (sampling from downloaded logits; tensor parallelism, CPU only).
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';

const HOST_SIDE = new Set(['sample_token', 'row_logsumexp', 'exp_approx']);

t.test('native/model calls no cpu:: kernel except through the Backend', async (t) => {
  const dir = join(packageRoot, 'native', 'model');
  const calls: string[] = [];
  let scanned = 0;
  for (const name of readdirSync(dir).filter((n) => /\.(cc|h)$/.test(n) && n !== 'backend_cpu.cc')) {
    readFileSync(join(dir, name), 'utf8')
      .split('\n')
      .forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, '');
        for (const m of code.matchAll(/\bcpu::([a-z][a-z0-9_]*)\s*\(/g))
          if (!HOST_SIDE.has(m[1])) calls.push(`native/model/${name}:${i + 1}: cpu::${m[1]}(`);
      });
    scanned++;
  }
  t.ok(scanned >= 10, `scanned ${scanned} files`);
  t.same(calls, [], 'use be_->' + '<op>( (native/model/backend.h) instead');
});

t.test('the scan sees a direct call (it can fail)', async (t) => {
  const line = '  cpu::rmsnorm_forward(a.h, a.rstd1, x_in, w(o.in_norm), N, C, eps);';
  t.equal([...line.matchAll(/\bcpu::([a-z][a-z0-9_]*)\s*\(/g)].length, 1);
});
