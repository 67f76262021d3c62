// One-step off-policy rollouts (asyncRollouts 1): iteration k + 1's samples are those the weights
// before update k give (checked against generateRollout from those weights, computed by hand),
// not the current weights'; the ratio is then against the behaviour log-probs (the first ratio
// away from 1 after the first iteration; with truncatedIS exactly 1 and weighted); the same seed
// gives the same run twice (also PPO with the reference baseline, whose y_ref are sampled between
// updates, and episodes with per-turn rewards, packing and dynamic sampling); a stopped run resumes
// bit for bit; off by default; refused with rolloutPolicy.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import type { PromptRecord } from '../../lib/data/index.js';
import { rewardFunction } from '../../lib/rewards/types.js';
import { generateRollout } from '../../lib/rollout/generate.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { GroupTrainer, type GroupOptions } from '../../lib/train/group.js';
import { PPOTrainer } from '../../lib/train/ppo.js';
import { CalculatorEnvironment } from '../../lib/demo/calculator.js';
import { asciiFraction, tinyRlConfig } from '../helpers/rl-setup.js';

setThreads(1);
const tok = new ByteTokenizer();
const prompts = ['q:', 'w:', 'e:', 'r:', 't:', 'y:'].map((prompt) => ({ prompt }));
const sampling = { maxNewTokens: 8, temperature: 1 };
const P = 2,
  n = 4;

/** A GRPO run from a fresh policy (seed 1); records each sampling round's prompts, responses and step metrics. */
async function run(iterations: number, opts: Partial<GroupOptions> = {}, stopAt?: number) {
  const policy = await Model.create(tinyRlConfig(tok), { seed: opts.resumeFrom ? 99 : 1, initStd: 0.3 });
  const rounds: Array<{ prompts: PromptRecord[]; responses: Int32Array[] }> = [];
  const reward = rewardFunction('ascii-recorded', (r) => asciiFraction(r.responseIds));
  const score = reward.score.bind(reward);
  reward.score = async (batch) => {
    rounds.push({
      prompts: batch.filter((_, i) => i % n === 0).map((b) => b.record!),
      responses: batch.map((b) => Int32Array.from(b.responseIds!)),
    });
    return score(batch);
  };
  const trainer = new GroupTrainer({
    policy,
    tokenizer: tok,
    reward,
    prompts,
    iterations,
    promptsPerIteration: P,
    samplesPerPrompt: n,
    sampling,
    lr: 3e-2,
    seed: 4,
    ...opts,
  });
  const steps: Record<string, number>[] = [];
  trainer.on('step', (e) => steps.push(e.metrics));
  if (stopAt) trainer.on('step', (e) => e.step === stopAt && trainer.requestStop());
  await trainer.train();
  trainer.dispose();
  return { policy, rounds, steps };
}

/** What generateRollout samples from `policy` for round `k` of a run (its prompts, the loop's streams). */
async function manual(policy: Model, round: { prompts: PromptRecord[] }, k: number): Promise<string[]> {
  const r = await generateRollout({
    policy,
    tokenizer: tok,
    prompts: round.prompts,
    samplesPerPrompt: n,
    sampling,
    seed: 4,
    streamBase: k * P * n,
  });
  return r.samples.map((s) => [...s.responseIds].join());
}
const ids = (x: Int32Array[]) => x.map((r) => [...r].join());

