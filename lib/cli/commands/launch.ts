/**
 * `--nproc N`: data-parallel ranks started through Open MPI's mpirun. A command given --nproc N > 1
 * outside mpirun starts `mpirun -np N <node> <this script> <the same arguments without --nproc>`
 * and returns its exit code; inside mpirun (yours, with a hostfile, or Slurm's through MPI) it joins
 * the job's process group. Rank 0 alone shows progress and writes outputs.
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
    describe: 'data-parallel processes, started with mpirun (Open MPI); each takes its share of every batch',
  },
};

/** Without --nproc > 1 or mpirun: undefined (one process). Inside mpirun: the job's group. */
export function joinProcessGroup(): ProcessGroup | undefined {
  if (!launchedByMpi()) return undefined;
  return initDistributed({ backend: 'mpi' });
}

/** True when this invocation must start mpirun instead of training itself. */
export function needsLaunch(o: Record<string, unknown>): boolean {
  return (o.nproc as number) > 1 && !launchedByMpi();
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
  ctx.stderr.write(`rlhf: starting ${o.nproc} ranks: mpirun ${mpirunArgs.slice(0, 4).join(' ')} …\n`);
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
