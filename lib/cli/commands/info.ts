/** rlhf info: what the native engine was built with, and a smoke check. */
import { AdamW, adamwStepReference, ADAMW_DEFAULTS } from '../../engine/adamw.js';
import { buildInfo } from '../../engine/device.js';
import { gemm, gemmReference } from '../../engine/gemm.js';
import { resolveLora } from '../../engine/lora.js';
import { estimateTrainingMemory, parameterCount } from '../../engine/memory.js';
import { CliError, type CommandSpec, type CommandHandler } from '../framework/index.js';
import { loraFlags, presetConfig, readModelConfig } from './shared.js';

export const infoSpec: CommandSpec = {
  name: 'info',
  summary: 'print what the native engine was built with and what it can run on',
  flags: {
    json: { type: 'bool', describe: 'print it as JSON' },
    check: { type: 'bool', describe: 'also run a smoke check: a GEMM and an AdamW step against their references' },
    memory: {
      type: 'bool',
      describe: 'estimate the engine memory of one training step of --model (or --init) at --batch-size × --seq-len',
    },
    model: {
      type: 'checkpoint',
      placeholder: 'dir',
      describe: 'with --memory: a checkpoint folder (only its config.json is read)',
    },
    init: { type: 'enum', values: ['tiny', 'small'], describe: 'with --memory: a built-in preset instead of --model' },
    batchSize: { type: 'int', min: 1, default: 8, describe: 'with --memory: rows per step' },
    seqLen: { type: 'int', min: 1, default: 512, describe: 'with --memory: tokens per row' },
    gradientCheckpointing: { type: 'bool', describe: 'with --memory: as trained with --gradient-checkpointing' },
    nproc: {
      type: 'int',
      min: 1,
      default: 1,
      describe:
        'with --memory: per rank of N data-parallel ranks (--batch-size the global micro-batch, AdamW moments sharded: ZeRO-1)',
    },
    tp: {
      type: 'int',
      min: 1,
      max: 64,
      default: 1,
      placeholder: 'K',
      describe:
        'with --memory: per process of a model split over K tensor-parallel processes (with --nproc N: N/K data-parallel groups, as the training commands run them)',
    },
    loraRank: {
      type: 'int',
      min: 1,
      max: 4096,
      placeholder: 'r',
      describe: 'with --memory: as trained with LoRA adapters of rank r',
    },
    loraModules: {
      type: 'list',
      placeholder: 'q_proj,v_proj',
      describe: 'with --memory and --lora-rank: the adapted projections (all-linear for every one)',
    },
  },
  examples: [
    'rlhf info --check',
    'rlhf info --memory --model runs/sft/model --batch-size 8 --seq-len 1024 --gradient-checkpointing',
    'rlhf info --memory --model runs/sft/model --batch-size 8 --seq-len 1024 --nproc 4',
  ],
};

