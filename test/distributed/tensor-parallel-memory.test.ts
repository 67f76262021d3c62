// estimateTrainingMemory({tensorParallel: K}) against what one process of a model split over K
// processes allocates (nativeMemoryInUse / nativeMemoryPeak of each rank, measured by
// fixtures/tp-memory-worker.mjs under mpirun), and tensorParallelShard against the native shard
// sizes (a thread-rank model's AdamW covers every rank's shard). Skipped where Open MPI is absent.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { AdamW } from '../../lib/engine/adamw.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { estimateTrainingMemory, parameterCount, tensorParallelShard } from '../../lib/engine/memory.js';
import { Model } from '../../lib/engine/model.js';
import { mpiEnv, mpiSkip } from '../helpers/mpi.js';

const skip = mpiSkip;
const env = mpiEnv({ UV_THREADPOOL_SIZE: '1' });
const worker = join(packageRoot, 'test', 'distributed', 'fixtures', 'tp-memory-worker.mjs');

const cases: [
  string,
  ReturnType<typeof tinyConfig>,
  number,
  { batch: number; seqLen: number; gradientCheckpointing: boolean },
][] = [
  [
    'llama, vocabulary and FFN split unevenly',
    tinyConfig({ vocab: 101, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 47, maxPositions: 64 }),
    2,
    { batch: 3, seqLen: 16, gradientCheckpointing: false },
  ],
  [
    'one KV head replicated on both ranks, checkpointed',
    tinyConfig({ vocab: 64, hidden: 32, layers: 3, heads: 4, kvHeads: 1, ffn: 48, maxPositions: 64 }),
    2,
    { batch: 2, seqLen: 12, gradientCheckpointing: true },
  ],
  [
    '4 processes',
    tinyConfig({ vocab: 70, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 50, maxPositions: 64 }),
    4,
    { batch: 2, seqLen: 16, gradientCheckpointing: false },
  ],
];

interface Line {
  worldRank: number;
  tensorParallelRank: number;
  afterCreate: number;
  withAdamW: number;
  afterForward: number;
  peak: number;
  workspaceGrown: number;
}

for (const [label, config, K, shape] of cases)
  t.test(`${label}: the estimate is each process's own account`, { skip, timeout: 300_000 }, async (t) => {
    const r = spawnSync('mpirun', ['-np', String(K), process.execPath, worker, JSON.stringify({ config, ...shape })], {
      encoding: 'utf8',
      env,
      timeout: 240_000,
    });
    t.equal(r.status, 0, r.status ? r.stderr : `mpirun -np ${K}`);
    const lines: Line[] = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l))
      .sort((a: Line, b: Line) => a.tensorParallelRank - b.tensorParallelRank);
    t.equal(lines.length, K, 'one line per rank');
    const est = estimateTrainingMemory(config, { ...shape, tensorParallel: K });
    const zero = lines[0];
    t.equal(zero.afterCreate, est.parameters + est.gradients, `rank 0 after create: parameters + gradients`);
    t.equal(zero.withAdamW, est.parameters + est.gradients + est.optimizer, 'with AdamW: + moments');
    const resident = est.parameters + est.gradients + est.optimizer;
    const scratch = zero.afterForward - resident - est.activations - est.lmHead - est.outputs;
    t.ok(scratch > 0 && scratch <= est.scratchPeak, `after forward: the estimate's parts + forward scratch ${scratch}`);
    t.ok(
      zero.peak >= est.peak && zero.peak <= est.peak + zero.workspaceGrown,
      `peak ${est.peak} bytes as estimated: measured ${zero.peak} (kernel workspaces grown ${zero.workspaceGrown})`,
    );
    for (const l of lines.slice(1))
      t.ok(l.peak <= zero.peak, `rank ${l.tensorParallelRank} holds no more than rank 0 (${l.peak} <= ${zero.peak})`);
    const whole = estimateTrainingMemory(config, shape);
    t.ok(
      est.parameters < whole.parameters,
      `a shard holds less than the whole model (${est.parameters} < ${whole.parameters})`,
    );
  });

t.test('tensorParallelShard: the shards hold what the native thread ranks hold', async (t) => {
  for (const [, config, K] of cases) {
    const m = await Model.create(config, { seed: 1, tensorParallel: K });
    const opt = new AdamW(m, { lr: 1e-3 }); // the ranks' shards back to back
    const shards = Array.from({ length: K }, (_, r) => parameterCount(tensorParallelShard(m.config, K, r)));
    t.equal(
      shards.reduce((a, b) => a + b, 0),
      opt.size,
      `K ${K}: Σ shard parameters = the native shards (${shards.join(' + ')})`,
    );
    t.ok(
      shards.every((n) => n <= shards[0]),
      'rank 0 holds the largest shard',
    );
    opt.dispose();
    m.dispose();
  }
  const c = cases[0][1];
  t.throws(() => estimateTrainingMemory(c, { batch: 1, seqLen: 4, tensorParallel: 3 }), /options\.tensorParallel/);
  t.throws(
    () =>
      estimateTrainingMemory(c, {
        batch: 1,
        seqLen: 4,
        tensorParallel: 2,
        lora: { rank: 2, alpha: 4, modules: ['q_proj'] },
      }),
    /options\.lora with options\.tensorParallel/,
  );
});

t.test('rlhf info --memory --nproc N --tp K: per process, moments sharded over N/K', async (t) => {
  const main = join(packageRoot, 'dist', 'cli', 'main.js');
  const info = (...a: string[]) =>
    spawnSync(
      process.execPath,
      [main, 'info', '--memory', '--init', 'tiny', '--batch-size', '8', '--seq-len', '64', ...a],
      {
        encoding: 'utf8',
      },
    );
  const r = info('--nproc', '4', '--tp', '2');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /per process of 2 tensor-parallel processes .* over 2 data-parallel ranks/);
  const { presetConfig } = await import('../../lib/cli/commands/shared.js');
  const est = estimateTrainingMemory(presetConfig('tiny'), { batch: 8, seqLen: 64, tensorParallel: 2, nproc: 2 });
  t.match(r.stdout, new RegExp(`peak\\s+${(est.peak / 2 ** 20).toFixed(1)} MiB`), 'the estimate of rank 0 of 2 × 2');
  const odd = info('--nproc', '3', '--tp', '2');
  t.not(odd.status, 0);
  t.match(odd.stderr, /--tp 2 needs --nproc to be a multiple of it, got --nproc 3/);
  const bad = info('--tp', '3');
  t.not(bad.status, 0);
  t.match(bad.stderr, /--tp: expected it to divide num_attention_heads/);
});
