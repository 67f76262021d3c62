// Tensor parallelism across processes (`mpirun -np 2`, each process one shard, collectives over
// MPI) against tensor parallelism on thread ranks of one process; the 2-D layout (4 ranks: 2
// tensor-parallel × 2 data-parallel); bucketed against one-call gradient all-reduce; a failing
// rank. Skipped where Open MPI is absent (scripts/install-mpi.sh).
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { Model } from '../../lib/engine/model.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { readSafetensorsHeader } from '../../lib/io/safetensors.js';
import { mpiEnv, mpiSkip } from '../helpers/mpi.js';

const worker = join(packageRoot, 'test', 'distributed', 'fixtures', 'tp-worker.mjs');
const skip = mpiSkip;
const env = mpiEnv({ UV_THREADPOOL_SIZE: '1' });

interface Line {
  worldRank: number;
  dp: [number, number];
  tp: [number, number];
  weights: string;
  grads: string;
  norms: number[];
  greedy: number[];
  shardSize: number;
}

function run(np: number, out: string, mode: string, extra: string[] = [], extraEnv: Record<string, string> = {}) {
  const argv =
    np === 0
      ? [worker, out, mode, ...extra]
      : [
          '-np',
          String(np),
          '-x',
          'RLHF_TEST_BUCKET',
          '-x',
          'RLHF_TEST_KV_HEADS',
          process.execPath,
          worker,
          out,
          mode,
          ...extra,
        ];
  const t0 = Date.now();
  const r = spawnSync(np === 0 ? process.execPath : 'mpirun', argv, {
    encoding: 'utf8',
    env: { ...env, RLHF_TEST_BUCKET: '', RLHF_TEST_KV_HEADS: '2', ...extraEnv },
    timeout: 240_000,
  });
  const lines: Line[] = (r.stdout ?? '')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .sort((a: Line, b: Line) => a.worldRank - b.worldRank);
  return { status: r.status, out: (r.stderr ?? '') + (r.stdout ?? ''), lines, seconds: (Date.now() - t0) / 1000 };
}

// [logits (B·T·V), logprobs (B·T), grads (P), weights (P)] as written by the worker (B 4, T 12, V 61)
function parts(file: string) {
  const b = readFileSync(file);
  const a = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
  const L = 4 * 12 * 61,
    N = 4 * 12,
    P = (a.length - L - N) / 2;
  return {
    logits: a.subarray(0, L),
    logprobs: a.subarray(L, L + N),
    grads: a.subarray(L + N, L + N + P),
    weights: a.subarray(L + N + P),
  };
}
/** Passes when the run exited 0; its output is shown only when it did not. */
function exitedZero(t: Test, r: { status: number | null; out: string }, what: string) {
  t.equal(r.status, 0, `${what} exits 0`);
  if (r.status !== 0) t.comment(r.out);
}
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

t.test('tensorParallelGroup is checked by name', async (t) => {
  const cfg = tinyConfig({ vocab: 61, hidden: 32, layers: 1, heads: 4, kvHeads: 2, ffn: 64 });
  await t.rejects(
    Model.create(cfg, { tensorParallel: 2, tensorParallelGroup: 'nccl' as never }),
    /options.tensorParallelGroup/,
  );
  // outside a split MPI job: refused, saying what to call first
  await t.rejects(
    Model.create(cfg, { tensorParallel: 2, tensorParallelGroup: 'mpi' }),
    /initDistributed\(\{tensorParallel: 2\}\)|MPI is not available/,
  );
});

