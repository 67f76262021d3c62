// Data parallelism of the reward, process-reward, PPO and group trainers over Open MPI: `mpirun -np 2`
// against one process on the same global batch (ranks bit for bit alike, losses and weights within
// fp32 summation-order tolerance), and an exact resume at 2 ranks. Open MPI is installed by .ci/run
// (scripts/install-mpi.sh); where mpirun is absent these tests are skipped with the reason.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { mpiEnv, mpiSkip } from '../helpers/mpi.js';

const skip = mpiSkip;
const env = mpiEnv();
const fixture = (name: string) => join(packageRoot, 'test', 'distributed', 'fixtures', name);

/** Runs a worker alone (np 0) or under `mpirun -np np`; its JSON lines sorted by rank. */
function run(np: number, worker: string, args: string[], extraEnv: Record<string, string> = {}) {
  const exported = Object.keys(extraEnv).flatMap((k) => ['-x', k]);
  const argv = np === 0 ? [worker, ...args] : ['-np', String(np), ...exported, process.execPath, worker, ...args];
  const r = spawnSync(np === 0 ? process.execPath : 'mpirun', argv, {
    encoding: 'utf8',
    env: { ...env, ...extraEnv },
    timeout: 240_000,
  });
  const lines = (r.stdout ?? '')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .sort((a, b) => a.rank - b.rank);
  return { status: r.status, output: (r.stderr ?? '') + (r.stdout ?? ''), lines };
}
const f32 = (file: string) => {
  const b = readFileSync(file);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
};
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
const maxRelDiff = (a: number[], b: number[]) =>
  a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]) / Math.max(1e-3, Math.abs(x))), 0);

/**
 * The 2-rank run against one process: same number of steps, every rank the same weights, each
 * step's loss within `lossTol` (relative), the weights within `weightTol` (absolute), and the
 * weights of the two runs not bitwise equal (the comparison is of two computations).
 */
function compare(
  t: Test,
  one: ReturnType<typeof run>,
  two: ReturnType<typeof run>,
  files: [string, string],
  losses: (line: Record<string, unknown>) => number[],
  lossTol: number,
  weightTol: number,
) {
  t.equal(one.status, 0, one.status ? one.output : 'one process ran');
  t.equal(two.status, 0, two.status ? two.output : '2 ranks ran');
  t.equal(two.lines.length, 2, 'one line per rank');
  t.equal(two.lines[0].digest, two.lines[1].digest, 'rank 0 and rank 1 hold identical weights');
  const l1 = losses(one.lines[0]),
    l2 = losses(two.lines[0]);
  t.equal(l2.length, l1.length, `the same number of steps (${l1.length} losses compared)`);
  t.ok(l1.every(Number.isFinite), 'finite losses');
  const dl = maxRelDiff(l1, l2);
  t.ok(dl < lossTol, `every step's loss agrees: max relative difference ${dl.toExponential(2)} < ${lossTol}`);
  if (one.lines[0].eval) {
    // the held-out evaluation: each rank scores its share of every batch, the sums added over ranks
    const e1 = Object.values(one.lines[0].eval as Record<string, number>),
      e2 = Object.values(two.lines[0].eval as Record<string, number>);
    const de = maxRelDiff(e1, e2);
    t.ok(
      e1.every(Number.isFinite) && de < lossTol,
      `evaluation agrees: max relative difference ${de.toExponential(2)}`,
    );
  }
  const dw = maxAbsDiff(f32(files[0]), f32(files[1]));
  t.ok(dw < weightTol, `max |w(1 process) − w(2 ranks)| = ${dw.toExponential(2)} < ${weightTol}`);
}

t.test('reward model: 2 ranks match one process; resume at 2 ranks is exact', { skip, timeout: 600_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-dp-rm-'));
  const w = fixture('scalar-worker.mjs');
  const one = run(0, w, [join(dir, 'one.bin'), 'rm', '4']);
  const two = run(2, w, [join(dir, 'two.bin'), 'rm', '4']);
  // pairs and correctness rows split 3 + 2 and 2 + 1 per micro-batch; 4 AdamW steps at lr 3e-3 (measured: 3e-6)
  compare(t, one, two, [join(dir, 'one.bin'), join(dir, 'two.bin')], (l) => l.losses as number[], 1e-5, 3e-5);
  t.not(
    one.lines[0].digest,
    run(0, w, [join(dir, 'short.bin'), 'rm', '2']).lines[0].digest,
    'two more steps change the weights (the comparison is not vacuous)',
  );
  const ck = join(dir, 'run');
  // the stop is requested on rank 0 alone: the ranks agree to stop after the same step
  const half = run(2, w, [join(dir, 'half.bin'), 'rm', '4', ck, 'stop2rank0']);
  t.equal(half.status, 0, half.status ? half.output : 'stopped');
  t.same(
    half.lines.map((l) => l.steps),
    [2, 2],
    'a stop requested on rank 0 stops both ranks after step 2',
  );
  const resumed = run(2, w, [join(dir, 'resumed.bin'), 'rm', '4', ck, 'resume']);
  t.equal(resumed.status, 0, resumed.status ? resumed.output : 'resumed');
  t.equal(resumed.lines[0].digest, two.lines[0].digest, 'resume at 2 ranks: bitwise the straight 2-rank run');
});

