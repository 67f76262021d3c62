// PPO and the group methods on a tiny byte-level model with a rule reward (the fraction of "a"
// bytes in the response): each raises the reward it optimises; the reference baseline starts
// near zero (property 15); λ > 0 keeps the SFT-set loss lower (property 18); resume is exact; a
// non-finite update is skipped and counted; DAPO's overlong penalty and truncated-response masking.
import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { rewardFunction } from '../../lib/rewards/types.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { GroupTrainer } from '../../lib/train/group.js';
import { PPOTrainer } from '../../lib/train/ppo.js';
import { SFTTrainer } from '../../lib/train/sft.js';
import { bitwiseEqual } from '../helpers/tolerance.js';

const tok = new ByteTokenizer();
const cfg = (valueHead = false) =>
  tinyConfig({
    vocab: 264,
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    maxPositions: 128,
    eosTokenId: tok.eosId,
    valueHead,
  });
const prompts = ['q:', 'w:', 'e:', 'r:', 't:', 'y:', 'u:', 'i:'].map((prompt) => ({ prompt }));
const fractionOfA = rewardFunction('fraction-of-a', (r) =>
  r.response.length ? [...r.response].filter((ch) => ch === 'a').length / r.response.length : 0,
);
// denser: about half of a random policy's bytes are ASCII, so rewards vary from the start
const asciiFraction = rewardFunction('ascii-fraction', (r) =>
  r.responseIds.length ? [...r.responseIds].filter((id) => id < 128).length / r.responseIds.length : 0,
);
const sampling = { maxNewTokens: 8, temperature: 1 };
const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;

for (const estimator of ['grpo', 'rloo', 'reinforce++'] as const) {
  t.test(`${estimator} raises the reward`, async (t) => {
    const policy = await Model.create(cfg(), { seed: 1 });
    const trainer = new GroupTrainer({
      policy,
      tokenizer: tok,
      reward: fractionOfA,
      prompts,
      estimator,
      iterations: 12,
      promptsPerIteration: 4,
      samplesPerPrompt: 6,
      sampling,
      lr: 2e-2,
      seed: 3,
    });
    const r = await trainer.train();
    const first = mean(r.rewardHistory.slice(0, 2)),
      last = mean(r.rewardHistory.slice(-2));
    t.ok(last > first + 0.15, `mean reward ${first.toFixed(3)} -> ${last.toFixed(3)}`);
    trainer.dispose();
  });
}

