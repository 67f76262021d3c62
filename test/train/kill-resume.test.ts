// kill -9 and resume: SFT and DPO run in a child process (test/helpers/kill-child.mjs, from dist/),
// are killed with SIGKILL at seeded random points — at a step, half-way through a checkpoint (or
// final model) write, or after a random delay — then resumed until they finish. The final weights
// must equal an uninterrupted run's bit for bit, and the metrics log its losses.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { Rng } from '../helpers/random.js';

const child = join(packageRoot, 'test', 'helpers', 'kill-child.mjs');
const TRIALS = 3;
const STEPS = 9; // both trainers run 9 steps, a checkpoint every 3 (4 tokenizer saves with the final model)

interface Kill {
  killAtStep?: number;
  killInSave?: number;
  afterMs?: number;
}

function runChild(
  args: Record<string, unknown>,
  afterMs?: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, JSON.stringify(args)], {
      env: { ...process.env, RLHF_THREADS: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    const timer = afterMs === undefined ? undefined : setTimeout(() => p.kill('SIGKILL'), afterMs);
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

const losses = (out: string) =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((r) => r.loss !== undefined)
    .map((r) => [r.step, r.loss]);

for (const trainer of ['sft', 'dpo'] as const) {
  t.test(
    `${trainer}: SIGKILL at random points, resume, bitwise equal to an uninterrupted run`,
    { timeout: 240000 },
    async (t) => {
      const dir = mkdtempSync(join(tmpdir(), `rlhf-kill-${trainer}-`));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const t0 = performance.now();
      const ref = await runChild({ trainer, out: join(dir, 'ref'), dump: join(dir, 'ref.bin') });
      const refMs = performance.now() - t0;
      t.equal(ref.code, 0, ref.stderr);
      const want = readFileSync(join(dir, 'ref.bin'));
      const wantLosses = losses(join(dir, 'ref'));
      t.equal(wantLosses.length, STEPS);

      const rng = new Rng(trainer === 'sft' ? 1801 : 1802);
      const tally = { kills: 0, midWrite: 0, finishedFirst: 0 };
      for (let trial = 0; trial < TRIALS; trial++) {
        const out = join(dir, `t${trial}`),
          dump = join(dir, `t${trial}.bin`);
        // two kills per trial: the first run and its first resume; the kinds rotate, the points are random
        const kills: Kill[] = [0, 1].map((k) => {
          const kind = (trial * 2 + k) % 3;
          return kind === 0
            ? { killAtStep: rng.int(1, STEPS) }
            : kind === 1
              ? { killInSave: rng.int(1, 4) }
              : { afterMs: Math.round(rng.uniform(0.2, 0.9) * refMs) };
        });
        const what: string[] = [];
        for (const kill of kills) {
          const resume = existsSync(join(out, 'run.json'));
          const { afterMs, ...self } = kill;
          const partial = () =>
            existsSync(out) ? readdirSync(out).filter((n) => /^(checkpoint-\d+|model)\.tmp-/.test(n)) : [];
          const before = new Set(partial());
          const r = await runChild({ trainer, out, dump, resume, ...self }, afterMs);
          if (r.signal === 'SIGKILL') {
            tally.kills++;
            const leftovers = partial().filter((n) => !before.has(n)); // partial writes of this process
            if (leftovers.length) tally.midWrite++;
            what.push(
              `${JSON.stringify(kill)} -> killed${leftovers.length ? ` mid-write (${leftovers.join(', ')})` : ''}`,
            );
          } else {
            t.equal(r.code, 0, r.stderr);
            tally.finishedFirst++;
            what.push(`${JSON.stringify(kill)} -> finished before the kill`);
          }
        }
        const last = await runChild({ trainer, out, dump, resume: existsSync(join(out, 'run.json')) });
        t.equal(last.code, 0, last.stderr);
        t.ok(readFileSync(dump).equals(want), `trial ${trial}: ${what.join('; ')}; final weights bitwise equal`);
        t.same(losses(out), wantLosses, `trial ${trial}: the metrics log equals the uninterrupted run's`);
        t.same(
          readdirSync(out).filter((n) => /\.tmp-|\.old-|^\.lock/.test(n)),
          [],
          `trial ${trial}: no temporary folder or lock left`,
        );
      }
      t.comment(
        `${trainer}: ${TRIALS} trials, ${tally.kills} kills (${tally.midWrite} during a checkpoint or model write), ${tally.finishedFirst} runs finished before their kill`,
      );
      t.ok(tally.midWrite >= 1, 'at least one kill landed in the middle of a checkpoint write');
    },
  );
}
