// The output folder through the built CLI: a second run into it is refused with the choices,
// --overwrite replaces it, --resume names a changed setting, the flags that exclude each other, and
// --max-consecutive-skips stopping an absurd learning rate.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';

const cli = join(packageRoot, 'dist', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'rlhf-cli-runfolder-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const data = join(dir, 'sft.jsonl');
writeFileSync(
  data,
  Array.from({ length: 8 }, (_, i) => JSON.stringify({ prompt: `${i}+1=`, completion: `${i + 1}` })).join('\n') + '\n',
);
const out = join(dir, 'out');
// --lr 1e-3 and --max-steps 2 unless given
const sft = (...extra: string[]) =>
  spawnSync(
    process.execPath,
    [
      cli,
      'sft',
      '--init',
      'tiny',
      '--data',
      data,
      '--output',
      out,
      '--batch-size',
      '4',
      '--seq-len',
      '16',
      '--threads',
      '1',
      ...(extra.includes('--lr') ? [] : ['--lr', '1e-3']),
      ...(extra.includes('--max-steps') ? [] : ['--max-steps', '2']),
      ...extra,
    ],
    { encoding: 'utf8' },
  );

t.test('rlhf sft into a used --output folder', async (t) => {
  let r = sft();
  t.equal(r.status, 0, r.stderr);
  const runId = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).runId;

  r = sft();
  t.equal(r.status, 1);
  t.match(
    r.stderr,
    new RegExp(
      `rlhf sft: sft: the output folder ${out} already holds run ${runId} \\(sft, started .*\\) with checkpoints at step 2\\. Choose: --resume to continue that run, --overwrite to delete it and start this one, or another --output folder`,
    ),
  );
  t.comment(r.stderr.trim().split('\n').at(-1)!);

  r = sft('--resume', '--lr', '2e-3');
  t.equal(r.status, 1);
  t.match(
    r.stderr,
    /cannot resume run .*: this run differs from it in lr: 0\.001 -> 0\.002\. .*--allow-resume-mismatch/,
  );
  t.comment(r.stderr.trim().split('\n').at(-1)!);

  r = sft('--resume', '--overwrite');
  t.equal(r.status, 2, 'a usage error');
  t.match(
    r.stderr,
    /give --resume \(continue the run in --output\) or --overwrite \(replace it with a new one\), not both/,
  );
  r = sft('--allow-non-finite-resume');
  t.equal(r.status, 2, 'a usage error');
  t.match(r.stderr, /--allow-resume-mismatch and --allow-non-finite-resume need --resume/);

  r = sft('--resume');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /resumed from .*checkpoint-2 at step 2/);

  r = sft('--overwrite');
  t.equal(r.status, 0, r.stderr);
  t.match(
    r.stderr,
    /warning: overwrite: deleted the previous run [0-9a-f-]+ \(sft, started .*\) with checkpoints at step 2/,
  );
  t.not(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).runId, runId, 'a new run id');

  r = sft('--overwrite', '--lr', '1e20', '--max-steps', '10', '--max-consecutive-skips', '2');
  t.equal(r.status, 1);
  t.equal(
    r.stderr.split('\n').filter((l) => /warning: step \d+: non-finite .*update skipped/.test(l)).length,
    2,
    'one warning line per skip',
  );
  t.match(r.stderr, /sft: stopped at step \d+: 2 updates in a row were skipped .*--max-consecutive-skips/);
  t.match(r.stderr, /ERR_RLHF_OUT_OF_RANGE/);
  t.comment(r.stderr.trim().split('\n').at(-1)!);
  t.notOk(readdirSync(out).includes('.lock'), 'no lock left behind');
});
