// Sampling temperature T != 1: the policy-gradient loop computes ratios and KL from the distribution
// it sampled from. Before any update the policy is π_old, so the first minibatch's log-probs equal the
// rollout's bit for bit (ratio exactly 1: no clipping, approx KL 0), and the reference (a copy of the
// policy) gives KL exactly 0 — both only if every forward runs at the sampling temperature.
import t from 'tap';
import { tinyRlConfig } from '../helpers/rl-setup.js';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { rewardFunction } from '../../lib/rewards/types.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { GroupTrainer } from '../../lib/train/group.js';
import { PPOTrainer } from '../../lib/train/ppo.js';

setThreads(1);
const tok = new ByteTokenizer();
const cfg = (valueHead = false) => tinyRlConfig(tok, valueHead);
const prompts = ['q:', 'w:', 'e:', 'r:'].map((prompt) => ({ prompt }));
const asciiFraction = rewardFunction('ascii-fraction', (r) =>
  r.responseIds.length ? [...r.responseIds].filter((id) => id < 128).length / r.responseIds.length : 0,
);

async function firstStep(
  make: (
    policy: Model,
    sampling: { maxNewTokens: number; temperature: number; topK?: number; topP?: number },
  ) => Promise<GroupTrainer | PPOTrainer>,
  sampling: { maxNewTokens: number; temperature: number; topK?: number; topP?: number },
) {
  const policy = await Model.create(cfg(), { seed: 1, initStd: 0.3 });
  const trainer = await make(policy, sampling);
  let metrics: Record<string, number> = {};
  trainer.on('step', (e) => e.step === 1 && (metrics = e.metrics));
  await trainer.train();
  trainer.dispose();
  policy.dispose();
  return metrics;
}

const group = async (policy: Model, sampling: { maxNewTokens: number; temperature: number }) =>
  new GroupTrainer({
    policy,
    tokenizer: tok,
    reward: asciiFraction,
    prompts,
    iterations: 1,
    promptsPerIteration: 4,
    samplesPerPrompt: 3,
    sampling,
    lr: 1e-2,
    kl: { coef: 0.1 },
    seed: 2,
  });
const ppo = async (policy: Model, sampling: { maxNewTokens: number; temperature: number }) =>
  new PPOTrainer({
    policy,
    critic: await Model.create(cfg(true), { seed: 3 }),
    tokenizer: tok,
    reward: asciiFraction,
    prompts,
    iterations: 1,
    promptsPerIteration: 4,
    samplesPerPrompt: 2,
    sampling,
    lr: 1e-2,
    kl: { coef: 0.1 },
    seed: 2,
  });

for (const [name, make] of [
  ['group (GRPO)', group],
  ['PPO', ppo],
] as const) {
  for (const sampling of [
    { maxNewTokens: 8, temperature: 0.7 },
    { maxNewTokens: 8, temperature: 1.6, topK: 20, topP: 0.9 },
  ]) {
    t.test(`${name} at ${JSON.stringify(sampling)}: first ratio exactly 1, initial KL exactly 0`, async (t) => {
      const m = await firstStep(make, sampling);
      t.equal(m.rolloutLogprobDiffMax, 0, 'first minibatch: log π_T == rollout log-probs (bitwise)');
      t.equal(m.clipFraction, 0, 'no token clipped');
      t.equal(m.approxKl, 0, 'approx KL 0: every ratio is exactly 1');
      t.equal(m.kl, 0, 'KL to the reference (a copy of the policy) is exactly 0');
    });
  }
}