t.test('PPO with a critic raises the reward; reference baseline starts near 0 (property 15)', async (t) => {
  const policy = await Model.create(cfg(), { seed: 2 });
  const critic = await Model.create(cfg(true), { seed: 2 });
  const trainer = new PPOTrainer({
    policy,
    critic,
    tokenizer: tok,
    reward: asciiFraction,
    prompts,
    iterations: 24,
    promptsPerIteration: 8,
    samplesPerPrompt: 2,
    sampling,
    lr: 1e-2,
    criticLr: 1e-2,
    kl: { coef: 0.01 },
    seed: 4,
  });
  const shaped: number[] = [],
    std: number[] = [];
  trainer.on('step', (e) => (shaped.push(e.metrics.shapedRewardMean), std.push(e.metrics.rewardStd)));
  const r = await trainer.train();
  t.ok(
    Math.abs(shaped[0]) < std[0],
    `property 15: first shaped mean |${shaped[0].toFixed(3)}| < reward std ${std[0].toFixed(3)}`,
  );
  const first = mean(r.rewardHistory.slice(0, 2)),
    last = mean(r.rewardHistory.slice(-2));
  t.ok(last > first + 0.15, `mean reward ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  trainer.dispose();
});

t.test('property 18: with λ_NTP > 0 the SFT-set NLL after RLHF is lower than with λ = 0', async (t) => {
  const sft = Array.from({ length: 16 }, (_, i) => ({
    kind: 'completion' as const,
    prompt: prompts[i % 8].prompt,
    completion: 'hello',
  }));
  const base = await Model.create(cfg(), { seed: 5 });
  await new SFTTrainer({
    model: base,
    tokenizer: tok,
    train: sft,
    seqLen: 16,
    batchSize: 8,
    epochs: 30,
    lr: 1e-2,
  }).train();
  const results: number[] = [];
  for (const coef of [0, 1]) {
    const policy = await base.clone();
    const critic = await Model.create(cfg(true), { seed: 6 });
    const trainer = new PPOTrainer({
      policy,
      critic,
      tokenizer: tok,
      reward: fractionOfA,
      prompts,
      iterations: 10,
      promptsPerIteration: 8,
      sampling,
      lr: 1e-2,
      kl: { coef: 0 },
      seed: 7,
      ptx: { data: sft, coef, batchSize: 8, seqLen: 16 },
    });
    await trainer.train();
    results.push(await evalNll(policy, sft));
    trainer.dispose();
  }
  t.ok(results[1] < results[0], `SFT NLL after PPO: λ=0 ${results[0].toFixed(3)}, λ=1 ${results[1].toFixed(3)}`);
});

async function evalNll(
  m: Model,
  records: Array<{ kind: 'completion'; prompt: string; completion: string }>,
): Promise<number> {
  const trainer = new SFTTrainer({ model: m, tokenizer: tok, train: records, eval: records, seqLen: 16 });
  return (await trainer.evaluate()).loss;
}

t.test('exact resume: PPO 2N iterations == N + resume + N (bitwise)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-ppo-resume-'));
  try {
    const run = async (out: string, stopAt?: number, resume = false) => {
      const policy = await Model.create(cfg(), { seed: resume ? 99 : 8 });
      const critic = await Model.create(cfg(true), { seed: resume ? 99 : 8 });
      const trainer = new PPOTrainer({
        policy,
        critic,
        tokenizer: tok,
        reward: fractionOfA,
        prompts,
        iterations: 4,
        promptsPerIteration: 4,
        samplesPerPrompt: 2,
        sampling,
        lr: 1e-2,
        kl: { coef: 0.05, target: 1, horizon: 100 },
        epochs: 2,
        miniBatchSize: 4,
        seed: 9,
        outputDir: out,
        resumeFrom: resume ? 'latest' : undefined,
      });
      if (stopAt) trainer.on('step', (e) => e.step === stopAt && trainer.requestStop());
      await trainer.train();
      return { policy, critic };
    };
    const a = await run(join(dir, 'a'));
    await run(join(dir, 'b'), 2);
    const b = await run(join(dir, 'b'), undefined, true);
    let same = true;
    for (const [x, y] of [
      [a.policy, b.policy],
      [a.critic, b.critic],
    ] as const)
      for (const p of x.parameters())
        if (!bitwiseEqual(await x.getParameter(p.name), await y.getParameter(p.name))) same = false;
    t.ok(same, 'policy and critic identical after resume');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('NaN/Inf guard: a non-finite update is skipped, counted, and changes nothing', async (t) => {
  const policy = await Model.create(cfg(), { seed: 10 });
  const critic = await Model.create(cfg(true), { seed: 10 });
  const before = await policy.getParameter('model.embed_tokens.weight');
  const beforeCritic = await critic.getParameter('score.weight');
  const huge = rewardFunction('huge', () => 1e300); // finite in float64, overflows the fp32 advantages and returns
  const trainer = new PPOTrainer({
    policy,
    critic,
    tokenizer: tok,
    reward: huge,
    prompts,
    baseline: 'none',
    whitenAdvantages: false,
    iterations: 1,
    promptsPerIteration: 2,
    sampling,
    lr: 1e-2,
  });
  let skipped = 0;
  trainer.on('step', (e) => (skipped = e.metrics.skippedSteps));
  await trainer.train();
  t.equal(skipped, 2, 'the policy and the critic update were both skipped');
  t.ok(bitwiseEqual(await policy.getParameter('model.embed_tokens.weight'), before), 'policy weights unchanged');
  t.ok(bitwiseEqual(await critic.getParameter('score.weight'), beforeCritic), 'critic weights unchanged');
  const nan = rewardFunction('nan', () => NaN);
  const t2 = new GroupTrainer({
    policy,
    tokenizer: tok,
    reward: nan,
    prompts,
    samplesPerPrompt: 2,
    iterations: 1,
    promptsPerIteration: 2,
    sampling,
  });
  await t.rejects(t2.train(), {
    name: 'RlhfError',
    code: 'ERR_RLHF_OUT_OF_RANGE',
    message: /reward source "nan" returned NaN for a response \(prompt \d+, sample 0\)/,
  });
});

t.test(
  'overlong: the DAPO penalty joins each reward; maskTruncated keeps cut responses out of the policy loss',
  async (t) => {
    const lengths: number[] = [];
    const zero = rewardFunction('zero', (r) => (lengths.push(r.responseIds.length), 0));
    const policy = await Model.create(cfg(), { seed: 8 });
    const g = new GroupTrainer({
      policy,
      tokenizer: tok,
      reward: zero,
      prompts,
      iterations: 1,
      promptsPerIteration: 4,
      samplesPerPrompt: 2,
      sampling,
      kl: { coef: 0 },
      overlong: { buffer: 4, penalty: 0.5, maxLength: 10 },
      seed: 1,
    });
    let shaped = NaN;
    g.on('step', (e) => (shaped = e.metrics.shapedRewardMean));
    await g.train();
    const expected = mean(lengths.map((L) => (L <= 6 ? 0 : ((6 - L) / 4) * 0.5)));
    t.ok(
      Math.abs(shaped - expected) < 1e-12,
      `shaped reward mean ${shaped.toFixed(4)} = mean DAPO penalty of the sampled lengths ${expected.toFixed(4)}`,
    );
    g.dispose();
    // every response cut at maxNewTokens (this seed samples no stop token within 2 tokens): no policy step
    const before = await policy.getParameter('model.norm.weight');
    const m = new GroupTrainer({
      policy,
      tokenizer: tok,
      reward: asciiFraction,
      prompts,
      iterations: 1,
      promptsPerIteration: 4,
      samplesPerPrompt: 2,
      sampling: { maxNewTokens: 2 },
      maskTruncated: true,
      lr: 1e-2,
      seed: 3,
    });
    let metrics: Record<string, number> = {};
    m.on('step', (e) => (metrics = e.metrics));
    await m.train();
    t.equal(metrics.stopRate, 0, `all truncated ${JSON.stringify(metrics)}`);
    t.equal(metrics.maskedMinibatches, 1, 'the one minibatch had no row left');
    t.ok(bitwiseEqual(await policy.getParameter('model.norm.weight'), before), 'the policy is unchanged');
    m.dispose();
    t.throws(
      () =>
        new GroupTrainer({
          policy,
          tokenizer: tok,
          reward: zero,
          prompts,
          iterations: 1,
          sampling,
          overlong: { buffer: 9 },
        }),
      /options\.overlong\.buffer/,
    );
  },
);

t.test(
  'PPO on a LoRA policy: the reference is its base (y_ref and KL without the adapters); resume is exact',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-ppo-lora-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const run = async (out: string, resume: boolean, stopAt?: number) => {
      const policy = await Model.create(cfg(), { seed: 9, initStd: 0.5, lora: { rank: 4, modules: 'all-linear' } });
      const critic = await Model.create(cfg(true), { seed: 9 });
      const tr = new PPOTrainer({
        policy,
        critic,
        tokenizer: tok,
        reward: asciiFraction,
        prompts,
        iterations: 4,
        promptsPerIteration: 4,
        sampling,
        lr: 1e-2,
        kl: { coef: 0.05 },
        seed: 5,
        outputDir: join(dir, out),
        ...(resume ? { resumeFrom: 'latest' } : {}),
      });
      tr.on('step', (e) => e.step === stopAt && tr.requestStop());
      const r = await tr.train();
      const w = await policy.getParameter('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight');
      const embed = await policy.getParameter('model.embed_tokens.weight');
      tr.dispose();
      policy.dispose();
      critic.dispose();
      return { r, w, embed };
    };
    const a = await run('a', false);
    t.equal(a.r.iterations, 4);
    t.ok(
      a.w.some((x) => x !== 0),
      'the adapters trained',
    );
    await run('b', false, 2);
    t.notOk(
      readdirSync(join(dir, 'b', 'checkpoint-2')).includes('reference'),
      "no reference part: it is the policy's own base",
    );
    const c = await run('b', true);
    t.ok(bitwiseEqual(c.w, a.w) && bitwiseEqual(c.embed, a.embed), '2N straight == N + resume + N');
  },
);

t.test('options are validated', async (t) => {
  const policy = await Model.create(cfg(), { seed: 1 });
  t.throws(
    () =>
      new GroupTrainer({ policy, tokenizer: tok, reward: fractionOfA, prompts, iterations: 1, samplesPerPrompt: 1 }),
    { name: 'RangeError', message: /samplesPerPrompt to be >= 2 for grpo/ },
  );
  t.throws(
    () => new PPOTrainer({ policy, critic: policy, tokenizer: tok, reward: fractionOfA, prompts, iterations: 1 }),
    { name: 'TypeError', message: /options\.critic to be a \*ForSequenceClassification model/ },
  );
  t.throws(
    () =>
      new GroupTrainer({
        policy,
        tokenizer: tok,
        reward: fractionOfA,
        prompts,
        iterations: 1,
        sampling: { maxNewToken: 3 } as never,
      }),
    { name: 'TypeError', message: /did you mean options\.sampling\.maxNewTokens/ },
  );
});
