// Rewards the policy-gradient loop must survive or refuse clearly: finite rewards of ±3e38 (PPO's
// whitening runs in float64), a reward source returning NaN/Infinity (onInvalidReward: 'error'
// names the sample, 'skip' drops it — for GRPO its whole group — with a warning), and a batch with
// zero reward variance (a warning: no gradient).
import t from 'tap';
import { asciiFraction, tinyRlConfig } from '../helpers/rl-setup.js';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { RlhfError } from '../../lib/errors.js';
import { rewardFunction, type RewardSource } from '../../lib/rewards/types.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { GroupTrainer } from '../../lib/train/group.js';
import { PPOTrainer } from '../../lib/train/ppo.js';

setThreads(1);
const tok = new ByteTokenizer();
const cfg = (valueHead = false) => tinyRlConfig(tok, valueHead);
const prompts = ['q:', 'w:', 'e:', 'r:'].map((prompt) => ({ prompt }));
const sampling = { maxNewTokens: 6, temperature: 1 };
const ascii = asciiFraction;

async function finiteWeights(m: Model): Promise<boolean> {
  for (const p of m.parameters()) if (!(await m.getParameter(p.name)).every(Number.isFinite)) return false;
  return true;
}

async function run(kind: 'ppo' | 'grpo', reward: RewardSource, extra: Record<string, unknown> = {}) {
  const policy = await Model.create(cfg(), { seed: 1, initStd: 0.3 });
  const critic = kind === 'ppo' ? await Model.create(cfg(true), { seed: 2 }) : undefined;
  const common = {
    policy,
    tokenizer: tok,
    reward,
    prompts,
    iterations: 3,
    promptsPerIteration: 4,
    sampling,
    lr: 1e-2,
    seed: 3,
    ...extra,
  };
  const trainer =
    kind === 'ppo'
      ? new PPOTrainer({ ...common, critic: critic!, samplesPerPrompt: 2 })
      : new GroupTrainer({ ...common, samplesPerPrompt: 3 });
  const logs: string[] = [];
  const metrics: Array<Record<string, number>> = [];
  trainer.on('log', (e) => logs.push(e.message));
  trainer.on('step', (e) => metrics.push(e.metrics));
  try {
    const r = await trainer.train();
    return { r, logs, metrics, finite: await finiteWeights(policy) };
  } finally {
    trainer.dispose();
    policy.dispose();
    critic?.dispose();
  }
}

const huge = rewardFunction('huge', (r) => (ascii(r.responseIds) > 0.5 ? 3e38 : -3e38));
for (const baseline of ['none', 'reference', 'normalize'] as const) {
  t.test(`PPO (baseline ${baseline}) trains on finite rewards of ±3e38`, async (t) => {
    const { r, finite } = await run('ppo', huge, { baseline });
    t.equal(r.iterations, 3);
    t.ok(finite, 'the policy stays finite');
  });
}
t.test('GRPO trains on finite rewards of ±3e38', async (t) => {
  const { r, finite } = await run('grpo', huge);
  t.equal(r.iterations, 3);
  t.ok(finite);
});

/** NaN on every 5th call, else the ASCII fraction. */
function flaky(): RewardSource {
  let calls = 0;
  return rewardFunction('flaky', (r) => (++calls % 5 === 0 ? NaN : ascii(r.responseIds)));
}

for (const kind of ['ppo', 'grpo'] as const) {
  t.test(`${kind}: onInvalidReward 'error' (default) names the prompt, the sample and the source`, async (t) => {
    const err = await run(kind, flaky()).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof RlhfError, 'an RlhfError');
    t.match(
      (err as Error).message,
      /reward source "flaky" returned NaN for a response \(prompt \d+, sample \d+\).*onInvalidReward/,
    );
  });

  t.test(
    `${kind}: onInvalidReward 'skip' drops the sample (GRPO: its group) with a warning and trains on`,
    async (t) => {
      const { r, logs, metrics, finite } = await run(kind, flaky(), {
        onInvalidReward: 'skip',
        ...(kind === 'ppo' ? { baseline: 'none' } : {}),
      });
      t.equal(r.iterations, 3);
      t.ok(finite);
      const warnings = logs.filter((l) => /warning: reward source "flaky" returned NaN .*sample dropped/.test(l));
      const dropped = metrics.reduce((a, m) => a + m.droppedSamples, 0);
      t.ok(warnings.length > 0, `${warnings.length} warnings`);
      if (kind === 'grpo') {
        t.ok(dropped >= warnings.length, 'whole groups dropped');
        for (const m of metrics) t.equal(m.droppedSamples % 3, 0, 'a multiple of the group size');
      } else t.equal(dropped, warnings.length, 'one sample per invalid reward');
      t.ok(r.rewardHistory.every(Number.isFinite), 'mean rewards over the kept samples');
    },
  );
}

t.test(
  "skip with PPO's reference baseline: an invalid y_ref score drops that prompt's samples and is not cached",
  async (t) => {
    let calls = 0;
    const reward = rewardFunction('ref-nan', (r) => (++calls === 9 ? Infinity : ascii(r.responseIds))); // call 9: the first y_ref
    const { r, logs, metrics } = await run('ppo', reward, { onInvalidReward: 'skip', iterations: 2 });
    t.equal(r.iterations, 2);
    t.ok(logs.some((l) => /returned Infinity for the reference response y_ref \(prompt \d+, sample 0\)/.test(l)));
    t.equal(metrics[0].droppedSamples, 2, "that prompt's 2 samples dropped");
  },
);

t.test('a batch with zero reward variance is a warning (group methods); a varying one is not', async (t) => {
  const constant = await run(
    'grpo',
    rewardFunction('constant', () => 1),
    { iterations: 1 },
  );
  t.ok(constant.logs.some((l) => /warning: iteration 1: every group's rewards are equal \(zero variance\)/.test(l)));
  const rpp = await run(
    'grpo',
    rewardFunction('constant', () => 1),
    { iterations: 1, estimator: 'reinforce++' },
  );
  t.ok(rpp.logs.some((l) => /every reward of the batch is equal/.test(l)));
  const varying = await run(
    'grpo',
    rewardFunction('varying', (r) => r.responseIds.length + ascii(r.responseIds)),
    { iterations: 1 },
  );
  t.notOk(varying.logs.some((l) => /zero variance/.test(l)));
});

t.test('onInvalidReward is validated', async (t) => {
  const policy = await Model.create(cfg(), { seed: 1 });
  t.teardown(() => policy.dispose());
  t.throws(
    () =>
      new GroupTrainer({
        policy,
        tokenizer: tok,
        reward: flaky(),
        prompts,
        iterations: 1,
        onInvalidReward: 'drop' as never,
      }),
    /options\.onInvalidReward/,
  );
});
