/**
 * The alignment methods as the studies run them on one seed's base (lib/study/setup.ts), each
 * trained from the SFT policy with the demo's trainers and settings and evaluated (cached) by
 * evaluatePolicy. A method's cache key names every setting a study varies, so two studies that
 * need the same run (the alignment study's PPO is the reference-baseline study's "with baseline"
 * arm) share it.
 */
import type { ScoredRecord } from '../data/index.js';
import { generateRollout } from '../rollout/generate.js';
import type { StepEvent } from '../train/events.js';
import { GroupTrainer } from '../train/group.js';
import { PPOTrainer } from '../train/ppo.js';
import { PreferenceTrainer } from '../train/preference.js';
import { frozenReference } from '../train/reference.js';
import type { TrainerEmitter } from '../train/events.js';
import { RewardModel } from '../rewards/reward-model.js';
import { evaluateBestOfN, evaluatePolicy, type PolicyEval, type SeedBase } from './setup.js';
import { sameSize, sizedRm, sizedSft, sizeKey, unbalancedRm, type ModelSize } from './sizes.js';

/** Per-iteration metrics of a policy-gradient trainer, from its 'step' events. */
function followCurve(t: TrainerEmitter): NonNullable<PolicyEval['curve']> {
  const rows: NonNullable<PolicyEval['curve']> = [];
  t.on('step', (e: StepEvent) =>
    rows.push({
      step: e.step,
      shapedReward: e.metrics.shapedRewardMean ?? NaN,
      reward: e.metrics.rewardMean ?? NaN,
      kl: e.metrics.kl ?? NaN,
    }),
  );
  return rows;
}

const prompts = (b: SeedBase) => b.train.map((p) => ({ prompt: p.messages }));

export function sft(b: SeedBase): Promise<PolicyEval> {
  return evaluatePolicy(b, 'sft', async () => ({ policy: b.sft }));
}

/**
 * PPO with the demo's settings; `baseline` 'reference' is ChatGLM-RLHF's r(x,y) − r(x,y_ref).
 * `policySize` starts from the SFT policy of that size (its KL is measured against it);
 * `rmSize` scores with the reward model of that size (the critic starts from it).
 */
export function ppo(
  b: SeedBase,
  o: {
    baseline?: 'reference' | 'none';
    ptxCoef?: number;
    samplesPerPrompt?: number;
    policySize?: ModelSize;
    rmSize?: ModelSize;
    /** score with the reward model trained without length balancing (base size) */
    rmUnbalanced?: boolean;
  } = {},
): Promise<PolicyEval> {
  const s = b.settings.ppo;
  const baseline = o.baseline ?? 'reference',
    ptxCoef = o.ptxCoef ?? s.ptxCoef,
    n = o.samplesPerPrompt ?? s.samplesPerPrompt;
  const other = (m?: ModelSize) => m !== undefined && !sameSize(m, b.settings.model);
  const key =
    `ppo-${baseline}-ptx${ptxCoef}${n === s.samplesPerPrompt ? '' : `-n${n}`}` +
    (other(o.policySize) ? `-policy-${sizeKey(o.policySize!)}` : '') +
    (other(o.rmSize) ? `-rm-${sizeKey(o.rmSize!)}` : '') +
    (o.rmUnbalanced ? '-rm-unbalanced' : '');
  if (o.rmUnbalanced && other(o.rmSize)) throw new Error('ppo: rmUnbalanced is a base-size reward model');
  return evaluatePolicy(b, key, async () => {
    // another size: its SFT policy trains and a frozen copy of it (no gradients) is the reference
    const policy = other(o.policySize) ? await sizedSft(b, o.policySize!) : await b.sft.clone();
    const reference = other(o.policySize) ? await frozenReference(policy) : b.sft;
    const rm = o.rmUnbalanced
      ? await unbalancedRm(b)
      : other(o.rmSize)
        ? (await sizedRm(b, o.rmSize!)).model
        : undefined;
    const critic = await (rm ?? b.rm).clone();
    const t = new PPOTrainer({
      policy,
      critic,
      reference,
      tokenizer: b.tokenizer,
      reward: rm ? new RewardModel(rm, b.tokenizer, { batchSize: 64 }) : b.reward,
      prompts: prompts(b),
      iterations: s.iterations,
      promptsPerIteration: s.promptsPerIteration,
      samplesPerPrompt: n,
      sampling: { maxNewTokens: b.settings.maxNewTokens },
      lr: s.lr,
      criticLr: s.criticLr,
      kl: { coef: s.klCoef },
      baseline,
      ...(ptxCoef > 0 ? { ptx: { data: b.sftRecords, coef: ptxCoef, batchSize: 16, seqLen: 96 } } : {}),
      seed: b.seed,
    });
    const curve = followCurve(t);
    await t.train();
    t.dispose();
    critic.dispose();
    rm?.dispose();
    return { policy, curve, reference };
  });
}

