// Checkpoint integrity on resume: a flipped byte or a truncated file in the newest checkpoint falls
// back to the previous verified one (and still ends bitwise equal to a straight run); NaN weights
// that were saved as such are refused unless allowed; what crashed writes leave is cleared. And
// the skip limit: an absurd learning rate stops SFT and DPO with a clear error after N skips.
import t from 'tap';
import { cfg, common, tok } from '../helpers/sft-run-setup.js';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model } from '../../lib/engine/model.js';
import { PreferenceTrainer } from '../../lib/train/preference.js';
import { SFTTrainer, type SFTOptions } from '../../lib/train/sft.js';

interface Outcome {
  logs: string[];
  weights: Buffer;
  skips: Array<{ step: number; consecutive: number }>;
}

async function sft(out: string | undefined, extra: Partial<SFTOptions> = {}, stopAt?: number): Promise<Outcome> {
  const model = await Model.create(cfg(), { seed: extra.resumeFrom ? 99 : 3 });
  try {
    const tr = new SFTTrainer({ ...common, model, ...(out ? { outputDir: out } : {}), ...extra });
    const logs: string[] = [],
      skips: Outcome['skips'] = [];
    tr.on('log', (e) => logs.push(e.message));
    tr.on('skip', (e) => skips.push({ step: e.step, consecutive: e.consecutive }));
    tr.on('step', (e) => e.step === stopAt && tr.requestStop());
    try {
      await tr.train();
    } catch (err) {
      Object.assign(err as object, { logs, skips });
      throw err;
    }
    const parts: Buffer[] = [];
    for (const p of model.parameters()) parts.push(Buffer.from((await model.getParameter(p.name)).buffer));
    return { logs, weights: Buffer.concat(parts), skips };
  } finally {
    model.dispose();
  }
}

/** Byte offset of a tensor's data in a safetensors file (default: the first tensor in the file). */
function tensorOffset(path: string, name?: string): number {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const offsets = Object.entries(header)
    .filter(([k]) => k !== '__metadata__' && (!name || k === name))
    .map(([, v]) => (v as { data_offsets: number[] }).data_offsets[0]);
  if (!offsets.length) throw new Error(`${path}: no tensor ${name}`);
  return 8 + n + Math.min(...offsets);
}