t.test('iteration k + 1 samples from the weights before update k', async (t) => {
  const theta0 = await Model.create(tinyRlConfig(tok), { seed: 1, initStd: 0.3 });
  const one = await run(1, { asyncRollouts: 1 }); // θ1: after update 0
  const two = await run(2, { asyncRollouts: 1 }); // θ2: after update 1
  const three = await run(3, { asyncRollouts: 1 });
  const sync = await run(3);
  t.teardown(() => [theta0, one.policy, two.policy, three.policy, sync.policy].forEach((m) => m.dispose()));
  t.equal(three.rounds.length, 3, 'three sampling rounds');
  t.same(ids(three.rounds[0].responses), await manual(theta0, three.rounds[0], 0), 'iteration 0: from θ0');
  t.same(
    ids(three.rounds[1].responses),
    await manual(theta0, three.rounds[1], 1),
    'iteration 1: from θ0 (before update 0)',
  );
  t.same(
    ids(three.rounds[2].responses),
    await manual(one.policy, three.rounds[2], 2),
    'iteration 2: from θ1 (before update 1)',
  );
  t.notSame(
    ids(three.rounds[2].responses),
    await manual(two.policy, three.rounds[2], 2),
    'not from θ2 (the weights iteration 2 updates)',
  );
  // on-policy, iteration 1 samples from θ1
  t.same(ids(sync.rounds[1].responses), await manual(one.policy, sync.rounds[1], 1), 'off by default: on-policy');
  t.equal(three.steps[0].rolloutLogprobDiffMax, 0, 'iteration 0 is on-policy: ratio exactly 1');
  t.ok(
    three.steps[1].rolloutLogprobDiffMax > 0 && three.steps[2].rolloutLogprobDiffMax > 0,
    `later iterations: the ratio is against the behaviour log-probs (max |log π − log μ| ${three.steps[1].rolloutLogprobDiffMax.toExponential(2)})`,
  );
});

t.test('the same seed gives the same run; truncatedIS corrects the stale samples', async (t) => {
  const a = await run(4, { asyncRollouts: 1, truncatedIS: 2 });
  const b = await run(4, { asyncRollouts: 1, truncatedIS: 2 });
  t.teardown(() => (a.policy.dispose(), b.policy.dispose()));
  const names = a.policy.parameters().map((p) => p.name);
  let differ = 0;
  for (const name of names) {
    const [x, y] = [await a.policy.getParameter(name), await b.policy.getParameter(name)];
    if (Buffer.compare(Buffer.from(x.buffer), Buffer.from(y.buffer)) !== 0) differ++;
  }
  t.equal(differ, 0, `every weight bit-identical (${names.length} tensors)`);
  const untimed = (steps: Record<string, number>[]) =>
    steps.map((m) => Object.entries(m).filter(([k]) => !k.startsWith('time/') && k !== 'tokensPerSecond'));
  t.same(untimed(a.steps), untimed(b.steps), 'the same metrics (timings aside)');
  t.ok(
    a.steps.every((m) => m.rolloutLogprobDiffMax === 0),
    'with truncatedIS π_old is recomputed: every first ratio exactly 1',
  );
  t.ok(
    a.steps.slice(1).every((m) => m.isWeightMean !== 1 && m.isWeightMax <= 2),
    `importance weights min(π_old/μ, 2) at work (iteration 2 mean ${a.steps[1].isWeightMean.toFixed(4)})`,
  );
});

t.test('exact resume: the checkpoint keeps the copy the next samples come from', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-async-resume-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = await run(4, { asyncRollouts: 1, outputDir: join(dir, 'a') });
  const first = await run(4, { asyncRollouts: 1, outputDir: join(dir, 'b') }, 2);
  const b = await run(4, { asyncRollouts: 1, outputDir: join(dir, 'b'), resumeFrom: 'latest' });
  t.teardown(() => [a, first, b].forEach((r) => r.policy.dispose()));
  t.equal(first.steps.length, 2, 'stopped after iteration 2');
  t.same(
    ids(b.rounds[0].responses),
    ids(a.rounds[2].responses),
    "the resumed run's first samples: those of iteration 3",
  );
  let differ = 0;
  for (const p of a.policy.parameters()) {
    const [x, y] = [await a.policy.getParameter(p.name), await b.policy.getParameter(p.name)];
    if (Buffer.compare(Buffer.from(x.buffer), Buffer.from(y.buffer)) !== 0) differ++;
  }
  t.equal(differ, 0, '4 iterations == 2 + resume + 2, bit for bit');
});