/** The SFT policy of another size, evaluated like every policy (its KL to itself is 0). */
export function sizedSftEval(b: SeedBase, size: ModelSize): Promise<PolicyEval> {
  if (sameSize(size, b.settings.model)) return sft(b);
  return evaluatePolicy(b, `sft-${sizeKey(size)}`, async () => {
    const policy = await sizedSft(b, size);
    return { policy, reference: await frozenReference(policy) };
  });
}

export function grpo(b: SeedBase): Promise<PolicyEval> {
  const s = b.settings.grpo;
  return evaluatePolicy(b, 'grpo', async () => {
    const policy = await b.sft.clone();
    const t = new GroupTrainer({
      policy,
      reference: b.sft,
      tokenizer: b.tokenizer,
      reward: b.reward,
      prompts: prompts(b),
      estimator: 'grpo',
      iterations: s.iterations,
      promptsPerIteration: s.promptsPerIteration,
      samplesPerPrompt: s.samplesPerPrompt,
      sampling: { maxNewTokens: b.settings.maxNewTokens },
      lr: s.lr,
      seed: b.seed,
    });
    const curve = followCurve(t);
    await t.train();
    t.dispose();
    return { policy, curve };
  });
}

/** DPO or EXO-pref on the annotator-labelled pairs. */
export function pairwise(b: SeedBase, loss: 'dpo' | 'exo'): Promise<PolicyEval> {
  const o = b.settings[loss];
  return evaluatePolicy(b, loss, async () => {
    const policy = await b.sft.clone();
    await new PreferenceTrainer({
      policy,
      reference: b.sft,
      tokenizer: b.tokenizer,
      loss,
      beta: o.beta,
      train: b.pairs,
      seqLen: 96,
      batchSize: 32,
      epochs: o.epochs,
      lr: o.lr,
      seed: b.seed,
    }).train();
    return { policy };
  });
}

/**
 * K SFT samples per training prompt scored by the reward model: the scored groups EXO-rw and
 * DPO-rw train on (the EXO paper's setting), cached per K.
 */
async function scoredGroups(b: SeedBase, k: number): Promise<ScoredRecord[]> {
  const roll = await generateRollout({
    policy: b.sft,
    tokenizer: b.tokenizer,
    prompts: prompts(b),
    samplesPerPrompt: k,
    sampling: { maxNewTokens: b.settings.maxNewTokens, temperature: 1 },
    seed: b.seed + 5 + k,
  });
  const scores = await b.reward.scoreText(
    roll.samples.map((s) => ({ prompt: b.train[s.promptIndex].messages, response: s.text })),
  );
  return b.train.map((p, i) => ({
    prompt: p.messages,
    responses: roll.samples.slice(i * k, (i + 1) * k).map((s) => s.text),
    scores: scores.slice(i * k, (i + 1) * k),
  }));
}

/** EXO-rw (reverse KL) or DPO-rw (forward KL) on K reward-scored SFT samples per prompt, β_π = β_r = beta. */
export function rewardWeighted(
  b: SeedBase,
  loss: 'exo-rw' | 'dpo-rw',
  o: { k?: number; beta?: number; epochs?: number } = {},
): Promise<PolicyEval> {
  const s = b.settings.rw;
  const k = o.k ?? s.k,
    beta = o.beta ?? s.beta,
    epochs = o.epochs ?? s.epochs;
  return evaluatePolicy(b, `${loss}-k${k}-beta${beta}-ep${epochs}`, async () => {
    const policy = await b.sft.clone();
    await new PreferenceTrainer({
      policy,
      reference: b.sft,
      tokenizer: b.tokenizer,
      loss,
      beta,
      groupSize: k,
      train: await scoredGroups(b, k),
      seqLen: 96,
      batchSize: Math.max(1, Math.floor(32 / k)),
      epochs,
      lr: s.lr,
      seed: b.seed,
    }).train();
    return { policy };
  });
}

export function bestOfN(b: SeedBase): Promise<PolicyEval> {
  return evaluateBestOfN(b, b.settings.bestOfN);
}
