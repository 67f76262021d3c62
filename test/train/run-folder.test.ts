// The output folder of a training run: its manifest (run.json), the refusal of a new run into a
// folder holding another run, overwrite, the manifest check on resume, and the lock that keeps a
// second writer out (in this process, and a holder in another process that is then killed).
import t from 'tap';
import { cfg, common, data } from '../helpers/sft-run-setup.js';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model } from '../../lib/engine/model.js';
import { packageRoot } from '../../lib/native.js';
import { RunLock } from '../../lib/train/run-lock.js';
import { SFTTrainer, type SFTOptions } from '../../lib/train/sft.js';

/** One SFT run into `out`; `stopAt` ends it after that step (like Ctrl-C). Resolves with its log lines, or rejects. */
async function sft(
  out: string,
  extra: Partial<SFTOptions> = {},
  stopAt?: number,
): Promise<{ logs: string[]; steps: number }> {
  const model = await Model.create(cfg(), { seed: 3 });
  try {
    const tr = new SFTTrainer({ ...common, model, outputDir: out, ...extra });
    const logs: string[] = [];
    tr.on('log', (e) => logs.push(e.message));
    tr.on('step', (e) => e.step === stopAt && tr.requestStop());
    const r = await tr.train();
    return { logs, steps: r.steps };
  } finally {
    model.dispose();
  }
}

const manifest = (out: string) => JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));

t.test('run.json: written with the run id, config hash, seed, data fingerprint and engine version', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-runfolder-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await sft(join(dir, 'a'));
  const m = manifest(join(dir, 'a'));
  t.match(m, {
    format: 'rlhf-run',
    version: 1,
    stage: 'sft',
    seed: 7,
    engineVersion: JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version,
  });
  t.match(m.runId, /^[0-9a-f-]{36}$/);
  t.match(m.configHash, /^[0-9a-f]{64}$/);
  t.match(m.dataFingerprint, /^[0-9a-f]{64}$/);
  t.match(m.data.train, /^records:[0-9a-f]{64}$/);
  t.equal(m.config.lr, 0.003);
  t.notOk('outputDir' in m.config || 'saveEvery' in m.config, 'where output goes is not part of the identity');
  t.equal(
    JSON.parse(readFileSync(join(dir, 'a', 'checkpoint-6', 'checkpoint.json'), 'utf8')).runId,
    m.runId,
    'each checkpoint names its run',
  );
  // the same settings from a JSONL file: the data fingerprint is of the file's bytes
  writeFileSync(join(dir, 'train.jsonl'), data.map((r) => JSON.stringify(r)).join('\n') + '\n');
  await sft(join(dir, 'b'), { train: join(dir, 'train.jsonl') });
  const mb = manifest(join(dir, 'b'));
  t.match(mb.data.train, /^file:[0-9a-f]{64}$/);
  t.equal(mb.configHash, m.configHash, 'same settings, same config hash');
  t.not(mb.runId, m.runId);
});

t.test('a new run into a folder holding another run is refused; overwrite replaces it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-runfolder-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'out');
  await sft(out);
  const old = manifest(out);
  const err = await sft(out).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(err, {
    code: 'ERR_RLHF_INVALID_ARGUMENT',
    message: new RegExp(
      `output folder ${out} already holds run ${old.runId} \\(sft, started .*\\) with checkpoints at step 4, 6\\. Choose: --resume .*, --overwrite .*, or another --output folder`,
    ),
  });
  t.comment(`refusal: ${err?.message}`);
  t.equal(manifest(out).runId, old.runId, 'the old run is untouched');
  // checkpoints without a manifest (an older version's folder) are refused as well
  rmSync(join(out, 'run.json'));
  await t.rejects(sft(out), { message: /already holds a run without a manifest with checkpoints at step 4, 6/ });
  writeFileSync(join(out, 'notes.txt'), 'mine');
  const r = await sft(out, { overwrite: true, maxSteps: 2 });
  t.match(
    r.logs.join('\n'),
    /warning: overwrite: deleted the previous a run without a manifest with checkpoints at step 4, 6 from/,
  );
  t.same(
    readdirSync(out).sort(),
    ['checkpoint-2', 'metrics.jsonl', 'model', 'notes.txt', 'run.json'],
    'the old checkpoints are gone, a file the run did not write is kept',
  );
  t.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 2, 'a fresh metrics log');
  t.throws(() => new SFTTrainer({ ...common, model: undefined as unknown as Model, outputDir: out }), TypeError);
  const m = await Model.create(cfg(), { seed: 3 });
  t.throws(() => new SFTTrainer({ ...common, model: m, outputDir: out, overwrite: true, resumeFrom: 'latest' }), {
    name: 'TypeError',
    message: /overwrite and options.resumeFrom exclude each other/,
  });
  m.dispose();
});

