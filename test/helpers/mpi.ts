// What the multi-process tests share: whether Open MPI can run here, and the environment their
// mpirun children get (one compute thread per rank; root and oversubscription allowed, as CI runs
// as root on 2 cores).
import { spawnSync } from 'node:child_process';
import { native } from '../../lib/native.js';

export const haveMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;

/** tap's skip value: false where mpirun and the addon's MPI part both load, else the reason */
export const mpiSkip: false | string =
  haveMpirun && native().mpiInfo().loadable ? false : 'Open MPI not installed (scripts/install-mpi.sh)';

/** process.env plus the ranks' settings; `extra` overrides or adds (e.g. UV_THREADPOOL_SIZE) */
export function mpiEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    RLHF_THREADS: '1',
    OMPI_ALLOW_RUN_AS_ROOT: '1',
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
    OMPI_MCA_rmaps_base_oversubscribe: '1',
    ...extra,
  };
}