t.test('process reward model: 2 ranks match one process', { skip, timeout: 300_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-dp-prm-'));
  const w = fixture('scalar-worker.mjs');
  const one = run(0, w, [join(dir, 'one.bin'), 'prm', '4']);
  const two = run(2, w, [join(dir, 'two.bin'), 'prm', '4']);
  // records split 3 + 2 per micro-batch, each step's loss a mean over all its reasoning steps (measured: 4e-7)
  compare(t, one, two, [join(dir, 'one.bin'), join(dir, 'two.bin')], (l) => l.losses as number[], 1e-5, 3e-5);
});

const policyLosses = (l: Record<string, unknown>) =>
  (l.losses as Array<Record<string, number>>).flatMap((x) => [
    x.policyLoss,
    ...(x.valueLoss === undefined ? [] : [x.valueLoss]),
  ]);

t.test(
  'PPO (critic, reference baseline, whitening, PTX): 2 ranks sampling their share of the prompts match one process',
  { skip, timeout: 300_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-dp-ppo-'));
    const w = fixture('pg-worker.mjs');
    const one = run(0, w, [join(dir, 'one.bin'), 'ppo', '3']);
    const two = run(2, w, [join(dir, 'two.bin'), 'ppo', '3']);
    t.same(two.lines[0].rewards, one.lines[0].rewards, 'the same samples: the same reward history');
    // 12 AdamW steps (3 iterations × 2 epochs × 2 minibatches) at lr 1e-2 of policy and critic: a
    // rounding-level gradient difference on a near-zero coordinate moves it by up to ~lr per step
    // (measured: 2.2e-5 on weights, 2.7e-6 relative on losses)
    compare(t, one, two, [join(dir, 'one.bin'), join(dir, 'two.bin')], policyLosses, 1e-4, 2e-4);

    // stopped after iteration 1 (requested on rank 0 alone), resumed at 2 ranks: bitwise the straight run
    const ck = join(dir, 'run');
    const half = run(2, w, [join(dir, 'half.bin'), 'ppo', '3', ck, 'stop1rank0']);
    t.equal(half.status, 0, half.status ? half.output : 'stopped');
    t.same(
      half.lines.map((l) => l.iterations),
      [1, 1],
      'both ranks stopped after iteration 1',
    );
    const resumed = run(2, w, [join(dir, 'resumed.bin'), 'ppo', '3', ck, 'resume']);
    t.equal(resumed.status, 0, resumed.status ? resumed.output : 'resumed');
    t.equal(resumed.lines[0].digest, two.lines[0].digest, 'resume at 2 ranks: bitwise the straight 2-rank run');
  },
);

t.test(
  'GRPO and RLOO: groups stay whole on one rank; 2 ranks match one process and reruns bit for bit',
  { skip, timeout: 400_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-dp-grpo-'));
    const w = fixture('pg-worker.mjs');
    for (const method of ['grpo', 'rloo']) {
      const one = run(0, w, [join(dir, `${method}-one.bin`), method, '3']);
      const two = run(2, w, [join(dir, `${method}-two.bin`), method, '3']);
      t.same(two.lines[0].rewards, one.lines[0].rewards, `${method}: the same samples: the same reward history`);
      // 3 prompts of 4 samples: 2 groups on rank 0, 1 on rank 1 (measured: 6e-5 on weights, 2.5e-5 relative on losses)
      compare(t, one, two, [join(dir, `${method}-one.bin`), join(dir, `${method}-two.bin`)], policyLosses, 1e-4, 2e-4);
      if (method === 'grpo') {
        const again = run(2, w, [join(dir, 'grpo-again.bin'), method, '3']);
        t.equal(again.lines[0].digest, two.lines[0].digest, 'grpo: a 2-rank rerun gives bitwise the same weights');
      }
    }
  },
);

t.test(
  "KTO: the reference point z0 is the whole micro-batch's at any number of ranks",
  { skip, timeout: 300_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-dp-kto-'));
    const w = fixture('dpo-worker.mjs');
    const kto = { RLHF_TEST_LOSS: 'kto' };
    const one = run(0, w, [join(dir, 'one.bin'), '4'], kto);
    const two = run(2, w, [join(dir, 'two.bin'), '4'], kto);
    // z0 from every rank's share of the mismatched rows, summed over ranks: 4 steps at lr 5e-3
    // (measured: 1.9e-6; with a z0 per rank's share it was 7e-4)
    compare(t, one, two, [join(dir, 'one.bin'), join(dir, 'two.bin')], (l) => [l.loss as number], 1e-5, 2e-5);
  },
);

t.test(
  'packed forwards (packTokens): PPO and GRPO at 2 ranks, each packing its share, match one process padded',
  { skip, timeout: 400_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-dp-packed-'));
    const w = fixture('pg-worker.mjs');
    const packed = { RLHF_TEST_PACK_TOKENS: '96' };
    for (const method of ['ppo', 'grpo']) {
      const one = run(0, w, [join(dir, `${method}-one.bin`), method, '3']);
      const two = run(2, w, [join(dir, `${method}-two.bin`), method, '3'], packed);
      t.same(two.lines[0].rewards, one.lines[0].rewards, `${method}: the same samples: the same reward history`);
      t.ok(
        two.lines.every((l) => l.packedRows > 0) && one.lines[0].packedRows === 0,
        `every rank packed (rows ${two.lines.map((l) => l.packedRows).join(', ')}); the one process did not`,
      );
      // packing changes only the gradients' summation order (log-probs are bit-identical): tolerances as unpacked
      compare(t, one, two, [join(dir, `${method}-one.bin`), join(dir, `${method}-two.bin`)], policyLosses, 1e-4, 2e-4);
    }
  },
);