/** Rewrites checkpoint.json's entry for `rel` to the file's current bytes (as if it had been saved so). */
function reseal(ckpt: string, rel: string): void {
  const path = join(ckpt, 'checkpoint.json');
  const m = JSON.parse(readFileSync(path, 'utf8'));
  const bytes = readFileSync(join(ckpt, rel));
  m.files[rel] = { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  writeFileSync(path, JSON.stringify(m));
}

const straight = sft(undefined);

t.test(
  'a flipped byte or a truncated file in the newest checkpoint: fall back to the previous one, still bitwise exact',
  async (t) => {
    const want = (await straight).weights;
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-integrity-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    for (const damage of ['flip', 'truncate'] as const) {
      const out = join(dir, damage);
      await sft(out, {}, 4); // checkpoints 2 and 4
      const ckpt = join(out, 'checkpoint-4');
      if (damage === 'flip') {
        const p = join(ckpt, 'model', 'model.safetensors');
        const buf = readFileSync(p);
        buf[tensorOffset(p) + 5] ^= 0x10;
        writeFileSync(p, buf);
      } else truncateSync(join(ckpt, 'model', 'optimizer.safetensors'), 1000);
      const r = await sft(out, { resumeFrom: 'latest' });
      const log = r.logs.join('\n');
      t.match(
        log,
        damage === 'flip'
          ? /warning: checkpoint-4 is not usable \(.*model\.safetensors: SHA-256 .* differs from the checkpoint manifest's/
          : /warning: checkpoint-4 is not usable \(.*optimizer\.safetensors: 1000 bytes, the checkpoint manifest says \d+ \(truncated or partial\)/,
      );
      t.match(log, /moved to .*checkpoint-4\.corrupt-.*, falling back to the previous checkpoint/);
      t.match(log, /resumed from .*checkpoint-2 at step 2/);
      t.comment(`${damage}: ${r.logs.find((l) => /not usable/.test(l))}`);
      t.ok(
        r.weights.equals(want),
        `${damage}: resumed from step 2, the final weights equal the straight run's bit for bit`,
      );
      t.ok(
        readdirSync(out).some((n) => /^checkpoint-4\.corrupt-/.test(n)),
        'the damaged checkpoint is kept aside for inspection',
      );
    }
    // no usable checkpoint at all: an error, not a silent restart
    const out = join(dir, 'none');
    await sft(out, { saveEvery: 100 }, 2);
    truncateSync(join(out, 'checkpoint-2', 'trainer_state.json'), 3);
    await t.rejects(sft(out, { saveEvery: 100, resumeFrom: 'latest' }), {
      code: 'ERR_RLHF_FORMAT',
      message: /no usable checkpoint in .*start over with --overwrite/,
    });
    // an explicit checkpoint directory is verified too (no fall-back)
    const out2 = join(dir, 'explicit');
    await sft(out2, {}, 2);
    truncateSync(join(out2, 'checkpoint-2', 'model', 'model.safetensors'), 100);
    await t.rejects(sft(out2, { resumeFrom: join(out2, 'checkpoint-2') }), {
      code: 'ERR_RLHF_FORMAT',
      message: /model\.safetensors: 100 bytes/,
    });
  },
);

t.test('non-finite weights are not resumed without allowNonFiniteResume', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-integrity-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'out');
  await sft(out, {}, 4);
  const ckpt = join(out, 'checkpoint-4');
  const p = join(ckpt, 'model', 'model.safetensors');
  const buf = readFileSync(p);
  buf.writeFloatLE(NaN, tensorOffset(p, 'model.norm.weight') + 8); // the final norm: every token goes through it
  writeFileSync(p, buf);
  reseal(ckpt, 'model/model.safetensors'); // as if the NaN had been saved: the checksums hold
  const e = await sft(out, { resumeFrom: 'latest' }).then(
    () => undefined,
    (x: Error) => x,
  );
  t.match(e, {
    code: 'ERR_RLHF_FORMAT',
    message:
      /checkpoint-4: the model parameter model\.norm\.weight holds a non-finite value \(NaN at index 2\); a run is not resumed from non-finite weights .*--allow-non-finite-resume/,
  });
  t.comment(`refusal: ${e?.message}`);
  // allowed: it loads, and training on NaN weights skips every update until the skip limit stops it
  await t.rejects(sft(out, { resumeFrom: 'latest', allowNonFiniteResume: true, maxConsecutiveSkips: 2 }), {
    code: 'ERR_RLHF_OUT_OF_RANGE',
    message: /stopped at step 6: 2 updates in a row were skipped/,
  });
  // the same NaN without a matching checksum is damage: fall back to checkpoint-2
  const out2 = join(dir, 'unsealed');
  await sft(out2, {}, 4);
  const p2 = join(out2, 'checkpoint-4', 'model', 'optimizer.safetensors');
  const b2 = readFileSync(p2);
  b2.writeFloatLE(Infinity, tensorOffset(p2));
  writeFileSync(p2, b2);
  const r = await sft(out2, { resumeFrom: 'latest' });
  t.match(r.logs.join('\n'), /resumed from .*checkpoint-2 at step 2/);
  t.ok(r.weights.equals((await straight).weights), 'and ends bitwise equal to the straight run');
});

t.test(
  'leftovers of crashed writes are cleared at start; a checkpoint caught between its renames is recovered',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-integrity-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const out = join(dir, 'out');
    await sft(out, {}, 4);
    mkdirSync(join(out, 'checkpoint-6.tmp-4242-00aa11bb22cc', 'model'), { recursive: true });
    writeFileSync(join(out, 'checkpoint-6.tmp-4242-00aa11bb22cc', 'model', 'model.safetensors'), 'partial');
    mkdirSync(join(out, 'checkpoint-4.old-4242-00aa11bb22cc'));
    mkdirSync(join(out, 'model.tmp-4242-00aa11bb22cc'));
    writeFileSync(join(out, '.metrics.jsonl.tmp-4242-00aa11bb22cc'), '{');
    // a crash between replaceDirAtomic's two renames: no checkpoint-4, its complete new content in .tmp
    renameSync(join(out, 'checkpoint-4'), join(out, 'checkpoint-4.tmp-4243-00aa11bb22cd'));
    const r = await sft(out, { resumeFrom: 'latest' });
    const log = r.logs.join('\n');
    t.match(log, /warning: recovered .*checkpoint-4 from checkpoint-4\.tmp-4243-00aa11bb22cd/);
    for (const n of [
      'checkpoint-6.tmp-4242-00aa11bb22cc',
      'checkpoint-4.old-4242-00aa11bb22cc',
      'model.tmp-4242-00aa11bb22cc',
      '.metrics.jsonl.tmp-4242-00aa11bb22cc',
    ]) {
      t.match(log, new RegExp(`warning: removed .*${n.replace(/\./g, '\\.')}`));
      t.notOk(existsSync(join(out, n)), `${n} removed`);
    }
    t.match(log, /resumed from .*checkpoint-4 at step 4/);
    t.ok(
      r.weights.equals((await straight).weights),
      'resumed from the recovered checkpoint, bitwise equal to the straight run',
    );
  },
);

