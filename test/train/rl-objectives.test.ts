// Dr. GRPO, GSPO and DAPO dynamic sampling in the group trainer: the first (on-policy) loss equals
// the paper's formula by hand, each raises the reward it optimises, and dynamic sampling never
// trains on a group whose rewards are all equal.
import t from 'tap';
import { tinyRlConfig } from '../helpers/rl-setup.js';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { grpoAdvantages } from '../../lib/losses/index.js';
import { rewardFunction } from '../../lib/rewards/types.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { GroupTrainer, type GroupOptions } from '../../lib/train/group.js';

setThreads(1);
const tok = new ByteTokenizer();
const cfg = () => tinyRlConfig(tok);
const prompts = ['q:', 'w:', 'e:', 'r:', 't:', 'y:', 'u:', 'i:'].map((prompt) => ({ prompt }));
const sampling = { maxNewTokens: 8, temperature: 1 };
const fractionOfA = (s: string) => (s.length ? [...s].filter((ch) => ch === 'a').length / s.length : 0);
const sum = (x: number[]) => x.reduce((a, b) => a + b, 0);
const mean = (x: number[]) => sum(x) / x.length;

async function train(
  opts: Partial<GroupOptions>,
  reward = rewardFunction('fraction-of-a', (r) => fractionOfA(r.response)),
) {
  const policy = await Model.create(cfg(), { seed: 1 });
  const trainer = new GroupTrainer({
    policy,
    tokenizer: tok,
    reward,
    prompts,
    iterations: 12,
    promptsPerIteration: 4,
    samplesPerPrompt: 6,
    sampling,
    lr: 2e-2,
    seed: 3,
    ...opts,
  });
  const metrics: Array<Record<string, number>> = [];
  trainer.on('step', (e) => metrics.push(e.metrics));
  const r = await trainer.train();
  trainer.dispose();
  return { r, metrics, policy };
}

/** One on-policy iteration with a dense reward (the ASCII fraction), recording lengths and scores in sample order. */
async function firstStep(opts: Partial<GroupOptions>) {
  const lens: number[] = [],
    scores: number[] = [];
  const reward = rewardFunction('ascii', (r) => {
    const s = r.responseIds.length ? [...r.responseIds].filter((id) => id < 128).length / r.responseIds.length : 0;
    (lens.push(r.responseIds.length), scores.push(s));
    return s;
  });
  const { metrics, policy } = await train({ iterations: 1, ...opts }, reward);
  policy.dispose();
  return { m: metrics[0], lens, scores };
}
const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));

t.test(
  'Dr. GRPO: loss = −Σ_b |y_b| (R_b − mean_g R) / (B · maxNewTokens) at the first step; the reward rises',
  async (t) => {
    const { m, lens, scores } = await firstStep({ estimator: 'dr-grpo' });
    const A = Array.from(grpoAdvantages(scores, 6, { scale: false }), Math.fround);
    const expected = -sum(A.map((a, b) => a * lens[b])) / (scores.length * sampling.maxNewTokens);
    t.ok(Math.abs(expected) > 1e-3, 'a discriminating case');
    t.ok(close(m.policyLoss, expected), `first loss ${m.policyLoss} vs ${expected}`);
    const grpo = await firstStep({});
    t.notOk(close(grpo.m.policyLoss, expected), 'GRPO gives another loss');
    const { r, policy } = await train({ estimator: 'dr-grpo' });
    const first = mean(r.rewardHistory.slice(0, 2)),
      last = mean(r.rewardHistory.slice(-2));
    t.ok(last > first + 0.15, `mean reward ${first.toFixed(3)} -> ${last.toFixed(3)}`);
    policy.dispose();
  },
);

