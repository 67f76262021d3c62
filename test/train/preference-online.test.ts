// Online pair construction (PreferenceTrainer.buildPairs; ChatGLM-RLHF DPO data, LongReward
// best-vs-worst): K samples per prompt from a tiny policy, a rule reward, best vs worst per prompt,
// ties dropped, deterministic in the seed; the pairs and groups train DPO and EXO-rw directly.
import t from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { rewardFunction } from '../../lib/rewards/types.js';
import { generateRollout } from '../../lib/rollout/generate.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { PreferenceTrainer } from '../../lib/train/preference.js';

const tok = new ByteTokenizer();
// one kernel thread: tap runs two test files at once on two cores, and two-thread pools per
// process oversubscribe them (several times slower); results are deterministic per thread count
setThreads(1);
const config = () =>
  tinyConfig({
    vocab: 264,
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    maxPositions: 128,
    eosTokenId: tok.eosId,
  });
// rule reward: the first response byte mod 7; the record flagged `flat` always scores 1 (a tie)
const reward = rewardFunction('rule', (r) => (r.record?.flat ? 1 : r.responseIds[0] % 7));
const prompts = [{ prompt: 'a:' }, { prompt: 'b:' }, { prompt: 'c:', flat: true }, { prompt: 'd:' }, 'e:'];
const sampling = { maxNewTokens: 6, temperature: 1 };

t.test('best vs worst of K = 4 samples per prompt; ties dropped; deterministic', async (t) => {
  const policy = await Model.create(config(), { seed: 31 });
  const out = await PreferenceTrainer.buildPairs({
    policy,
    tokenizer: tok,
    prompts,
    reward,
    samples: 4,
    sampling,
    seed: 5,
  });
  t.equal(out.groups.length, 5, 'one scored group per prompt');
  t.equal(out.droppedTies, 1, 'the all-equal prompt gives no pair');
  t.equal(out.pairs.length, 4);
  // the same samples, straight from the rollout: group p is rows 4p..4p+3
  const roll = await generateRollout({
    policy,
    tokenizer: tok,
    prompts: prompts.map((p) => (typeof p === 'string' ? { prompt: p } : p)),
    samplesPerPrompt: 4,
    sampling,
    seed: 5,
  });
  for (const [p, g] of out.groups.entries()) {
    t.same(
      g.responses,
      roll.samples.slice(4 * p, 4 * p + 4).map((s) => s.text),
      `group ${p}: the rollout's texts`,
    );
    t.same(
      g.scores,
      roll.samples.slice(4 * p, 4 * p + 4).map((s) => (p === 2 ? 1 : s.responseIds[0] % 7)),
      `group ${p}: the rule's scores`,
    );
  }
  for (const pair of out.pairs) {
    const g = out.groups.find((x) => x.prompt === pair.prompt)!;
    t.equal(pair.chosenScore, Math.max(...g.scores));
    t.equal(pair.rejectedScore, Math.min(...g.scores));
    t.ok(pair.chosenScore > pair.rejectedScore);
    t.equal(pair.chosen, g.responses[g.scores.indexOf(pair.chosenScore)], 'chosen: the first best-scored sample');
    t.equal(
      pair.rejected,
      g.responses[g.scores.lastIndexOf(pair.rejectedScore)],
      'rejected: the last worst-scored sample',
    );
  }
  t.comment(out.pairs.map((p) => `${p.prompt}: ${p.chosenScore} vs ${p.rejectedScore}`).join('; '));
  const again = await PreferenceTrainer.buildPairs({
    policy,
    tokenizer: tok,
    prompts,
    reward,
    samples: 4,
    sampling,
    seed: 5,
  });
  t.same(again, out, 'same seed, same pairs');

  // the output feeds the trainers directly: DPO on the pairs, EXO-rw on the K = 4 groups
  const dpo = await new PreferenceTrainer({
    policy: await policy.clone(),
    tokenizer: tok,
    loss: 'dpo',
    train: out.pairs,
    eval: out.pairs,
    seqLen: 32,
    batchSize: 4,
    epochs: 8,
    lr: 3e-3,
  }).train();
  t.ok(dpo.eval!.accuracy === 1 && dpo.eval!.margin > 0, `DPO on online pairs: margin ${dpo.eval!.margin.toFixed(3)}`);
  const exo = await new PreferenceTrainer({
    policy: await policy.clone(),
    tokenizer: tok,
    loss: 'exo-rw',
    betaPi: 0.5,
    betaR: 0.5,
    train: out.groups.filter((_, i) => i !== 2),
    eval: out.groups.filter((_, i) => i !== 2),
    seqLen: 32,
    batchSize: 4,
    epochs: 8,
    lr: 3e-3,
  }).train();
  t.ok(
    exo.eval!.margin > 0,
    `EXO-rw on online groups: best-vs-worst implicit reward margin ${exo.eval!.margin.toFixed(3)}`,
  );
});

t.test('errors', async (t) => {
  const policy = await Model.create(config(), { seed: 31 });
  await t.rejects(PreferenceTrainer.buildPairs({ policy, tokenizer: tok, prompts, reward, samples: 1, sampling }), {
    name: 'RangeError',
    message: /options\.samples/,
  });
  await t.rejects(
    PreferenceTrainer.buildPairs({ policy, tokenizer: tok, prompts, reward, samples: 2, sampling, n: 2 } as never),
    { message: /unknown option options\.n/ },
  );
  await t.rejects(PreferenceTrainer.buildPairs({ policy, tokenizer: tok, prompts: [], reward, samples: 2, sampling }), {
    message: /options\.prompts/,
  });
});

t.test('generateRollout: defaults and validated options', async (t) => {
  const policy = await Model.create(config(), { seed: 2 });
  const prompts = [{ prompt: 'a' }, { prompt: 'b' }];
  const one = await generateRollout({ policy, tokenizer: tok, prompts, sampling: { maxNewTokens: 3 } });
  t.equal(one.samples.length, 2, 'one sample per prompt by default');
  t.equal(one.samplesPerPrompt, 1);
  const seeded = await generateRollout({
    policy,
    tokenizer: tok,
    prompts,
    sampling: { maxNewTokens: 3 },
    seed: 0,
    samplesPerPrompt: 1,
  });
  t.same(
    seeded.samples.map((s) => Array.from(s.responseIds)),
    one.samples.map((s) => Array.from(s.responseIds)),
    'seed 0 is the default',
  );
  await t.rejects(
    generateRollout({ policy, tokenizer: tok, prompts, sampling: { maxNewTokens: 3 }, samplesPerPrompt: 0 }),
    /generateRollout: expected options\.samplesPerPrompt to be an integer >= 1/,
  );
  await t.rejects(
    generateRollout({ policy, tokenizer: tok, prompts: [], sampling: { maxNewTokens: 3 } }),
    /options\.prompts/,
  );
  await t.rejects(
    generateRollout({ policy, tokenizer: tok, prompts, sampling: { maxNewTokens: 0 } }),
    /options\.sampling\.maxNewTokens/,
  );
  await t.rejects(
    generateRollout({ policy, tokenizer: tok, prompts, sampling: { maxNewTokens: 3 }, sampels: 2 } as never),
    /unknown.*sampels/,
  );
  policy.dispose();
});
