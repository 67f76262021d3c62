/** rlhf info: what the native engine was built with, and a smoke check. */
import { AdamW, adamwStepReference, ADAMW_DEFAULTS } from '../../engine/adamw.js';
import { buildInfo } from '../../engine/device.js';
import { gemm, gemmReference } from '../../engine/gemm.js';
import type { CommandSpec, CommandHandler } from '../framework/index.js';

export const infoSpec: CommandSpec = {
  name: 'info',
  summary: 'print what the native engine was built with and what it can run on',
  flags: {
    json: { type: 'bool', describe: 'print it as JSON' },
    check: { type: 'bool', describe: 'also run a smoke check: a GEMM and an AdamW step against their references' },
  },
  examples: ['rlhf info --check'],
};

export const infoCommand: CommandHandler = async (o, ctx) => {
  const b = buildInfo();
  if (o.json) {
    ctx.stdout.write(JSON.stringify(b, null, 2) + '\n');
  } else {
    const cuda = b.cudaCompiled
      ? `compiled (sm_${b.cudaArchitectures.join(', sm_')}), ${b.cudaDevices} device(s)${b.cudaDevices ? '' : ` — ${b.cudaUnavailableReason}`}`
      : `not compiled (${b.cudaUnavailableReason ?? 'CPU-only build'})`;
    ctx.stdout.write(
      [
        `rlhf ${b.version} (${b.buildSystem} build, ${b.compiler}, N-API ${b.napiVersion})`,
        `  backends:  ${b.backends.join(', ')}`,
        `  cpu:       ${b.simd} (gemm kernel ${b.gemmKernel}), ${b.threads} thread(s)`,
        `  cuda:      ${cuda}`,
      ].join('\n') + '\n',
    );
  }
  if (!o.check) return 0;
  const n = 97;
  const a = new Float32Array(n * n).map((_, i) => Math.sin(i)), bm = new Float32Array(n * n).map((_, i) => Math.cos(i));
  const c = new Float32Array(n * n), ref = new Float32Array(n * n);
  await gemm({ m: n, n, k: n, a, b: bm, c });
  gemmReference({ m: n, n, k: n, a, b: bm, c: ref });
  const gemmErr = c.reduce((worst, x, i) => Math.max(worst, Math.abs(x - ref[i])), 0);
  const params = new Float32Array(1000).map((_, i) => Math.sin(i)), grads = params.map((x) => 0.1 * x);
  const p = Float32Array.from(params), m = new Float32Array(1000), v = new Float32Array(1000);
  const opt = new AdamW({ params, grads }, { lr: 1e-2, weightDecay: 0.1 });
  await opt.step();
  opt.dispose();
  adamwStepReference(p, grads, m, v, 1, { ...ADAMW_DEFAULTS, lr: 1e-2, weightDecay: 0.1 });
  const adamErr = params.reduce((worst, x, i) => Math.max(worst, Math.abs(x - p[i])), 0);
  const ok = gemmErr < 1e-4 && adamErr === 0;
  ctx.stdout.write(`smoke check: gemm ${n}x${n}x${n} max |err| ${gemmErr.toExponential(2)}, adamw step max |err| ${adamErr} — ${ok ? 'passed' : 'FAILED'}\n`);
  return ok ? 0 : 1;
};