t.test('GSPO: at π = π_old every sequence ratio is 1, loss = −Σ_b w_b A_b; the reward rises', async (t) => {
  const { m, lens, scores } = await firstStep({ lossMode: 'gspo', aggregation: 'seq-mean-token-sum' });
  const A = Array.from(grpoAdvantages(scores, 6), Math.fround);
  const expected = -sum(A.map((a, b) => a * lens[b])) / A.length;
  t.ok(Math.abs(expected) > 1e-3, 'a discriminating case');
  t.ok(close(m.policyLoss, expected), `first loss ${m.policyLoss} vs ${expected}`);
  t.equal(m.clipFraction, 0);
  const { r, policy } = await train({ lossMode: 'gspo' });
  const first = mean(r.rewardHistory.slice(0, 2)),
    last = mean(r.rewardHistory.slice(-2));
  t.ok(last > first + 0.15, `mean reward ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  policy.dispose();
});

t.test('DAPO dynamic sampling: zero-variance groups are dropped and refilled; the reward rises', async (t) => {
  // prompts q, w, e, r always score 7 (a constant no other response reaches): a trained group of
  // theirs would lift the iteration's mean reward above 1
  const constant = new Set(['q:', 'w:', 'e:', 'r:']);
  const reward = rewardFunction('mixed', (r) => (constant.has(r.prompt as string) ? 7 : fractionOfA(r.response)));
  const { r, metrics, policy } = await train({ dynamicSampling: { maxRounds: 6 } }, reward);
  for (const [i, m] of metrics.entries()) {
    t.ok(
      m.rewardMean <= 1,
      `iteration ${i + 1}: no constant group trained (mean reward ${m.rewardMean.toFixed(3)}, ${m.keptGroups} groups kept, ${m.discardedGroups} dropped)`,
    );
  }
  t.ok(sum(metrics.map((m) => m.discardedGroups)) > 0, 'some groups were dropped');
  t.ok(metrics.every((m) => m.keptGroups <= 4));
  t.ok(metrics.filter((m) => m.keptGroups === 4).length >= 6, 'most batches filled');
  const first = mean(r.rewardHistory.slice(0, 2)),
    last = mean(r.rewardHistory.slice(-2));
  t.ok(last > first + 0.15, `mean reward ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  policy.dispose();
});

t.test(
  'dynamic sampling with no varying group: no update at all (weights unchanged), a warning each iteration',
  async (t) => {
    const policy = await Model.create(cfg(), { seed: 1 });
    const before = await policy.getParameter('model.embed_tokens.weight');
    const trainer = new GroupTrainer({
      policy,
      tokenizer: tok,
      reward: rewardFunction('one', () => 1),
      prompts,
      iterations: 2,
      promptsPerIteration: 2,
      samplesPerPrompt: 3,
      sampling,
      lr: 1e-1,
      dynamicSampling: { maxRounds: 2 },
    });
    const logs: string[] = [];
    trainer.on('log', (e) => logs.push(e.message));
    const metrics: Array<Record<string, number>> = [];
    trainer.on('step', (e) => metrics.push(e.metrics));
    await trainer.train();
    trainer.dispose();
    const after = await policy.getParameter('model.embed_tokens.weight');
    t.ok(
      before.every((v, i) => v === after[i]),
      'weights unchanged',
    );
    t.same(
      metrics.map((m) => m.keptGroups),
      [0, 0],
    );
    t.equal(
      logs.filter((l) => /dynamic sampling found 0 of 2 groups with varying rewards in 2 rounds/.test(l)).length,
      2,
    );
    t.throws(
      () =>
        new GroupTrainer({
          policy,
          tokenizer: tok,
          reward: rewardFunction('one', () => 1),
          prompts,
          iterations: 1,
          dynamicSampling: { maxRounds: 0 },
        }),
      /options\.dynamicSampling\.maxRounds/,
    );
    t.throws(
      () =>
        new GroupTrainer({
          policy,
          tokenizer: tok,
          reward: rewardFunction('one', () => 1),
          prompts,
          iterations: 1,
          lossMode: 'seq' as never,
        }),
      /options\.lossMode/,
    );
    policy.dispose();
  },
);
