// KTO on unpaired {prompt, completion, label} rows (TRL's unpaired preference data) in
// PreferenceTrainer: the first evaluation with policy == reference is the closed form
// (w_d·n_d + w_u·n_u) / (2N); after training, the trainer's eval loss and z0 equal an independent
// computation (z0 on row i's prompt with row i−1's completion within each micro-batch, TRL's KL
// term); on the demo task the desirable completions' log-ratio rises and the undesirable ones'
// falls; JSONL and option errors.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import type { UnpairedRecord } from '../../lib/data/index.js';
import { demonstration, goldScore, idealResponse, rng, splitPrompts } from '../../lib/demo/task.js';
import { ktoLoss } from '../../lib/losses/index.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { encodeRow, rowLogprobs } from '../../lib/train/preference-common.js';
import { PreferenceTrainer } from '../../lib/train/preference.js';
import { tinyRlConfig } from '../helpers/rl-setup.js';

setThreads(1);
const tok = new ByteTokenizer();
const SEQ = 96;

/** Demo-task rows: one completion per prompt, a seeded demonstration (ideal 40% of the time, else
 * flawed) or the ideal answer; desirable when the gold score is the ideal's. */
function demoRows(n: number, seed: number): UnpairedRecord[] {
  const r = rng(seed);
  return splitPrompts(seed)
    .train.slice(0, n)
    .map((p) => {
      const completion = r() < 0.2 ? idealResponse(p) : demonstration(p, r);
      return {
        prompt: p.messages,
        completion,
        label: goldScore(p, completion).total >= goldScore(p, idealResponse(p)).total,
      };
    });
}

t.test('policy == reference: eval loss (w_d·n_d + w_u·n_u) / (2N), z0 = 0, rewards 0', async (t) => {
  const data = demoRows(12, 1);
  const nd = data.filter((r) => r.label).length;
  t.ok(nd > 0 && nd < data.length, `${nd} desirable of ${data.length}`);
  const policy = await Model.create(tinyRlConfig(tok), { seed: 3 });
  const trainer = new PreferenceTrainer({
    policy,
    tokenizer: tok,
    loss: 'kto',
    desirableWeight: 1.5,
    undesirableWeight: 0.7,
    train: data,
    eval: data,
    seqLen: SEQ,
    batchSize: 5,
  });
  const m = (await trainer.evaluate()) as Awaited<ReturnType<PreferenceTrainer['evaluate']>> & { klBaseline: number };
  const want = (1.5 * nd + 0.7 * (data.length - nd)) / (2 * data.length);
  t.ok(Math.abs(m.loss - want) < 1e-12, `loss ${m.loss}, closed form ${want}`);
  t.equal(m.klBaseline, 0);
  t.equal(m.rewardsChosen, 0);
  t.equal(m.rewardsRejected, 0);
  t.equal(m.items, data.length);
});

