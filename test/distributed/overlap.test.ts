// ProcessGroup.backwardAllReduce: the gradient all-reduce overlapped with backward (each bucket
// summed over the ranks once backward has made it final) gives allReduceGradients' gradients after
// backward bit for bit, at 2 ranks, for buckets smaller than a layer and larger than the model, tied
// embeddings, a scalar head and gradient checkpointing; what it does not take is refused by name.
// Skipped where Open MPI is absent (scripts/install-mpi.sh).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { initDistributed } from '../../lib/distributed/index.js';
import { mpiEnv, mpiSkip } from '../helpers/mpi.js';

const skip = mpiSkip;
const env = mpiEnv({ UV_THREADPOOL_SIZE: '1' });
const worker = join(packageRoot, 'test', 'distributed', 'fixtures', 'overlap-worker.mjs');
const base = { vocab: 53, hidden: 32, layers: 3, heads: 4, kvHeads: 2, ffn: 40, maxPositions: 32 };

const cases: [string, ReturnType<typeof tinyConfig>, number, boolean][] = [
  ['llama, buckets of 4 KiB (several per layer)', tinyConfig(base), 4096, false],
  ['tied embeddings, buckets of 20 KiB, checkpointed', tinyConfig({ ...base, tieEmbeddings: true }), 20_000, true],
  [
    'a reward model (scalar head), one bucket larger than the model',
    tinyConfig({ ...base, valueHead: true }),
    1 << 22,
    false,
  ],
];

for (const [label, config, bucketBytes, checkpointing] of cases)
  t.test(`${label}: the same gradients as backward then allReduceGradients`, { skip, timeout: 240_000 }, async (t) => {
    const r = spawnSync(
      'mpirun',
      ['-np', '2', process.execPath, worker, JSON.stringify({ config, bucketBytes, checkpointing })],
      { encoding: 'utf8', env, timeout: 200_000 },
    );
    t.equal(r.status, 0, r.status ? r.stderr : 'mpirun -np 2');
    const lines = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map(
        (l) =>
          JSON.parse(l) as {
            worldRank: number;
            same: boolean;
            firstDiff: number;
            sumAbs: number;
            digest: string;
            readyPoints: number;
            earlyBuckets: number;
          },
      );
    t.equal(lines.length, 2, 'both ranks reported');
    for (const l of lines) t.ok(l.same, `rank ${l.worldRank}: bit for bit (first difference at ${l.firstDiff})`);
    t.equal(lines[0].digest, lines[1].digest, 'both ranks hold the summed gradients');
    t.ok(lines[0].sumAbs > 0, 'the gradients are not zero');
    // after the heads, after each of the 3 layers and at the end (the embedding)
    for (const l of lines)
      t.equal(
        l.readyPoints,
        base.layers + 2,
        `rank ${l.worldRank}: backward reported final gradients ${l.readyPoints} times (${l.earlyBuckets} buckets began before its end)`,
      );
  });

t.test('backwardAllReduce: a group of one is backward; bad bucket sizes are named', async (t) => {
  const group = initDistributed({ backend: 'local' });
  const m = await Model.create(tinyConfig(base), { seed: 1 });
  const tokens = Int32Array.from({ length: 8 }, (_, i) => i + 1);
  await m.forward({ tokens, targets: tokens, batch: 1, seqLen: 8 });
  await group.backwardAllReduce(m, { dLogprobs: new Float32Array(8).fill(-0.125) });
  const g = await m.getGradient('model.norm.weight');
  t.ok(
    g.some((x) => x !== 0),
    'gradients were computed',
  );
  await t.rejects(
    group.backwardAllReduce(m, { dLogprobs: new Float32Array(8) }, { bucketBytes: 0 }),
    /options\.bucketBytes to be at least 4/,
  );
  m.dispose();
});
