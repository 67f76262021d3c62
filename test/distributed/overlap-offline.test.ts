// The offline trainers' overlapped gradient all-reduce (overlapAllReduce, default on; the shared
// step loop, lib/train/loop.ts): at `mpirun -np 2`, SFT, DPO, the reward model and the process
// reward model end with bitwise the weights of the plain path (overlapAllReduce false: backward,
// then allReduceGradients), on both ranks, in one bucket (the default 25 MiB, larger than the
// model) and in 4 KiB buckets (several per layer), with the overlapped backward taken once per
// step on every rank (counted in the worker); and DPO whose every step ends on a one-pair
// micro-batch, so that rank 1's share of it is empty and it meets rank 0's overlapped all-reduce in
// the plain one; and SFT of a LoRA model, which the backward hook does not take: the plain path,
// with a 'log' event saying why. Skipped where Open MPI is absent (scripts/install-mpi.sh).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, packageRoot } from '../../lib/native.js';

const haveMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const skip = haveMpirun && native().mpiInfo().loadable ? false : 'Open MPI not installed (scripts/install-mpi.sh)';
const fixture = (name: string) => join(packageRoot, 'test', 'distributed', 'fixtures', name);
const STEPS = 4;

/** [worker, its arguments after the output file] per trainer */
const trainers: Record<string, [string, string[]]> = {
  sft: ['sft-worker.mjs', [String(STEPS)]],
  dpo: ['dpo-worker.mjs', [String(STEPS)]],
  rm: ['scalar-worker.mjs', ['rm', String(STEPS)]],
  prm: ['scalar-worker.mjs', ['prm', String(STEPS)]],
};

function run(out: string, trainer: string, overlap: boolean, bucket: number | undefined, batch?: number, lora = false) {
  const [worker, args] = trainers[trainer];
  const env = {
    ...process.env,
    RLHF_THREADS: '1',
    UV_THREADPOOL_SIZE: '1',
    RLHF_TEST_OVERLAP: overlap ? '1' : '0',
    RLHF_TEST_BUCKET: bucket ? String(bucket) : '',
    RLHF_TEST_BATCH: batch ? String(batch) : '',
    RLHF_TEST_LORA: lora ? '1' : '0',
    OMPI_ALLOW_RUN_AS_ROOT: '1',
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
    OMPI_MCA_rmaps_base_oversubscribe: '1',
  };
  const exported = ['RLHF_TEST_OVERLAP', 'RLHF_TEST_BUCKET', 'RLHF_TEST_BATCH', 'RLHF_TEST_LORA'].flatMap((v) => [
    '-x',
    v,
  ]);
  const argv = ['-np', '2', ...exported, process.execPath, fixture(worker)];
  const r = spawnSync('mpirun', [...argv, out, ...args], { encoding: 'utf8', env, timeout: 240_000 });
  const lines = (r.stdout ?? '')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { rank: number; steps: number; digest: string; overlapped: number; logs?: string[] })
    .sort((a, b) => a.rank - b.rank);
  return { status: r.status, output: (r.stderr ?? '') + (r.stdout ?? ''), lines };
}

t.test(
  'SFT, DPO, RM and PRM at 2 ranks: overlapped all-reduce = plain all-reduce, bit for bit',
  { skip, timeout: 600_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-overlap-offline-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    // [trainer, bucket bytes, batchSize (the worker's default), overlapped backwards per rank]
    const cases: [string, number | undefined, number | undefined, number[]][] = [
      ['sft', undefined, undefined, [STEPS, STEPS]],
      ['sft', 4096, undefined, [STEPS, STEPS]],
      ['dpo', undefined, undefined, [STEPS, STEPS]],
      ['dpo', 4096, undefined, [STEPS, STEPS]],
      // 30 pairs in micro-batches of 29 and 1, two per step: rank 1 has no share of the second
      ['dpo', 4096, 29, [STEPS, 0]],
      ['rm', 4096, undefined, [STEPS, STEPS]],
      ['prm', 4096, undefined, [STEPS, STEPS]],
    ];
    for (const [trainer, bucket, batch, overlapped] of cases) {
      const label = `${trainer}${bucket ? `, ${bucket} B buckets` : ''}${batch ? `, batches of ${batch}` : ''}`;
      const name = `${trainer}-${bucket}-${batch}`;
      const on = run(join(dir, `${name}-on.bin`), trainer, true, bucket, batch);
      const off = run(join(dir, `${name}-off.bin`), trainer, false, bucket, batch);
      t.equal(on.status, 0, on.status ? on.output : `${label}: overlapped`);
      t.equal(off.status, 0, off.status ? off.output : `${label}: plain`);
      t.same(
        on.lines.map((l) => l.steps),
        [STEPS, STEPS],
        `${label}: both ranks ran ${STEPS} steps`,
      );
      t.same(
        on.lines.map((l) => l.overlapped),
        overlapped,
        `${label}: overlapped backwards per rank (once per step where its share of the last micro-batch is not empty)`,
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

t.test(
  'SFT of a LoRA model at 2 ranks: the plain all-reduce, and a log event says why',
  { skip, timeout: 300_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-overlap-lora-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const on = run(join(dir, 'on.bin'), 'sft', true, 4096, undefined, true);
    const off = run(join(dir, 'off.bin'), 'sft', false, 4096, undefined, true);
    t.equal(on.status, 0, on.status ? on.output : 'default options');
    t.equal(off.status, 0, off.status ? off.output : 'overlapAllReduce false');
    t.same(
      on.lines.map((l) => l.overlapped),
      [0, 0],
      'no overlapped backward',
    );
    for (const l of on.lines)
      t.ok(
        l.logs!.some(
          (m) => m === 'gradient all-reduce after backward, not overlapped (a LoRA model (its base is frozen))',
        ),
        `rank ${l.rank}: the log event names the reason`,
      );
    t.ok(
      off.lines.every((l) => l.logs!.some((m) => m.endsWith('not overlapped (overlapAllReduce false)'))),
      'overlapAllReduce false is named too',
    );
    t.equal(on.lines[0].digest, on.lines[1].digest, 'both ranks hold the same weights');
    t.equal(on.lines[0].digest, off.lines[0].digest, 'the same run either way');
  },
);