t.test('an absurd learning rate: every skip is reported, N in a row stop the run with an error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-integrity-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'sft');
  const e = (await sft(out, { lr: 1e20, maxSteps: 24, maxConsecutiveSkips: 3, saveEvery: 100 }).then(
    () => undefined,
    (x: Error) => x,
  )) as (Error & { code: string; logs: string[]; skips: Outcome['skips'] }) | undefined;
  t.match(e, {
    code: 'ERR_RLHF_OUT_OF_RANGE',
    message:
      /^sft: stopped at step \d+: 3 updates in a row were skipped \(non-finite loss or gradients; the last: non-finite .*\)\. The learning rate may be too high.*maxConsecutiveSkips/,
  });
  t.comment(`stop: ${e?.message}`);
  t.same(
    e?.skips.map((s) => s.consecutive),
    [1, 2, 3],
    'a skip event for each',
  );
  t.equal(
    e?.logs.filter((l) => /^warning: step \d+: non-finite .*update skipped \(\d in a row of at most 3/.test(l)).length,
    3,
    'one warning line each',
  );
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.same(
    lines.filter((l) => l.event === 'skip').map((l) => l.consecutiveSkips),
    [1, 2, 3],
    'a metrics line each',
  );
  t.notOk(existsSync(join(out, '.lock')), 'the lock is released on the error');
  // 0: never stop (the run ends, every skip counted)
  const all = await sft(undefined, { lr: 1e20, maxSteps: 8, maxConsecutiveSkips: 0 });
  t.ok(all.skips.length >= 6, `${all.skips.length} of 8 skipped, the run finished`);

  // the preference loops share the guard
  const policy = await Model.create(cfg(), { seed: 3 });
  t.teardown(() => policy.dispose());
  const dpo = new PreferenceTrainer({
    policy,
    tokenizer: tok,
    loss: 'dpo',
    beta: 0.5,
    train: Array.from({ length: 16 }, (_, i) => ({ prompt: `p${i % 4}:`, chosen: 'aaa', rejected: `b${i % 3}c` })),
    seqLen: 16,
    batchSize: 4,
    epochs: 6,
    lr: 1e20,
    maxConsecutiveSkips: 2,
  });
  await t.rejects(dpo.train(), {
    code: 'ERR_RLHF_OUT_OF_RANGE',
    message: /^preference: stopped at step \d+: 2 updates in a row were skipped/,
  });
});
