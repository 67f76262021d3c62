// Per-turn rewards of multi-turn episodes (environment.turnRewards 'per-turn'): a tiny environment
// whose step k pays a known reward; each reward sits at the last token of the policy turn it
// follows (the token before the environment's tokens, or the episode's last token); PPO's token
// rewards carry them there with the rest of the score at the last token, and GAE with γ = λ = 1
// and a zero critic gives every token the rewards from its turn on; the group methods sum them.
import t from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { tokenRewards } from '../../lib/losses/index.js';
import {
  multiTurnRollout,
  readEnvironmentOptions,
  type EpisodeSample,
  type Environment,
} from '../../lib/rollout/environment.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { GroupTrainer } from '../../lib/train/group.js';
import { sampleTokenRewards } from '../../lib/train/policy-gradient-stats.js';
import { PPOTrainer } from '../../lib/train/ppo.js';
import { tinyRlConfig } from '../helpers/rl-setup.js';

setThreads(1);

/** The byte tokenizer with every byte >= 128 a stop token too: a random policy's turns end after a couple of tokens. */
class QuickStop extends ByteTokenizer {
  override readonly stopIds = [262, 258, ...Array.from({ length: 128 }, (_, i) => 128 + i)];
}
const tok = new QuickStop();
const PAY = [0.5, -1, 2];

/** Pays PAY[k] for its k-th step; done after the third. `paid` is what it has paid so far. */
class Paying implements Environment {
  #k = 0;
  paid = 0;
  reset(): undefined {
    this.#k = 0;
    return undefined;
  }
  step(): { observation: string; reward: number; done: boolean } {
    const k = this.#k++;
    this.paid += PAY[k];
    return { observation: `ok${k}`, reward: PAY[k], done: k === PAY.length - 1 };
  }
}
const environment = { create: () => new Paying(), maxTurns: 3 };
const prompts = ['a:', 'b:', 'c:', 'd:'].map((prompt) => ({ prompt }));
const sampling = { maxNewTokens: 6, temperature: 1 };

/** The response indices where the policy's turns end: a policy token followed by an environment token, or the last token. */
function turnEnds(s: EpisodeSample): number[] {
  const m = s.lossMask!;
  return [...m.keys()].filter((i) => m[i] === 1 && (i === m.length - 1 || m[i + 1] === 0));
}

t.test('tokenRewards: stepRewards at their positions, sums preserved, none on a masked position', async (t) => {
  const r = tokenRewards({
    score: 3,
    kl: [0.1, 0.2, 0, 0.3],
    klCoef: 0.5,
    mask: [1, 1, 0, 1],
    stepRewards: [0, 2, 0, -1],
  });
  t.same([...r.rewards], [-0.05, -0.1 + 2, 0, -0.15 + 3 - 1]);
  t.throws(() => tokenRewards({ score: 0, kl: [0, 0], klCoef: 0, mask: [1, 0], stepRewards: [0, 1] }), {
    name: 'RangeError',
    message: /stepRewards\[1\] to be 0 where mask is 0/,
  });
});

t.test('per-turn rewards sit at the last token of the turn they follow', async (t) => {
  const policy = await Model.create(tinyRlConfig(tok), { seed: 1 });
  t.teardown(() => policy.dispose());
  const rollout = async (turnRewards: 'final' | 'per-turn') =>
    multiTurnRollout({
      policy,
      tokenizer: tok,
      prompts,
      samplesPerPrompt: 2,
      sampling,
      seed: 4,
      environment: readEnvironmentOptions('test', { ...environment, turnRewards }),
    });
  const perTurn = await rollout('per-turn');
  const final = await rollout('final');
  let complete = 0;
  perTurn.samples.forEach((s: EpisodeSample, r) => {
    const ends = turnEnds(s);
    const steps = s.turns!.filter((m) => m.role === 'assistant').length - (s.finishReason === 'length' ? 1 : 0);
    const expected = new Float64Array(s.responseIds.length);
    ends.slice(0, steps).forEach((i, k) => (expected[i] = PAY[k]));
    t.same([...s.turnRewards!], [...expected], `row ${r}: ${steps} paid turns, rewards at ${ends.slice(0, steps)}`);
    t.equal(
      s.envReward,
      PAY.slice(0, steps).reduce((a, b) => a + b, 0),
      `row ${r}: envReward is their sum`,
    );
    if (steps === PAY.length) complete++;
    t.same([...final.samples[r].responseIds], [...s.responseIds], 'the same episode without per-turn placement');
    t.equal((final.samples[r] as EpisodeSample).turnRewards, undefined, "'final': no per-turn placement");
    // PPO's token rewards (score R = env sum + 0.25 from a reward source; klCoef 0)
    const mask = Float64Array.from(s.lossMask!);
    const R = s.envReward! + 0.25;
    const rewards = sampleTokenRewards(s, R, new Float64Array(mask.length), 0, mask);
    const want = Float64Array.from(expected);
    want[ends.at(-1)!] += 0.25;
    t.same([...rewards], [...want], `row ${r}: token rewards`);
    const flat = sampleTokenRewards(final.samples[r], R, new Float64Array(mask.length), 0, mask);
    t.equal(flat[ends.at(-1)!], R, `row ${r}: 'final' puts all of R on the last token`);
  });
  t.ok(complete > 0, `${complete} of ${perTurn.samples.length} episodes took all three paid turns`);
  t.throws(() => readEnvironmentOptions('fn', { ...environment, turnRewards: 'per-turn', reward: 'final' }), {
    message: /options\.environment\.reward to be 'sum' \(or absent\) with turnRewards 'per-turn'/,
  });
});

