/**
 * `--nproc N`: ranks started through Open MPI's mpirun. A command given --nproc N > 1 outside
 * mpirun starts `mpirun -np N <node> <this script> <the same arguments without --nproc>` and
 * returns its exit code; inside mpirun (yours, with a hostfile, or Slurm's through MPI) it joins
 * the job's process group. World rank 0 alone shows progress and writes outputs.
 *
 * `--tp K` with more than one process (`--tp-mode auto`, the default, or `processes`): the N
 * processes form N/K data-parallel groups of K tensor-parallel processes (consecutive ranks), each
 * process holding one shard of every model (initDistributed({tensorParallel: K}), models loaded
 * with tensorParallelGroup 'mpi'). In one process, or with `--tp-mode threads`, --tp K splits each
 * process's models over K thread ranks instead.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { initDistributed, launchedByMpi, mpiAvailability, type ProcessGroup } from '../../distributed/index.js';
import { CliError, type CommandContext, type FlagSpec } from '../framework/index.js';

export const NPROC_FLAG: Record<string, FlagSpec> = {
  nproc: {
    type: 'int',
    min: 1,
    default: 1,
    describe:
      'processes, started with mpirun (Open MPI): N data-parallel ranks, each taking its share of every batch; with --tp K, N/K data-parallel groups of K tensor-parallel processes',
  },
  tpMode: {
    type: 'enum',
    values: ['auto', 'processes', 'threads'],
    default: 'auto',
    describe:
      'where --tp K puts the shards: processes (K processes per model, N a multiple of K) or threads (K thread ranks in each process); auto: processes when there is more than one process, else threads',
  },
};

/** The world size mpirun gave this process (1 outside mpirun). */
function mpiWorldSize(): number {
  return launchedByMpi() ? Number(process.env.OMPI_COMM_WORLD_SIZE) : 1;
}

/**
 * Whether --tp splits models over processes or over threads (see the module comment), after
 * checking that the process count is a multiple of K.
 */
export function tensorParallelMode(o: Record<string, unknown>): 'processes' | 'threads' {
  const tp = (o.tp as number | undefined) ?? 1;
  const procs = launchedByMpi() ? mpiWorldSize() : ((o.nproc as number | undefined) ?? 1);
  const mode = (o.tpMode as string | undefined) ?? 'auto';
  if (mode === 'threads' || tp === 1 || (mode === 'auto' && procs === 1)) return 'threads';
  if (procs % tp !== 0)
    throw new CliError(
      `--tp ${tp} over processes needs a process count that is a multiple of ${tp}, got ${launchedByMpi() ? `mpirun -np ${procs}` : `--nproc ${procs}`} (or --tp-mode threads: ${tp} thread ranks in each process)`,
    );
  return 'processes';
}

/**
 * Without --nproc > 1 or mpirun: undefined (one process). Inside mpirun: the job's group, split
 * into tensor-parallel groups of --tp K processes when --tp is over processes; the group returned is
 * this rank's data-parallel group (trainers shard batches over it).
 */
export function joinProcessGroup(o: Record<string, unknown> = {}): ProcessGroup | undefined {
  if (!launchedByMpi()) return undefined;
  const tp = tensorParallelMode(o) === 'processes' ? (o.tp as number) : 1;
  return initDistributed({ backend: 'mpi', tensorParallel: tp });
}

/** True on the rank that shows progress and writes the outputs: world rank 0 (every rank alone). */
export function isWriterRank(group: ProcessGroup | undefined): boolean {
  return !group || group.worldRank === 0;
}

/** True when this invocation must start mpirun instead of training itself. */
export function needsLaunch(o: Record<string, unknown>): boolean {
  if ((o.nproc as number) > 1 && !launchedByMpi()) {
    tensorParallelMode(o); // a bad --nproc/--tp pair is reported before mpirun starts
    return true;
  }
  return false;
}

/** Starts `mpirun -np N` over this same command line (without --nproc) and waits for it. */
export async function launchUnderMpi(o: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const info = mpiAvailability();
  if (!info.loadable) throw new CliError(`--nproc ${o.nproc}: ${info.error}`);
  const args = stripNproc(process.argv.slice(2));
  const mpirunArgs = [
    '-np',
    String(o.nproc),
    '--oversubscribe',
    ...(process.getuid?.() === 0 ? ['--allow-run-as-root'] : []),
    process.execPath,
    process.argv[1],
    ...args,
  ];
  const tp = tensorParallelMode(o) === 'processes' ? (o.tp as number) : 1;
  ctx.stderr.write(
    `rlhf: starting ${o.nproc} ranks${tp > 1 ? ` (${(o.nproc as number) / tp} data-parallel × ${tp} tensor-parallel)` : ''}: mpirun ${mpirunArgs.slice(0, 4).join(' ')} …\n`,
  );
  return new Promise((resolve, reject) => {
    // one libuv pool thread per rank: every MPI call from one thread (see lib/distributed)
    const env = { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '1' };
    const child = spawn('mpirun', mpirunArgs, { stdio: 'inherit', env });
    child.on('error', (e) =>
      reject(new CliError(`--nproc: cannot start mpirun (${e.message}); install Open MPI (openmpi-bin)`)),
    );
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  });
}

/** argv without `--nproc N` / `--nproc=N`. */
export function stripNproc(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--nproc') i++;
    else if (!argv[i].startsWith('--nproc=')) out.push(argv[i]);
  }
  return out;
}