t.test('resume checks the manifest: different settings or data are named; allowResumeMismatch continues', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-runfolder-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'out');
  await sft(out, {}, 2);
  const e1 = await sft(out, { resumeFrom: 'latest', lr: 1e-3 }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(e1, {
    code: 'ERR_RLHF_INVALID_ARGUMENT',
    message:
      /cannot resume run [0-9a-f-]+ in .*: this run differs from it in lr: 0\.003 -> 0\.001\. .*--allow-resume-mismatch/,
  });
  t.comment(`refusal: ${e1?.message}`);
  const e2 = await sft(out, { resumeFrom: 'latest', train: data.slice(1) }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(e2, { message: /differs from it in data train changed \(/ });
  t.comment(`refusal: ${e2?.message}`);
  const r = await sft(out, { resumeFrom: 'latest', lr: 1e-3, allowResumeMismatch: true });
  t.match(r.logs.join('\n'), /warning: resuming run .* with changes: lr: 0\.003 -> 0\.001/);
  t.match(r.logs.join('\n'), /resumed from .*checkpoint-2 at step 2/);
  t.equal(manifest(out).config.lr, 0.001, 'the manifest records the settings the run continued with');
  // a run resumed before its first checkpoint starts over
  await sft(join(dir, 'early'), { saveEvery: 100 }, 1).catch(() => {});
  rmSync(join(dir, 'early', 'checkpoint-1'), { recursive: true });
  const early = await sft(join(dir, 'early'), { saveEvery: 100, resumeFrom: 'latest' });
  t.match(early.logs.join('\n'), /had not written a checkpoint yet: starting it from step 0/);
  t.equal(early.steps, 6);
});

t.test('two writers: the second gets a clear error; a lock of a killed process is taken over', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-runfolder-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'out');
  // two trainers started together into one folder: one trains, the other is refused
  const both = await Promise.allSettled([sft(out), sft(out, { overwrite: true })]);
  const refused = both.filter((x) => x.status === 'rejected') as PromiseRejectedResult[];
  t.equal(refused.length, 1, 'exactly one of two concurrent writers is refused');
  t.match(refused[0]?.reason, {
    code: 'ERR_RLHF_BUSY',
    message: new RegExp(`${out} is in use by another run \\(pid ${process.pid} on .*lock file .*\\.lock\\)`),
  });
  t.comment(`refusal: ${refused[0]?.reason?.message}`);
  t.notOk(existsSync(join(out, '.lock')), 'the lock is released when the run ends');

  // a holder in another process: refused while it lives, taken over once it is killed
  const holder = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { RunLock } = await import(${JSON.stringify(join(packageRoot, 'dist', 'train', 'run-lock.js'))}); await RunLock.acquire(${JSON.stringify(out)}, 'holder', () => {}); console.log('locked'); setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
  const e = await sft(out, { resumeFrom: 'latest' }).then(
    () => undefined,
    (x: Error) => x,
  );
  t.match(e, { code: 'ERR_RLHF_BUSY', message: new RegExp(`in use by another run \\(pid ${holder.pid} on `) });
  holder.kill('SIGKILL');
  await new Promise((resolve) => holder.once('exit', resolve));
  const r = await sft(out, { resumeFrom: 'latest' });
  t.match(
    r.logs.join('\n'),
    new RegExp(`warning: taking over a stale lock of .* \\(pid ${holder.pid} on .*: that process is gone\\)`),
  );

  // the lock as a unit: a live holder in this process refuses, release frees it
  const lock = await RunLock.acquire(out, 'test', () => {});
  await t.rejects(
    RunLock.acquire(out, 'second', () => {}),
    { code: 'ERR_RLHF_BUSY', message: /second: .* is in use by another run/ },
  );
  await lock.release();
  await (await RunLock.acquire(out, 'third', () => {})).release();
  // a lock from another host cannot be checked: refused, naming the file to delete
  writeFileSync(
    join(out, '.lock'),
    JSON.stringify({ pid: 1, host: 'elsewhere.example', startedAt: '2020-01-01T00:00:00.000Z' }),
  );
  await t.rejects(
    RunLock.acquire(out, 'fourth', () => {}),
    { code: 'ERR_RLHF_BUSY', message: /pid 1 on elsewhere\.example.*cannot be checked from .*delete the lock file/ },
  );
});