t.test('PPO with the reference baseline: y_ref scored before each round, the same run twice', async (t) => {
  const ppo = async () => {
    const policy = await Model.create(tinyRlConfig(tok), { seed: 1, initStd: 0.3 });
    const critic = await Model.create(tinyRlConfig(tok, true), { seed: 2 });
    const trainer = new PPOTrainer({
      policy,
      critic,
      tokenizer: tok,
      reward: rewardFunction('ascii', (r) => asciiFraction(r.responseIds)),
      prompts,
      iterations: 4,
      promptsPerIteration: 3,
      sampling,
      lr: 1e-2,
      asyncRollouts: 1,
      seed: 5,
    });
    const steps: Record<string, number>[] = [];
    trainer.on('step', (e) => steps.push(e.metrics));
    await trainer.train();
    trainer.dispose();
    const w = await policy.getParameter('model.layers.1.mlp.down_proj.weight');
    policy.dispose();
    critic.dispose();
    return { steps, w };
  };
  const [a, b] = [await ppo(), await ppo()];
  t.equal(a.steps.length, 4, 'four iterations (the reference never busy twice)');
  t.ok(
    a.steps.every((m) => Number.isFinite(m.shapedRewardMean) && Number.isFinite(m.valueLoss)),
    'baselined rewards and value losses finite',
  );
  t.same(
    a.steps.map((m) => m.shapedRewardMean),
    b.steps.map((m) => m.shapedRewardMean),
  );
  t.ok(Buffer.compare(Buffer.from(a.w.buffer), Buffer.from(b.w.buffer)) === 0, 'the same weights, bit for bit');
});

t.test('with episodes, per-turn rewards, packing and dynamic sampling: the same run twice', async (t) => {
  const records = [3, 5, 7, 9].map((a) => ({ prompt: `What is ${a}+1?`, answer: a + 1 }));
  const grpo = async () => {
    const policy = await Model.create(tinyRlConfig(tok), { seed: 3, initStd: 0.3 });
    const trainer = new GroupTrainer({
      policy,
      tokenizer: tok,
      prompts: records,
      reward: rewardFunction('ascii', (r) => asciiFraction(r.responseIds)),
      environment: { create: () => new CalculatorEnvironment(), maxTurns: 2, turnRewards: 'per-turn' },
      iterations: 3,
      promptsPerIteration: 2,
      samplesPerPrompt: 3,
      sampling,
      lr: 1e-2,
      packTokens: 96,
      dynamicSampling: { maxRounds: 2 },
      asyncRollouts: 1,
      seed: 8,
    });
    const steps: Record<string, number>[] = [];
    trainer.on('step', (e) => steps.push(e.metrics));
    await trainer.train();
    trainer.dispose();
    const w = await policy.getParameter('model.embed_tokens.weight');
    policy.dispose();
    return { steps, w };
  };
  const [a, b] = [await grpo(), await grpo()];
  t.equal(a.steps.length, 3);
  t.same(
    a.steps.map((m) => m.rewardMean),
    b.steps.map((m) => m.rewardMean),
    `reward history ${a.steps.map((m) => m.rewardMean.toFixed(3)).join(' ')}`,
  );
  t.ok(Buffer.compare(Buffer.from(a.w.buffer), Buffer.from(b.w.buffer)) === 0, 'the same weights, bit for bit');
});

t.test('asyncRollouts is validated', async (t) => {
  const policy = await Model.create(tinyRlConfig(tok), { seed: 1 });
  t.teardown(() => policy.dispose());
  const reward = rewardFunction('ascii', (r) => asciiFraction(r.responseIds));
  const base = { policy, tokenizer: tok, reward, prompts, iterations: 1 };
  t.throws(() => new GroupTrainer({ ...base, asyncRollouts: 2 as 1 }), {
    message: /^GroupTrainer: expected options\.asyncRollouts to be an integer >= 0 and <= 1, received 2$/,
  });
  t.throws(() => new GroupTrainer({ ...base, asyncRollouts: 1, rolloutPolicy: policy }), {
    message: /options\.asyncRollouts to be 0 with options\.rolloutPolicy/,
  });
});