t.test(
  'mpirun -np 2, tensorParallel 2 over processes: logits, gradients and AdamW steps match thread ranks; reruns are bitwise',
  { skip, timeout: 600_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-tp-mpi-'));
    const ref = run(0, join(dir, 'threads.bin'), 'threads');
    exitedZero(t, ref, 'ref');
    const a = run(2, join(dir, 'a.bin'), 'mpi');
    exitedZero(t, a, 'a');
    const b = run(2, join(dir, 'b.bin'), 'mpi');
    exitedZero(t, b, 'b');
    t.same(
      a.lines.map((l) => l.tp),
      [
        [0, 2],
        [1, 2],
      ],
      'two tensor-parallel ranks',
    );
    t.same(
      a.lines.map((l) => l.dp),
      [
        [0, 1],
        [0, 1],
      ],
      'one data-parallel rank each',
    );
    t.equal(a.lines[0].weights, a.lines[1].weights, 'both ranks gather the same weights');
    t.equal(a.lines[0].weights, b.lines[0].weights, 'a rerun gives the same weights, bit for bit');
    t.equal(a.lines[0].grads, b.lines[0].grads, 'and the same gradients');
    t.same(a.lines[0].norms, a.lines[1].norms, 'every rank clips with the same (whole-model) gradient norm');

    const r = parts(join(dir, 'threads.bin')),
      m = parts(join(dir, 'a.bin'));
    // MPI adds the two ranks' partial sums in its own order (a + b = b + a at 2 ranks); the norm's
    // partial sums of squares are combined per rank then over ranks. Tolerances: 1e-5 on logits,
    // log-probs and gradients, 1e-4 on weights after 3 steps at lr 1e-2 (AdamW's normalised step
    // can turn a last-bit gradient difference near zero into up to ~lr per step).
    const dl = maxAbsDiff(r.logits, m.logits),
      dp = maxAbsDiff(r.logprobs, m.logprobs),
      dg = maxAbsDiff(r.grads, m.grads),
      dw = maxAbsDiff(r.weights, m.weights);
    t.ok(dl <= 1e-5, `logits: max |threads - processes| = ${dl.toExponential(2)} <= 1e-5`);
    t.ok(dp <= 1e-5, `log-probs: ${dp.toExponential(2)} <= 1e-5`);
    t.ok(dg <= 1e-5, `gradients: ${dg.toExponential(2)} <= 1e-5`);
    t.ok(dw <= 1e-4, `weights after 3 AdamW steps: ${dw.toExponential(2)} <= 1e-4`);
    t.ok(
      ref.lines[0].norms.every((n, i) => Math.abs(n - a.lines[0].norms[i]) <= 1e-6 * n),
      `gradient norms agree (${ref.lines[0].norms.map((n) => n.toFixed(5))} vs ${a.lines[0].norms.map((n) => n.toFixed(5))})`,
    );
    t.ok(ref.lines[0].norms[0] > 0.5, 'the norm exceeds maxGradNorm, so clipping is exercised');
    t.same(a.lines[0].greedy, ref.lines[0].greedy, 'the same greedy generation');
    // the comparisons are not vacuous: training moved the weights by more than the tolerance
    t.ok(maxAbsDiff(m.weights, m.grads) > 0 && r.grads.some((g) => Math.abs(g) > 1e-3), 'non-trivial gradients');
  },
);

t.test(
  'one KV head replicated on both processes: gradients and steps match thread ranks',
  { skip, timeout: 300_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-tp-kv-'));
    const kv = { RLHF_TEST_KV_HEADS: '1' };
    const ref = run(0, join(dir, 'threads.bin'), 'threads', [], kv);
    exitedZero(t, ref, 'threads');
    const m = run(2, join(dir, 'mpi.bin'), 'mpi', [], kv);
    exitedZero(t, m, 'mpi');
    t.equal(m.lines[0].weights, m.lines[1].weights, 'both ranks gather the same weights (the KV copies agree)');
    const r = parts(join(dir, 'threads.bin')),
      p = parts(join(dir, 'mpi.bin'));
    const dg = maxAbsDiff(r.grads, p.grads),
      dw = maxAbsDiff(r.weights, p.weights);
    t.ok(dg <= 1e-5, `gradients: max |threads - processes| = ${dg.toExponential(2)} <= 1e-5`);
    t.ok(dw <= 1e-4, `weights after 3 steps: ${dw.toExponential(2)} <= 1e-4`);
    t.ok(
      r.grads.some((g) => Math.abs(g) > 1e-3),
      'non-trivial gradients',
    );
  },
);

t.test(
  '2-D layout: mpirun -np 4, tensorParallel 2 × data-parallel 2 matches one tensor-parallel group on the whole batch; bucketed all-reduce is bitwise the one-call one',
  { skip, timeout: 600_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-tp-2d-'));
    const one = run(2, join(dir, 'one.bin'), 'mpi');
    exitedZero(t, one, 'one');
    const four = run(4, join(dir, 'four.bin'), 'mpi', [], { RLHF_TEST_BUCKET: '0' });
    exitedZero(t, four, 'four');
    t.same(
      four.lines.map((l) => [l.dp, l.tp]),
      [
        [
          [0, 2],
          [0, 2],
        ],
        [
          [0, 2],
          [1, 2],
        ],
        [
          [1, 2],
          [0, 2],
        ],
        [
          [1, 2],
          [1, 2],
        ],
      ],
      'world ranks 0,1 and 2,3 are tensor-parallel groups; 0,2 and 1,3 data-parallel groups',
    );
    t.equal(new Set(four.lines.map((l) => l.weights)).size, 1, 'all four ranks hold the same weights');
    const dw = maxAbsDiff(parts(join(dir, 'one.bin')).weights, parts(join(dir, 'four.bin')).weights);
    t.ok(dw <= 1e-4, `weights after 3 steps, 2×2 vs one group on the whole batch: ${dw.toExponential(2)} <= 1e-4`);

    // buckets of 4 KiB (1024 floats) against one all-reduce call
    const bucketed = run(4, join(dir, 'bucketed.bin'), 'mpi', [], { RLHF_TEST_BUCKET: '4096' });
    exitedZero(t, bucketed, 'bucketed');
    t.ok(bucketed.lines[0].shardSize > 4 * 1024, `${bucketed.lines[0].shardSize} floats per shard: 5 buckets or more`);
    t.equal(bucketed.lines[0].weights, four.lines[0].weights, 'bucketed all-reduce: the same weights, bit for bit');
    const dflt = run(4, join(dir, 'default.bin'), 'mpi');
    exitedZero(t, dflt, 'dflt');
    t.equal(dflt.lines[0].weights, four.lines[0].weights, 'the default (25 MiB buckets): the same weights');
  },
);

