// `--nproc N` on the training commands besides sft (test/distributed/mpi.test.ts covers sft): the
// command starts mpirun over itself, rank 0 alone prints the summary and writes the output folder.
// Skipped where Open MPI is absent (scripts/install-mpi.sh installs it; .ci/run calls it).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, packageRoot } from '../../lib/native.js';

const haveMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const skip = haveMpirun && native().mpiInfo().loadable ? false : 'Open MPI not installed (scripts/install-mpi.sh)';
const env = { ...process.env, RLHF_THREADS: '1', OMPI_MCA_rmaps_base_oversubscribe: '1' };
const cli = (args: string[]) =>
  spawnSync(process.execPath, [join(packageRoot, 'dist', 'cli', 'main.js'), ...args], {
    encoding: 'utf8',
    env,
    timeout: 240_000,
  });
const jsonl = (file: string, rows: unknown[]) =>
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
/** metrics.jsonl lines of training steps (not evaluations or skips) */
const stepLines = (dir: string) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((m) => m.loss !== undefined || m.rewardMean !== undefined);

t.test(
  'rlhf rm and rlhf grpo --nproc 2: one summary, one metrics line per step, one model',
  { skip, timeout: 600_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-dp-cli2-'));
    const sft = join(dir, 'sft.jsonl');
    jsonl(
      sft,
      Array.from({ length: 12 }, (_, i) => ({ prompt: `${i}+1=`, completion: String(i + 1) })),
    );
    const base = join(dir, 'base');
    const b = cli(['sft', '--init', 'tiny', '--data', sft, '--output', base, '--max-steps', '1', '--seq-len', '32']);
    t.equal(b.status, 0, b.status ? b.stderr : 'a base model (one process)');

    const pairs = join(dir, 'pairs.jsonl');
    jsonl(
      pairs,
      Array.from({ length: 20 }, (_, i) => ({ prompt: `${i}+1=`, chosen: String(i + 1), rejected: `no ${i}` })),
    );
    const rm = join(dir, 'rm'); // 18 training pairs (2 held out) in micro-batches of 5: 4 steps
    const r = cli([
      'rm',
      '--model',
      join(base, 'model'),
      '--data',
      pairs,
      '--output',
      rm,
      '--nproc',
      '2',
      '--batch-size',
      '5',
      '--seq-len',
      '32',
    ]);
    t.equal(r.status, 0, r.status ? r.stderr : 'rlhf rm --nproc 2 ran');
    t.match(r.stderr, /starting 2 ranks: mpirun -np 2/);
    t.equal((r.stderr.match(/rm: 4 steps/g) ?? []).length, 1, 'one rm summary line (rank 0)');
    t.equal(stepLines(rm).length, 4, 'one metrics line per step (rank 0 alone writes)');
    t.ok(existsSync(join(rm, 'model', 'model.safetensors')), 'the reward model was written');

    const prompts = join(dir, 'prompts.jsonl');
    jsonl(
      prompts,
      Array.from({ length: 6 }, (_, i) => ({ prompt: `${i}+2=` })),
    );
    const grpo = join(dir, 'grpo');
    const g = cli([
      'grpo',
      '--policy',
      join(base, 'model'),
      '--reward-rule',
      'shorter',
      '--prompts',
      prompts,
      '--output',
      grpo,
      '--nproc',
      '2',
      '--iterations',
      '2',
      '--prompts-per-iteration',
      '3',
      '--samples-per-prompt',
      '2',
      '--max-new-tokens',
      '4',
    ]);
    t.equal(g.status, 0, g.status ? g.stderr : 'rlhf grpo --nproc 2 ran');
    t.equal((g.stderr.match(/grpo: 2 iterations/g) ?? []).length, 1, 'one grpo summary line (rank 0)');
    t.equal(stepLines(grpo).length, 2, 'one metrics line per iteration');
    t.ok(existsSync(join(grpo, 'model', 'model.safetensors')), 'the policy was written');
  },
);
