#!/usr/bin/env node
/**
 * The `rlhf` command. `rlhf <command> --help` for each command's flags.
 */
import { AdamW, adamwStepReference, ADAMW_DEFAULTS } from '../engine/adamw.js';
import { buildInfo } from '../engine/device.js';
import { gemm, gemmReference } from '../engine/gemm.js';

const COMMANDS: Record<string, { summary: string; run: (argv: string[]) => Promise<number> }> = {
  info: { summary: 'print what the native engine was built with and what it can run on', run: info },
};

async function info(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(
      [
        'usage: rlhf info [--json] [--check]',
        '',
        'Prints the addon build: version, backends, SIMD level, CUDA, threads.',
        '  --json   print it as JSON',
        '  --check  also run a smoke check: a GEMM and an AdamW step against their references',
        '',
        'example: npx rlhf info --check',
        '',
      ].join('\n'),
    );
    return 0;
  }
  const b = buildInfo();
  if (argv.includes('--json')) {
    process.stdout.write(JSON.stringify(b, null, 2) + '\n');
    return 0;
  }
  const cuda = b.cudaCompiled
    ? `compiled (sm_${b.cudaArchitectures.join(', sm_')}), ${b.cudaDevices} device(s)${b.cudaDevices ? '' : ` — ${b.cudaUnavailableReason}`}`
    : `not compiled (${b.cudaUnavailableReason ?? 'CPU-only build'})`;
  const lines = [
    `rlhf ${b.version} (${b.buildSystem} build, ${b.compiler}, N-API ${b.napiVersion})`,
    `  backends:  ${b.backends.join(', ')}`,
    `  cpu:       ${b.simd} (gemm kernel ${b.gemmKernel}), ${b.threads} thread(s)`,
    `  cuda:      ${cuda}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  if (argv.includes('--check')) return smokeCheck();
  return 0;
}

/** A GEMM and an AdamW step on the native engine, compared with the plain references. */
async function smokeCheck(): Promise<number> {
  const n = 97;
  const a = new Float32Array(n * n).map((_, i) => Math.sin(i)), b = new Float32Array(n * n).map((_, i) => Math.cos(i));
  const c = new Float32Array(n * n), ref = new Float32Array(n * n);
  await gemm({ m: n, n, k: n, a, b, c });
  gemmReference({ m: n, n, k: n, a, b, c: ref });
  const gemmErr = c.reduce((worst, x, i) => Math.max(worst, Math.abs(x - ref[i])), 0);
  const params = new Float32Array(1000).map((_, i) => Math.sin(i)), grads = params.map((x) => 0.1 * x);
  const p = Float32Array.from(params), m = new Float32Array(1000), v = new Float32Array(1000);
  const opt = new AdamW({ params, grads }, { lr: 1e-2, weightDecay: 0.1 });
  await opt.step();
  opt.dispose();
  adamwStepReference(p, grads, m, v, 1, { ...ADAMW_DEFAULTS, lr: 1e-2, weightDecay: 0.1 });
  const adamErr = params.reduce((worst, x, i) => Math.max(worst, Math.abs(x - p[i])), 0);
  const ok = gemmErr < 1e-4 && adamErr === 0;
  process.stdout.write(
    `smoke check: gemm ${n}x${n}x${n} max |err| ${gemmErr.toExponential(2)}, adamw step max |err| ${adamErr} — ${ok ? 'passed' : 'FAILED'}\n`,
  );
  return ok ? 0 : 1;
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    'usage: rlhf <command> [flags]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'rlhf <command> --help shows the flags of a command.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(usage() + '\n');
    return command ? 0 : 1;
  }
  const entry = COMMANDS[command];
  if (!entry) {
    process.stderr.write(`rlhf: unknown command "${command}"\n\n${usage()}\n`);
    return 2;
  }
  return entry.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as Error & { code?: string };
    process.stderr.write(`rlhf: ${e.message}${e.code ? ` [${e.code}]` : ''}\n`);
    if (process.env.RLHF_DEBUG) process.stderr.write(`${e.stack}\n`);
    process.exitCode = 1;
  },
);
