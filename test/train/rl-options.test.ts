// The loss options of PPO and the group methods reach the loss: the policy-loss aggregation
// (token-mean / seq-mean-token-mean / seq-mean-token-sum) against a hand computation on the first,
// on-policy minibatch (ratio exactly 1, so ℓ_t = −A_t); DAPO's clip-higher; the KL estimator; and
// the adaptive KL controller moving β up when the KL is above its target and down when below.
import t from 'tap';
import { asciiFraction, tinyRlConfig } from '../helpers/rl-setup.js';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { grpoAdvantages } from '../../lib/losses/index.js';
import { rewardFunction } from '../../lib/rewards/types.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { GroupTrainer, type GroupOptions } from '../../lib/train/group.js';
import { PPOTrainer } from '../../lib/train/ppo.js';

setThreads(1);
const tok = new ByteTokenizer();
const cfg = (valueHead = false) => tinyRlConfig(tok, valueHead);
const prompts = ['q:', 'w:', 'e:', 'r:'].map((prompt) => ({ prompt }));
const sampling = { maxNewTokens: 8, temperature: 1 };
const ascii = asciiFraction;
const sum = (x: number[]) => x.reduce((a, b) => a + b, 0);

async function group(opts: Partial<GroupOptions>, onReward?: (len: number, score: number) => void) {
  const policy = await Model.create(cfg(), { seed: 1, initStd: 0.3 });
  const reward = rewardFunction('ascii', (r) => {
    const s = ascii(r.responseIds);
    onReward?.(r.responseIds.length, s);
    return s;
  });
  const trainer = new GroupTrainer({
    policy,
    tokenizer: tok,
    reward,
    prompts,
    iterations: 1,
    promptsPerIteration: 4,
    samplesPerPrompt: 4,
    sampling,
    lr: 1e-2,
    seed: 5,
    ...opts,
  });
  const metrics: Array<Record<string, number>> = [];
  trainer.on('step', (e) => metrics.push(e.metrics));
  await trainer.train();
  trainer.dispose();
  policy.dispose();
  return metrics;
}

t.test('aggregation: the first policy loss equals −Σ w_t A_t by hand for each mode', async (t) => {
  for (const aggregation of ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum'] as const) {
    const lens: number[] = [],
      scores: number[] = [];
    const [m] = await group({ aggregation }, (l, s) => (lens.push(l), scores.push(s)));
    const A = Array.from(grpoAdvantages(scores, 4), Math.fround); // advantages are stored as float32
    const expected =
      aggregation === 'token-mean'
        ? -sum(A.map((a, b) => a * lens[b])) / sum(lens)
        : aggregation === 'seq-mean-token-mean'
          ? -sum(A) / A.length
          : -sum(A.map((a, b) => a * lens[b])) / A.length;
    t.ok(
      Math.abs(m.policyLoss - expected) <= 1e-6 * Math.max(1, Math.abs(expected)),
      `${aggregation}: ${m.policyLoss} vs ${expected}`,
    );
    t.equal(m.rolloutLogprobDiffMax, 0, 'on-policy');
  }
});

t.test(
  'clipEpsHigh (DAPO clip-higher) is the upper clip: a wide one clips fewer tokens than the symmetric clip',
  async (t) => {
    const run = (clipEpsHigh: number) =>
      group({ clipEps: 0.02, clipEpsHigh, epochs: 4, miniBatchSize: 4, lr: 5e-2, iterations: 2 });
    const sym = await run(0.02),
      wide = await run(100);
    const frac = (ms: Array<Record<string, number>>) => sum(ms.map((m) => m.clipFraction));
    t.ok(frac(sym) > 0, `symmetric clip active (${frac(sym).toFixed(3)})`);
    t.ok(frac(wide) < frac(sym), `clip-higher clips fewer: ${frac(wide).toFixed(3)} < ${frac(sym).toFixed(3)}`);
  },
);

t.test('the KL estimator is the one asked for: k1 / k2 / k3 give different KL, k2 and k3 are >= 0', async (t) => {
  const kl: Record<string, number> = {};
  for (const estimator of ['k1', 'k2', 'k3'] as const) {
    const ms = await group({ iterations: 2, kl: { coef: 0.1, estimator }, lr: 5e-2 });
    t.equal(ms[0].kl, 0, `${estimator}: 0 before any update`);
    kl[estimator] = ms[1].kl;
  }
  t.ok(kl.k1 !== kl.k2 && kl.k2 !== kl.k3 && kl.k1 !== kl.k3, JSON.stringify(kl));
  t.ok(kl.k2 > 0 && kl.k3 > 0);
});

t.test('adaptive KL controller: β rises while KL > target and falls while KL < target (Ziegler et al.)', async (t) => {
  for (const target of [1e-9, 1e6]) {
    const policy = await Model.create(cfg(), { seed: 1, initStd: 0.3 });
    const critic = await Model.create(cfg(true), { seed: 2 });
    const reward = rewardFunction('ascii', (r) => ascii(r.responseIds));
    const horizon = 50,
      n = 8;
    const trainer = new PPOTrainer({
      policy,
      critic,
      tokenizer: tok,
      reward,
      prompts,
      iterations: 4,
      promptsPerIteration: 4,
      samplesPerPrompt: 2,
      sampling,
      lr: 5e-2,
      kl: { coef: 0.1, target, horizon },
      seed: 6,
    });
    const steps: Array<{ kl: number; coef: number }> = [];
    trainer.on('step', (e) => steps.push({ kl: e.metrics.kl, coef: e.metrics.klCoef }));
    await trainer.train();
    let prev = 0.1,
      ups = 0,
      downs = 0;
    for (const [i, s] of steps.entries()) {
      const err = Math.max(-0.2, Math.min(0.2, s.kl / target - 1));
      t.ok(
        Math.abs(s.coef - prev * (1 + (err * n) / horizon)) <= 1e-12 * prev,
        `step ${i + 1}: β = β·(1 + clip(KL/target − 1, ±0.2)·n/horizon)`,
      );
      if (s.kl > target) (t.ok(s.coef > prev, `step ${i + 1}: KL ${s.kl.toExponential(2)} > target: β up`), ups++);
      if (s.kl < target) (t.ok(s.coef < prev, `step ${i + 1}: KL ${s.kl.toExponential(2)} < target: β down`), downs++);
      prev = s.coef;
    }
    if (target < 1) t.ok(ups >= 2, `KL above the tiny target after the first update (${ups} steps up)`);
    else t.equal(downs, 4, 'KL below the huge target: β falls every step');
    trainer.dispose();
    policy.dispose();
    critic.dispose();
  }
});