t.test('demo task: the desirable completions’ log-ratio rises, the undesirable ones’ falls', async (t) => {
  const data = demoRows(24, 2);
  const policy = await Model.create(tinyRlConfig(tok), { seed: 4 });
  const reference = await policy.clone();
  const logs: string[] = [];
  const trainer = new PreferenceTrainer({
    policy,
    reference,
    tokenizer: tok,
    loss: 'kto',
    beta: 0.5,
    desirableWeight: 0.8,
    train: data,
    eval: data,
    seqLen: SEQ,
    batchSize: 8,
    epochs: 6,
    lr: 3e-3,
  });
  trainer.on('log', (e) => logs.push(e.message));
  const steps: Record<string, number>[] = [];
  trainer.on('step', (e) => steps.push(e.metrics));
  const r = await trainer.train();
  const after = r.eval! as typeof r.eval & { klBaseline: number };
  t.equal(r.steps, 18);
  for (const k of ['loss', 'klBaseline', 'accuracy', 'lr', 'gradNorm'])
    t.ok(Number.isFinite(steps[0][k]), `metric ${k}`);
  // rewards are β·(log π − log π_ref), 0 before training
  t.ok(
    after.rewardsChosen > 0.5 && after.rewardsRejected < -0.5,
    `mean β·h: desirable 0 -> ${after.rewardsChosen.toFixed(3)}, undesirable 0 -> ${after.rewardsRejected.toFixed(3)}`,
  );
  t.ok(after.accuracy >= 0.9, `rows on their label's side of z0: ${after.accuracy}`);
  const nd = data.filter((x) => x.label).length;
  t.ok(0.8 * nd < data.length - nd, `${nd} desirable of ${data.length}: w_d·n_d / (w_u·n_u) < 1`);
  t.ok(
    logs.some((l) => l.includes(`${nd} desirable and ${data.length - nd} undesirable rows`)),
    `the weight-ratio advice is logged: ${JSON.stringify(logs)}`,
  );

  // independent: per micro-batch of 8 (eval order), matched rows and mismatched rows (prompt i,
  // completion i−1), each summed over response tokens; z0 = max(0, mean(policy − ref) mismatched)
  let loss = 0,
    kl = 0;
  for (let i = 0; i < data.length; i += 8) {
    const batch = data.slice(i, i + 8);
    const rows = batch.map((x) => encodeRow(tok, x.prompt, x.completion, SEQ).seq);
    const mism = rows.map((row, j) => ({
      promptIds: row.promptIds,
      responseIds: rows[(j + rows.length - 1) % rows.length].responseIds.slice(0, SEQ - row.promptIds.length),
    }));
    const lp = async (m: Model, rs: typeof rows) =>
      (await rowLogprobs(m, rs, tok.padId, { save: false, temperature: 1 })).seq;
    const [pm, rm2] = [await lp(policy, mism), await lp(reference, mism)];
    let z0 = 0;
    pm.forEach((v, j) => (z0 += (v - rm2[j]) / pm.length));
    z0 = Math.max(0, z0);
    const res = ktoLoss({
      policy: await lp(policy, rows),
      ref: await lp(reference, rows),
      desirable: batch.map((x) => (x.label ? 1 : 0)),
      beta: 0.5,
      desirableWeight: 0.8,
      klBaseline: z0,
    });
    loss += (res.loss * batch.length) / data.length;
    kl += (z0 * batch.length) / data.length;
  }
  t.ok(Math.abs(after.loss - loss) < 1e-9 * Math.max(1, loss), `eval loss ${after.loss} vs independent ${loss}`);
  t.ok(Math.abs(after.klBaseline - kl) < 1e-9 * Math.max(1, kl), `eval z0 ${after.klBaseline} vs independent ${kl}`);
});

t.test('errors: record kinds, labels with file:line, batch size, weights', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'rlhf-kto-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const policy = await Model.create(tinyRlConfig(tok), { seed: 5 });
  const make = (extra: Record<string, unknown>) =>
    new PreferenceTrainer({ policy, tokenizer: tok, loss: 'kto', seqLen: 32, batchSize: 2, train: [], ...extra });
  const unpaired = [
    { prompt: 'q', completion: 'a', label: true },
    { prompt: 'r', completion: 'b', label: false },
  ];
  const path = join(root, 'kto.jsonl');
  await writeFile(
    path,
    [...unpaired, { prompt: 's', completion: 'c', label: 'no' }].map((x) => JSON.stringify(x)).join('\n') + '\n',
  );
  await t.rejects(make({ train: path }).evaluate(), {
    code: 'ERR_RLHF_FORMAT',
    message: `${path}:3: expected "label" to be true (desirable) or false (undesirable) ({prompt, completion, label} record), got string`,
  });
  await t.rejects(
    make({ train: [...unpaired, { prompt: 'q', chosen: 'a', rejected: 'b' }], eval: unpaired }).evaluate(),
    {
      code: 'ERR_RLHF_FORMAT',
      message:
        'PreferenceTrainer: options.train[2]: expected a {prompt, completion, label} record like the first one (PreferenceTrainer: one kind per data set), got a {prompt, chosen, rejected} record',
    },
  );
  await t.rejects(
    new PreferenceTrainer({ policy, tokenizer: tok, loss: 'dpo', train: unpaired, eval: unpaired }).evaluate(),
    {
      code: 'ERR_RLHF_FORMAT',
      message:
        "PreferenceTrainer: options.train[0]: expected a {prompt, chosen, rejected} record (PreferenceTrainer), got a {prompt, completion, label} record (unpaired data is for loss 'kto')",
    },
  );
  await t.rejects(make({ train: unpaired, eval: unpaired, batchSize: 1 }).evaluate(), {
    name: 'TypeError',
    message:
      'PreferenceTrainer: expected options.batchSize to be >= 2 for KTO on unpaired data (z0 is taken on mismatched rows of a micro-batch), received 1',
  });
  t.throws(() => make({ undesirableWeight: 0 }), { name: 'RangeError', message: /options\.undesirableWeight/ });
  t.throws(() => new PreferenceTrainer({ policy, tokenizer: tok, loss: 'dpo', train: [], desirableWeight: 2 }), {
    name: 'TypeError',
    message: "PreferenceTrainer: options.desirableWeight applies to loss 'kto', not 'dpo'",
  });
});