async function memoryReport(o: Record<string, unknown>, ctx: Parameters<CommandHandler>[1]): Promise<number> {
  if (!o.model === !o.init) throw new CliError('--memory needs one of --model <dir> or --init tiny|small');
  const config = o.model ? await readModelConfig(o.model as string, '--model') : presetConfig(o.init as string);
  const B = o.batchSize as number,
    T = o.seqLen as number,
    ckpt = o.gradientCheckpointing === true;
  let lora;
  try {
    lora = resolveLora('rlhf info', loraFlags(o), config);
  } catch (e) {
    throw new CliError(
      (e as Error).message.replace(/^rlhf info: expected options\.lora\.modules(\[\d+\])?/, '--lora-modules: expected'),
    );
  }
  const tp = o.tp as number;
  const procs = (o.nproc as number) === 1 ? tp : (o.nproc as number); // --tp K alone: one group of K processes
  if (procs % tp !== 0) throw new CliError(`--tp ${tp} needs --nproc to be a multiple of it, got --nproc ${procs}`);
  const nproc = procs / tp; // data-parallel ranks
  const opts = { tensorParallel: tp };
  let e;
  try {
    e = estimateTrainingMemory(config, { batch: B, seqLen: T, gradientCheckpointing: ckpt, lora, nproc, ...opts });
  } catch (err) {
    throw new CliError(
      (err as Error).message.replace(/^estimateTrainingMemory: expected options\.tensorParallel/, '--tp: expected it'),
    );
  }
  const mib = (x: number) => `${(x / 2 ** 20).toFixed(1).padStart(9)} MiB`;
  const other = ckpt
    ? undefined
    : estimateTrainingMemory(config, { batch: B, seqLen: T, gradientCheckpointing: true, lora, nproc, ...opts });
  const unsharded = nproc > 1 ? estimateTrainingMemory(config, { batch: B, seqLen: T, lora, ...opts }).optimizer : 0;
  const p = parameterCount(config);
  ctx.stdout.write(
    [
      `one training step of ${config.architecture} (${(p / 1e6).toFixed(1)}M parameters), batch ${B} × ${T} tokens${tp > 1 ? `, per process of ${tp} tensor-parallel processes (rank 0's shard, the largest)` : ''}${nproc > 1 ? ` over ${nproc} data-parallel ranks (per rank: ${Math.ceil(B / nproc)} rows at most)` : ''}, AdamW${ckpt ? ', gradient checkpointing' : ''}${lora ? `, LoRA r${lora.rank} on ${lora.modules.join(', ')}` : ''}:`,
      `  parameters     ${mib(e.parameters)}`,
      `  gradients      ${mib(e.gradients)}`,
      `  AdamW moments  ${mib(e.optimizer)}${nproc > 1 ? `   (${mib(unsharded).trim()} unsharded: ZeRO-1 keeps 1/${nproc} per rank)` : ''}`,
      `  activations    ${mib(e.activations)}${other ? `   (${mib(other.activations).trim()} with --gradient-checkpointing)` : ''}`,
      `  LM head        ${mib(e.lmHead)}`,
      `  outputs        ${mib(e.outputs)}`,
      `  scratch peak   ${mib(e.scratchPeak)}`,
      `  peak           ${mib(e.peak)}${other ? `   (${mib(other.peak).trim()} with --gradient-checkpointing)` : ''}`,
      "  (the engine's own buffers, exact; Node's heap and the GEMM packing workspace, a few MiB per thread, come on top;",
      '   PPO holds a policy, a reference, a critic and a reward model: the parameters of each)',
    ].join('\n') + '\n',
  );
  return 0;
}

export const infoCommand: CommandHandler = async (o, ctx) => {
  if (o.memory) return memoryReport(o, ctx);
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
        `  mpi:       ${b.mpi.available ? `${b.mpi.library} (--nproc N available)` : `not available (${b.mpi.reason})`}`,
        `  nccl:      ${b.nccl.available ? `${b.nccl.library} (version ${b.nccl.version})` : `not available (${b.nccl.reason})`}`,
      ].join('\n') + '\n',
    );
  }
  if (!o.check) return 0;
  const n = 97;
  const a = new Float32Array(n * n).map((_, i) => Math.sin(i)),
    bm = new Float32Array(n * n).map((_, i) => Math.cos(i));
  const c = new Float32Array(n * n),
    ref = new Float32Array(n * n);
  await gemm({ m: n, n, k: n, a, b: bm, c });
  gemmReference({ m: n, n, k: n, a, b: bm, c: ref });
  const gemmErr = c.reduce((worst, x, i) => Math.max(worst, Math.abs(x - ref[i])), 0);
  const params = new Float32Array(1000).map((_, i) => Math.sin(i)),
    grads = params.map((x) => 0.1 * x);
  const p = Float32Array.from(params),
    m = new Float32Array(1000),
    v = new Float32Array(1000);
  const opt = new AdamW({ params, grads }, { lr: 1e-2, weightDecay: 0.1 });
  await opt.step();
  opt.dispose();
  adamwStepReference(p, grads, m, v, 1, { ...ADAMW_DEFAULTS, lr: 1e-2, weightDecay: 0.1 });
  const adamErr = params.reduce((worst, x, i) => Math.max(worst, Math.abs(x - p[i])), 0);
  const ok = gemmErr < 1e-4 && adamErr === 0;
  ctx.stdout.write(
    `smoke check: gemm ${n}x${n}x${n} max |err| ${gemmErr.toExponential(2)}, adamw step max |err| ${adamErr} — ${ok ? 'passed' : 'FAILED'}\n`,
  );
  return ok ? 0 : 1;
};
