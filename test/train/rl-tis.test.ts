// Truncated importance sampling for rollouts from another policy μ (rolloutPolicy): the weights'
// closed form; with truncatedIS the trainer recomputes π_old (first ratio exactly 1 again), weights
// each token by min(π_old/μ, C) (never above C), and the policy's own reward rises though it never
// samples its training data.
import t from 'tap';
import { asciiFraction, tinyRlConfig } from '../helpers/rl-setup.js';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { truncatedImportanceWeights } from '../../lib/losses/index.js';
import { rewardFunction } from '../../lib/rewards/types.js';
import { generateRollout } from '../../lib/rollout/generate.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { GroupTrainer } from '../../lib/train/group.js';
import { Rng } from '../helpers/random.js';

setThreads(1);
const tok = new ByteTokenizer();
const cfg = () => tinyRlConfig(tok);
const prompts = ['q:', 'w:', 'e:', 'r:', 't:', 'y:', 'u:', 'i:'].map((prompt) => ({ prompt }));
const sampling = { maxNewTokens: 8, temperature: 1 };
const ascii = asciiFraction;
const reward = rewardFunction('ascii', (r) => ascii(r.responseIds));

t.test('truncatedImportanceWeights: min(exp(old − behaviour), C) on valid tokens, 0 elsewhere', async (t) => {
  const w = truncatedImportanceWeights({
    oldLogp: [-1, -2, -0.5, -3],
    behaviourLogp: [-1.5, -1, -3, -3],
    mask: [1, 1, 1, 0],
    cap: 2,
  });
  t.same(Array.from(w), [Math.exp(0.5), Math.exp(-1), 2, 0]);
  t.throws(
    () => truncatedImportanceWeights({ oldLogp: [0], behaviourLogp: [0], mask: [1], cap: 0.5 }),
    /cap to be a finite number >= 1/,
  );
});

/** The policy with every embedding weight moved by N(0, 0.05²): a behaviour policy near it. */
async function perturbed(policy: Model): Promise<Model> {
  const mu = await policy.clone();
  const rng = new Rng(9);
  const w = await mu.getParameter('model.embed_tokens.weight');
  await mu.setParameter(
    'model.embed_tokens.weight',
    w.map((x) => x + 0.05 * rng.normal()),
  );
  return mu;
}

async function ownReward(policy: Model): Promise<number> {
  const r = await generateRollout({ policy, tokenizer: tok, prompts, samplesPerPrompt: 8, sampling, seed: 77 });
  return r.samples.reduce((a, s) => a + ascii(s.responseIds), 0) / r.samples.length;
}

t.test(
  'off-policy rollouts: TIS recomputes π_old and caps the weights; the policy learns from μ samples',
  async (t) => {
    const policy = await Model.create(cfg(), { seed: 1, initStd: 0.3 });
    const mu = await perturbed(policy);
    t.teardown(() => (policy.dispose(), mu.dispose()));
    const first = async (truncatedIS?: number) => {
      const p = await policy.clone();
      const trainer = new GroupTrainer({
        policy: p,
        rolloutPolicy: mu,
        tokenizer: tok,
        reward,
        prompts,
        iterations: 1,
        promptsPerIteration: 4,
        samplesPerPrompt: 4,
        sampling,
        lr: 1e-2,
        ...(truncatedIS ? { truncatedIS } : {}),
      });
      let m: Record<string, number> = {};
      trainer.on('step', (e) => (m = e.metrics));
      await trainer.train();
      trainer.dispose();
      p.dispose();
      return m;
    };
    const plain = await first();
    t.ok(
      plain.rolloutLogprobDiffMax > 0,
      `without TIS the ratio is against μ (max |log π − log μ| ${plain.rolloutLogprobDiffMax.toFixed(4)})`,
    );
    const tis = await first(1.05);
    t.equal(tis.rolloutLogprobDiffMax, 0, 'with TIS the first ratio (to the recomputed π_old) is exactly 1');
    t.ok(tis.isWeightMax <= Math.fround(1.05), `weights never above C (max ${tis.isWeightMax})`);
    t.ok(
      tis.isWeightMean !== 1 && tis.isTruncatedFraction > 0,
      `weights vary (mean ${tis.isWeightMean.toFixed(4)}), some truncated (${tis.isTruncatedFraction.toFixed(3)})`,
    );

    const before = await ownReward(policy);
    const trainer = new GroupTrainer({
      policy,
      rolloutPolicy: mu,
      truncatedIS: 2,
      tokenizer: tok,
      reward,
      prompts,
      iterations: 12,
      promptsPerIteration: 4,
      samplesPerPrompt: 6,
      sampling,
      lr: 2e-2,
      seed: 3,
    });
    await trainer.train();
    trainer.dispose();
    const after = await ownReward(policy);
    t.ok(after > before + 0.1, `the policy's own reward ${before.toFixed(3)} -> ${after.toFixed(3)}`);
  },
);
