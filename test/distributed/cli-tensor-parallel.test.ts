// `rlhf sft --nproc N --tp K`: N/K data-parallel groups of K tensor-parallel processes from the
// command line. Against the same command in one process (K thread ranks at N = K, no tensor
// parallelism at N = 4, K = 2), checkpoints with every shard's AdamW moments, kill -9 then --resume
// equal to the uninterrupted run bit for bit, the saved model's logits in one process, and the
// refusal of a process count that --tp does not divide. Skipped where Open MPI is absent (scripts/install-mpi.sh).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { Model } from '../../lib/engine/model.js';
import {
  cli,
  compare,
  env,
  ran,
  runUntil,
  sftFlags,
  sftFolder,
  skip,
  stepLines,
  weights,
  within,
} from './tp-cli-helpers.js';

const { dir, sftData } = sftFolder();
const SFT = sftFlags(sftData);
const STEPS = ['--max-steps', '12', '--save-every', '2'];

t.test(
  'rlhf sft --nproc N --tp K: processes against threads and one process; kill -9 and --resume',
  { skip, timeout: 900_000 },
  async (t) => {
    const out = (name: string) => join(dir, name);
    ran(t, cli([...SFT, ...STEPS, '--output', out('threads'), '--tp', '2']), 'one process, 2 thread ranks');
    const p2 = cli([...SFT, ...STEPS, '--output', out('p2'), '--nproc', '2', '--tp', '2']);
    ran(t, p2, '--nproc 2 --tp 2');
    t.match(p2.stderr, /starting 2 ranks \(1 data-parallel × 2 tensor-parallel\)/);
    t.equal((p2.stderr.match(/sft: 12 steps/g) ?? []).length, 1, 'one summary line (world rank 0)');
    // the existing tests find processes and thread ranks equal bit for bit here and allow 1e-4
    await within(t, weights(out('p2')), weights(out('threads')), 1e-4, 'weights, 2 processes vs 2 thread ranks');
    for (const step of [10, 12]) {
      const ck = (run: string) => join(out(run), `checkpoint-${step}`, 'model');
      await within(
        t,
        join(ck('p2'), 'model.safetensors'),
        join(ck('threads'), 'model.safetensors'),
        1e-4,
        `checkpoint-${step} weights`,
      );
      // both hold the moments of rank 0's shard, then rank 1's (the thread model's layout)
      await within(
        t,
        join(ck('p2'), 'optimizer.safetensors'),
        join(ck('threads'), 'optimizer.safetensors'),
        1e-6,
        `checkpoint-${step} AdamW moments`,
      );
    }

    ran(t, cli([...SFT, ...STEPS, '--output', out('one')]), 'one process, no tensor parallelism');
    const p4 = cli([...SFT, ...STEPS, '--output', out('p4'), '--nproc', '4', '--tp', '2']);
    ran(t, p4, '--nproc 4 --tp 2');
    t.match(p4.stderr, /2 data-parallel × 2 tensor-parallel/);
    t.equal(stepLines(out('p4')).length, 12, 'one metrics line per step');
    // splitting the rows over data-parallel ranks changes the summation order (9.8e-7 in the library test)
    await within(t, weights(out('p4')), weights(out('one')), 1e-4, 'weights, 2 × 2 processes vs one process');

    // kill -9 of the whole job once checkpoint-2 is complete, then --resume: the uninterrupted run's bits
    const k = await runUntil(
      [...SFT, ...STEPS, '--output', out('killed'), '--nproc', '2', '--tp', '2'],
      join(out('killed'), 'checkpoint-2', 'checkpoint.json'),
    );
    t.ok(k.killed, 'killed after its first checkpoint');
    t.notOk(existsSync(weights(out('killed'))), 'before the end (no final model)');
    const r = cli([...SFT, ...STEPS, '--output', out('killed'), '--nproc', '2', '--tp', '2', '--resume']);
    ran(t, r, '--resume');
    t.match(r.stderr, /resumed from .*checkpoint-\d+ at step \d+/);
    const d = await compare(weights(out('killed')), weights(out('p2')));
    t.ok(d.identical, `resumed = uninterrupted, bit for bit (max |Δ| ${d.maxDiff})`);
    const last = (run: string) => join(out(run), 'checkpoint-12', 'model', 'optimizer.safetensors');
    t.ok((await compare(last('killed'), last('p2'))).identical, 'and so are the last AdamW moments');

    // the saved model, loaded whole in this process, gives the logits of the model split over 2 processes
    const logitsFile = join(dir, 'logits.bin');
    const worker = join(packageRoot, 'test', 'distributed', 'fixtures', 'tp-logits-worker.mjs');
    const w = spawnSync('mpirun', ['-np', '2', process.execPath, worker, join(out('p2'), 'model'), logitsFile], {
      encoding: 'utf8',
      env,
      timeout: 120_000,
    });
    t.equal(w.status, 0, w.status ? w.stderr : 'the split model ran');
    const split = new Float32Array(new Uint8Array(readFileSync(logitsFile)).buffer);
    const whole = await Model.load(join(out('p2'), 'model'));
    const B = 4,
      T = 12;
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 37 + 11) % 256);
    const f = await whole.forward({ tokens, batch: B, seqLen: T, logits: true });
    t.equal(split.length, f.logits!.length, 'batch · seqLen · vocab logits');
    const dl = f.logits!.reduce((m, x, i) => Math.max(m, Math.abs(x - split[i])), 0);
    t.ok(dl <= 1e-4, `logits, one process vs 2 processes: max |Δ| ${dl.toExponential(2)} <= 1e-4`);
    whole.dispose();

    // a thread-rank run's checkpoint resumes over processes (the same moment layout) to the same bits;
    // resuming over another split is refused by name
    rmSync(join(out('threads'), 'checkpoint-12'), { recursive: true });
    rmSync(join(out('threads'), 'model'), { recursive: true });
    const across = cli([...SFT, ...STEPS, '--output', out('threads'), '--nproc', '2', '--tp', '2', '--resume']);
    ran(t, across, 'thread ranks resumed by processes');
    t.match(across.stderr, /resumed from .*checkpoint-10 at step 10/);
    t.ok((await compare(weights(out('threads')), weights(out('p2')))).identical, 'the uninterrupted run, bit for bit');
    rmSync(join(out('p2'), 'checkpoint-12'), { recursive: true });
    const other = cli([...SFT, ...STEPS, '--output', out('p2'), '--nproc', '2', '--resume']);
    t.not(other.status, 0, 'resuming a --tp 2 run without --tp fails');
    t.match(
      other.stderr,
      /optimizer state is split for tensor parallelism 2, but this run's model is split over 1 \(resume with --tp 2/,
    );
  },
);

t.test('--tp over processes: a process count that K does not divide is refused', { skip }, async (t) => {
  const odd = cli([...SFT, '--output', join(dir, 'odd'), '--nproc', '3', '--tp', '2']);
  t.not(odd.status, 0);
  t.match(odd.stderr, /--tp 2 over processes needs a process count that is a multiple of 2, got --nproc 3/);
});
