// Multi-turn GRPO with the calculator tool environment on the demo task's additions: a tiny policy,
// SFT-warmed on a 50/50 mix of tool-using conversations ("calc a+b", the result, the answer) and
// direct guesses, learns under GRPO (reward 1 for a correct final answer) to call the tool: the
// tool-call rate and the reward rise; the first minibatch's ratios are exactly 1 on the policy's
// tokens (environment tokens masked out, their log-probs not compared); PPO with a critic on the
// same episodes runs with GAE over the policy's tokens only.
import t from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { allPrompts } from '../../lib/demo/task.js';
import { CalculatorEnvironment } from '../../lib/demo/calculator.js';
import { multiTurnRollout, readEnvironmentOptions } from '../../lib/rollout/environment.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { SFTTrainer } from '../../lib/train/sft.js';
import { GroupTrainer } from '../../lib/train/group.js';
import { PPOTrainer } from '../../lib/train/ppo.js';
import { rng } from '../../lib/demo/task.js';

setThreads(1);
const tok = new ByteTokenizer();
const tasks = allPrompts().filter((p) => p.format === 'number');
const records = tasks.map((p) => ({ prompt: p.messages, answer: p.a + p.b }));
const environment = { create: () => new CalculatorEnvironment(), maxTurns: 3 };
const sampling = { maxNewTokens: 12, temperature: 1 };
const cfg = (valueHead = false) =>
  tinyConfig({
    vocab: 264,
    hidden: 64,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 128,
    maxPositions: 128,
    eosTokenId: tok.eosId,
    valueHead,
  });

/** Fraction of episodes whose first turn calls the tool, and their mean reward. */
async function measure(policy: Model, seed: number) {
  const r = await multiTurnRollout({
    policy,
    tokenizer: tok,
    prompts: records,
    samplesPerPrompt: 2,
    sampling,
    seed,
    streamBase: 0,
    environment: readEnvironmentOptions('test', environment),
  });
  const calls = r.samples.filter((s) => /^calc /.test(s.turns![0].content)).length;
  const reward = r.samples.reduce((a, s) => a + s.envReward!, 0);
  return { callRate: calls / r.samples.length, reward: reward / r.samples.length, rollout: r };
}

t.test('GRPO learns to call the calculator', async (t) => {
  const t0 = performance.now();
  const policy = await Model.create(cfg(), { seed: 1 });
  const r = rng(5);
  const sft = tasks.flatMap((p) => {
    const s = p.a + p.b;
    return [
      {
        messages: [
          ...p.messages,
          { role: 'assistant', content: `calc ${p.a}+${p.b}` },
          { role: 'user', content: String(s) },
          { role: 'assistant', content: String(s) },
        ],
      },
      { messages: [...p.messages, { role: 'assistant', content: String(Math.floor(r() * 19)) }] },
    ];
  });
  await new SFTTrainer({
    model: policy,
    tokenizer: tok,
    train: sft,
    seqLen: 96,
    batchSize: 16,
    epochs: 30,
    lr: 3e-3,
  }).train();
  const tSft = performance.now();
  const before = await measure(policy, 11);
  t.comment(`after SFT (${((tSft - t0) / 1000).toFixed(1)} s): tool calls ${before.callRate}, reward ${before.reward}`);
  const steps: Record<string, number>[] = [];
  const trainer = new GroupTrainer({
    policy,
    tokenizer: tok,
    prompts: records,
    environment,
    iterations: 20,
    promptsPerIteration: 8,
    samplesPerPrompt: 4,
    sampling,
    lr: 5e-4,
    seed: 2,
  });
  trainer.on('step', (e) => steps.push(e.metrics));
  const transcripts: string[] = [];
  trainer.on('rollout', (e) => transcripts.push(...e.samples.map((x) => x.response)));
  const res = await trainer.train();
  const after = await measure(policy, 12);
  t.comment(
    `after GRPO (${((performance.now() - tSft) / 1000).toFixed(1)} s): tool calls ${after.callRate}, reward ${after.reward}; history ${res.rewardHistory.map((x) => x.toFixed(2)).join(' ')}`,
  );
  t.equal(steps[0].rolloutLogprobDiffMax, 0, 'the first ratios are exactly 1 on the policy tokens');
  t.ok(
    transcripts.some((x) => /^assistant: calc .+\nuser: \d+\nassistant: /.test(x)),
    'rollout events show whole episodes (assistant / user turns)',
  );
  t.ok(after.callRate > before.callRate + 0.2, `tool-call rate ${before.callRate} -> ${after.callRate}`);
  t.ok(after.reward > before.reward + 0.15, `reward ${before.reward} -> ${after.reward}`);
  trainer.dispose();

  // PPO on the same episodes: GAE over the policy's tokens only (environment tokens are not time steps)
  const critic = await Model.create(cfg(true), { seed: 3 });
  const ppo = new PPOTrainer({
    policy,
    critic,
    tokenizer: tok,
    prompts: records,
    environment: { ...environment, reward: 'sum' },
    baseline: 'none',
    iterations: 2,
    promptsPerIteration: 4,
    sampling,
    lr: 1e-4,
    seed: 4,
  });
  const ppoSteps: Record<string, number>[] = [];
  ppo.on('step', (e) => ppoSteps.push(e.metrics));
  await ppo.train();
  t.equal(ppoSteps[0].rolloutLogprobDiffMax, 0, 'PPO: first ratios exactly 1');
  t.ok(
    ppoSteps.every((m) => Number.isFinite(m.valueLoss) && Number.isFinite(m.policyLoss)),
    'PPO: finite policy and value losses',
  );
  ppo.dispose();
});
