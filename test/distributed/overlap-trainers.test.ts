// The policy-gradient trainers' overlapped gradient all-reduce (overlapAllReduce, default on): at
// `mpirun -np 2`, PPO (policy with PTX, critic) and GRPO end with bitwise the weights of the plain
// path (overlapAllReduce false: backward, then allReduceGradients), on every rank, in one bucket
// (the default 25 MiB, larger than the model) and in 4 KiB buckets (several per layer), with the
// overlapped backward actually taken (counted in the worker) and ranks with an empty share of a
// minibatch meeting the others' overlapped all-reduce in the plain one. Skipped where Open MPI is
// absent (scripts/install-mpi.sh).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, packageRoot } from '../../lib/native.js';

const haveMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const skip = haveMpirun && native().mpiInfo().loadable ? false : 'Open MPI not installed (scripts/install-mpi.sh)';
const worker = join(packageRoot, 'test', 'distributed', 'fixtures', 'pg-worker.mjs');

function run(out: string, method: string, overlap: boolean, bucket: number | undefined) {
  const env = {
    ...process.env,
    RLHF_THREADS: '1',
    UV_THREADPOOL_SIZE: '1',
    RLHF_TEST_OVERLAP: overlap ? '1' : '0',
    RLHF_TEST_BUCKET: bucket ? String(bucket) : '',
    OMPI_ALLOW_RUN_AS_ROOT: '1',
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
    OMPI_MCA_rmaps_base_oversubscribe: '1',
  };
  const argv = [
    '-np',
    '2',
    '-x',
    'RLHF_TEST_OVERLAP',
    '-x',
    'RLHF_TEST_BUCKET',
    process.execPath,
    worker,
    out,
    method,
    '2',
  ];
  const r = spawnSync('mpirun', argv, { encoding: 'utf8', env, timeout: 240_000 });
  const lines = (r.stdout ?? '')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { rank: number; digest: string; overlapped: number; iterations: number })
    .sort((a, b) => a.rank - b.rank);
  return { status: r.status, output: (r.stderr ?? '') + (r.stdout ?? ''), lines };
}

t.test(
  'PPO and GRPO at 2 ranks: overlapped all-reduce = plain all-reduce, bit for bit',
  { skip, timeout: 600_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-overlap-pg-'));
    const cases: [string, number | undefined][] = [
      ['ppo', undefined],
      ['grpo', undefined],
      ['ppo', 4096],
    ];
    for (const [method, bucket] of cases) {
      const label = `${method}${bucket ? `, ${bucket} B buckets` : ''}`;
      const on = run(join(dir, `${method}-${bucket}-on.bin`), method, true, bucket);
      const off = run(join(dir, `${method}-${bucket}-off.bin`), method, false, bucket);
      t.equal(on.status, 0, on.status ? on.output : `${label}: overlapped`);
      t.equal(off.status, 0, off.status ? off.output : `${label}: plain`);
      t.same(
        on.lines.map((l) => l.iterations),
        [2, 2],
        `${label}: both ranks ran 2 iterations`,
      );
      t.ok(
        on.lines.every((l) => l.overlapped > 0),
        `${label}: every rank took the overlapped backward (${on.lines.map((l) => l.overlapped).join(', ')} times)`,
      );
      t.same(
        off.lines.map((l) => l.overlapped),
        [0, 0],
        `${label}: overlapAllReduce false takes the plain path`,
      );
      t.equal(on.lines[0].digest, on.lines[1].digest, `${label}: both ranks hold the same weights`);
      t.equal(on.lines[0].digest, off.lines[0].digest, `${label}: overlapped = plain, bit for bit`);
    }
  },
);
