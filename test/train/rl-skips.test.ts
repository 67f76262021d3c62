// The policy-gradient loop's NaN/Inf guard goes through TrainingRun.skip: each skipped update is a
// 'skip' event and a warning, and maxConsecutiveSkips skipped updates in a row (policy and critic
// each counting) stop the run with an error; 0 never stops; applied updates end a run of skips.
import t from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { rewardFunction } from '../../lib/rewards/types.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { PPOTrainer, type PPOOptions } from '../../lib/train/ppo.js';
import { tinyRlConfig } from '../helpers/rl-setup.js';

setThreads(1);
const tok = new ByteTokenizer();
const prompts = ['q:', 'w:', 'e:', 'r:'].map((prompt) => ({ prompt }));

/** PPO whose rewards overflow fp32 in the iterations `bad` (every update of those skipped), 3 iterations of 2 minibatches. */
async function ppo(bad: number[], opts: Partial<PPOOptions>) {
  const policy = await Model.create(tinyRlConfig(tok), { seed: 1 });
  const critic = await Model.create(tinyRlConfig(tok, true), { seed: 2 });
  let round = 0;
  const reward = rewardFunction('overflowing', () => (bad.includes(round) ? 1e300 : 0.5));
  const score = reward.score.bind(reward);
  reward.score = async (batch) => {
    const s = await score(batch);
    round++;
    return s;
  };
  const trainer = new PPOTrainer({
    policy,
    critic,
    tokenizer: tok,
    reward,
    prompts,
    baseline: 'none',
    whitenAdvantages: false,
    iterations: 3,
    promptsPerIteration: 4,
    miniBatchSize: 2,
    sampling: { maxNewTokens: 4 },
    lr: 1e-3,
    ...opts,
  });
  const skips: Array<{ step: number; consecutive: number; reason: string }> = [];
  trainer.on('skip', (e) => skips.push(e));
  const steps: Record<string, number>[] = [];
  trainer.on('step', (e) => steps.push(e.metrics));
  const done = trainer.train();
  return { done, skips, steps, dispose: () => (trainer.dispose(), policy.dispose(), critic.dispose()) };
}

t.test('maxConsecutiveSkips skipped updates in a row stop the run', async (t) => {
  const r = await ppo([1, 2], { maxConsecutiveSkips: 3 });
  t.teardown(r.dispose);
  await t.rejects(r.done, {
    name: 'RlhfError',
    code: 'ERR_RLHF_OUT_OF_RANGE',
    message:
      /^ppo: stopped at step 2: 3 updates in a row were skipped \(non-finite loss or gradients; the last: policy update: non-finite loss\)/,
  });
  t.equal(r.steps.length, 1, 'iteration 1 trained normally');
  t.same(
    r.skips.map((s) => [s.step, s.consecutive, s.reason]),
    [
      [2, 1, 'policy update: non-finite loss'],
      [2, 2, 'critic update: non-finite loss'],
      [2, 3, 'policy update: non-finite loss'],
    ],
    'skip events: iteration 2, policy and critic of the first minibatch, then the next policy update',
  );
});

t.test('maxConsecutiveSkips 0 never stops', async (t) => {
  const r = await ppo([1, 2], { maxConsecutiveSkips: 0 });
  t.teardown(r.dispose);
  const res = await r.done;
  t.equal(res.iterations, 3);
  t.equal(res.skippedSteps, 8, 'iterations 2 and 3: two minibatches × (policy, critic)');
  t.same(
    r.steps.map((m) => m.skippedSteps),
    [0, 4, 8],
  );
});

t.test('an iteration of applied updates ends a run of skips', async (t) => {
  const r = await ppo([0, 2], {}); // default: at most 5 in a row
  t.teardown(r.dispose);
  const res = await r.done;
  t.equal(res.skippedSteps, 8, 'eight skipped updates in all');
  t.same(
    r.skips.map((s) => s.consecutive),
    [1, 2, 3, 4, 1, 2, 3, 4],
    'counted in a row, reset by iteration 2',
  );
});