t.test("PPO with γ = λ = 1 and a zero critic: each token's advantage is the reward from its turn on", async (t) => {
  const policy = await Model.create(tinyRlConfig(tok), { seed: 2 });
  const critic = await Model.create(tinyRlConfig(tok, true), { seed: 3 });
  t.teardown(() => (policy.dispose(), critic.dispose()));
  const heads = critic.parameters().filter((p) => /score/.test(p.name));
  t.ok(heads.length > 0, `zeroing ${heads.map((p) => p.name).join(', ')}`);
  for (const p of heads)
    await critic.setParameter(p.name, new Float32Array((await critic.getParameter(p.name)).length));
  const trainer = new PPOTrainer({
    policy,
    critic,
    tokenizer: tok,
    prompts,
    environment: { ...environment, turnRewards: 'per-turn' },
    iterations: 1,
    promptsPerIteration: 4,
    sampling,
    lr: 0,
    criticLr: 0,
    gamma: 1,
    lambda: 1,
    kl: { coef: 0 },
    baseline: 'none',
    whitenAdvantages: false,
    seed: 6,
  });
  const events: Array<{ advantage: number; reward: number; prompt: string }> = [];
  trainer.on('rollout', (e) => events.push(...e.samples));
  const steps: Record<string, number>[] = [];
  trainer.on('step', (e) => steps.push(e.metrics));
  await trainer.train();
  trainer.dispose();
  // the episodes the trainer sampled: the same rollout again (lr 0: the same weights; its prompt order, seed and streams)
  const again = await multiTurnRollout({
    policy,
    tokenizer: tok,
    prompts: events.map((e) => ({ prompt: e.prompt })),
    samplesPerPrompt: 1,
    sampling,
    seed: 6,
    streamBase: 0,
    environment: readEnvironmentOptions('test', { ...environment, turnRewards: 'per-turn' }),
  });
  t.equal(steps[0].rolloutLogprobDiffMax, 0, 'first ratios exactly 1');
  again.samples.forEach((s: EpisodeSample, r) => {
    // A_t = Σ_{t' >= t} r_t' over the policy's tokens: a token of turn k gets Σ_{j >= k} ρ_j
    const m = s.lossMask!,
      w = s.turnRewards!;
    let sum = 0,
      n = 0,
      after = w.reduce((a, x) => a + x, 0);
    for (let i = 0; i < m.length; i++) {
      if (!m[i]) continue;
      sum += after;
      n++;
      after -= w[i];
    }
    t.ok(
      Math.abs(events[r].advantage - sum / n) <= 1e-6,
      `row ${r}: mean advantage ${events[r].advantage.toFixed(6)} = ${(sum / n).toFixed(6)} (reward ${events[r].reward})`,
    );
  });
  t.ok(
    events.some((e) => Math.abs(e.advantage - e.reward) > 1e-3),
    'per-turn credit is not the final reward spread over every token',
  );
});

t.test('group methods: the per-turn rewards are summed into the episode score', async (t) => {
  const policy = await Model.create(tinyRlConfig(tok), { seed: 2 });
  t.teardown(() => policy.dispose());
  const envs: Paying[] = [];
  const trainer = new GroupTrainer({
    policy,
    tokenizer: tok,
    prompts,
    environment: { create: () => envs[envs.push(new Paying()) - 1], maxTurns: 3, turnRewards: 'per-turn' },
    iterations: 1,
    promptsPerIteration: 2,
    samplesPerPrompt: 4,
    sampling,
    lr: 1e-3,
    seed: 6,
  });
  const events: Array<{ reward: number }> = [];
  trainer.on('rollout', (e) => events.push(...e.samples));
  await trainer.train();
  trainer.dispose();
  t.equal(events.length, envs.length, 'one environment per episode, created in row order');
  t.same(
    events.map((e) => e.reward),
    envs.map((e) => e.paid),
    `each episode's reward is the sum of what its environment paid (${envs.map((e) => e.paid).join(' ')})`,
  );
  t.ok(new Set(envs.map((e) => e.paid)).size > 1, 'episodes were paid differently');
});