for (const how of ['throw', 'kill'])
  t.test(
    `a tensor-parallel rank that ${how === 'throw' ? 'throws' : 'is killed'} ends the job within seconds, naming it`,
    { skip, timeout: 120_000 },
    async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'rlhf-tp-fail-'));
      const r = run(2, join(dir, 'x.bin'), 'mpi', ['3', `${how}:1`]);
      t.not(r.status, 0, 'mpirun exits non-zero');
      t.ok(r.seconds < 60, `ended after ${r.seconds.toFixed(1)} s`);
      t.match(
        r.out,
        how === 'throw' ? /rank 1: uncaught Error: tp-worker: rank 1 fails on purpose/ : /rank 1|signal 9|Killed/,
        'names rank 1',
      );
      t.equal(r.lines.length, 0, 'no rank reported a finished run');
    },
  );

const f32 = (file: string) => {
  const b = readFileSync(file);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
};
const sftWorker = join(packageRoot, 'test', 'distributed', 'fixtures', 'tp-sft-worker.mjs');
function runSft(np: number, out: string, args: string[]) {
  const argv = np === 0 ? [sftWorker, out, ...args] : ['-np', String(np), process.execPath, sftWorker, out, ...args];
  const r = spawnSync(np === 0 ? process.execPath : 'mpirun', argv, { encoding: 'utf8', env, timeout: 240_000 });
  const lines = (r.stdout ?? '')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { worldRank: number; digest: string; loss: number; steps: number });
  return { status: r.status, out: (r.stderr ?? '') + (r.stdout ?? ''), lines };
}

t.test(
  'SFTTrainer on a model split over processes: 2 ranks match thread ranks, 2 × 2 ranks agree; with outputDir, world rank 0 writes the checkpoint',
  { skip, timeout: 600_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-tp-sft-'));
    const ref = runSft(0, join(dir, 'threads.bin'), ['threads']);
    exitedZero(t, ref, 'threads');
    const two = runSft(2, join(dir, 'two.bin'), ['mpi']);
    exitedZero(t, two, 'np 2');
    t.equal(two.lines.length, 2);
    t.equal(two.lines[0].steps, 3);
    t.ok(Math.abs(two.lines[0].loss - ref.lines[0].loss) < 1e-6, `same loss (${two.lines[0].loss})`);
    t.ok(f32(join(dir, 'two.bin')).length > 10_000, 'the whole model was gathered');
    const d2 = maxAbsDiff(f32(join(dir, 'threads.bin')), f32(join(dir, 'two.bin')));
    t.ok(d2 <= 1e-4, `weights, processes vs threads: ${d2.toExponential(2)} <= 1e-4`);
    const four = runSft(4, join(dir, 'four.bin'), ['mpi']);
    exitedZero(t, four, 'np 4');
    t.equal(new Set(four.lines.map((l) => l.digest)).size, 1, 'all four ranks hold the same weights');
    const d4 = maxAbsDiff(f32(join(dir, 'threads.bin')), f32(join(dir, 'four.bin')));
    t.ok(d4 <= 1e-4, `2 × 2 vs thread ranks on the whole batch: ${d4.toExponential(2)} <= 1e-4`);
    const saved = runSft(2, join(dir, 'saved.bin'), ['mpi', 'outputDir', join(dir, 'run')]);
    exitedZero(t, saved, 'np 2 with outputDir');
    t.equal(saved.lines[0].digest, two.lines[0].digest, 'writing checkpoints leaves the weights as they were');
    const opt = await readSafetensorsHeader(join(dir, 'run', 'checkpoint-3', 'model', 'optimizer.safetensors'));
    t.equal(opt.metadata.tensor_parallel, '2', 'the optimizer state records its split');
    t.ok(existsSync(join(dir, 'run', 'model', 'model.safetensors')), 'the final model was written');
  },
);
