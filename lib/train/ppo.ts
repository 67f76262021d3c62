/**
 * PPO for language models with ChatGLM-RLHF's stabilisers (docs/algorithms.md §1.3, 2.3–2.5):
 *   - a critic (initialised from the reward model or the policy) and GAE,
 *   - reference-baseline rewards R = r(x,y) − r(x,y_ref), y_ref sampled once per prompt from the
 *     frozen reference (SFT) policy and cached — rewards start near 0 for every prompt,
 *   - per-token KL penalty to the reference (k1/k2/k3, fixed or adaptive coefficient),
 *   - the next-token (PTX) loss on SFT data with weight λ against capability forgetting,
 *   - critic warm-up, dropping prompts whose sampled rewards barely vary, n samples per prompt.
 * Its iteration is lib/train/policy-gradient.ts, run on the trainers' one loop (lib/train/loop.ts).
 */
import type { Model } from '../engine/model.js';
import { AGGREGATIONS, type Aggregation } from '../losses/index.js';
import type { PromptRecord, SftInput } from '../data/index.js';
import type { RewardSource } from '../rewards/types.js';
import type { SamplingOptions } from '../rollout/generate.js';
import { readEnvironmentOptions, type EnvironmentOptions } from '../rollout/environment.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { options, typeError } from '../validate.js';
import { readRunOptions, RUN_OPTION_KEYS, type RunOptions } from './run.js';
import { DEFAULT_BUCKET_BYTES } from '../distributed/index.js';
import { PolicyGradientLoop, type KlOptions, type PolicyGradientConfig } from './policy-gradient.js';

/** What PPO and the group methods both take (their loop is lib/train/policy-gradient.ts). */
export interface PolicyGradientOptions extends RunOptions {
  policy: Model;
  tokenizer: Tokenizer;
  /** scores each response (for environment episodes: the last assistant turn; optional there, the
   * environment's reward is added to it) */
  reward?: RewardSource;
  prompts: string | PromptRecord[];
  /** multi-turn episodes: the policy alternates turns with an environment (a tool, a game) under the
   * chat template; its tokens are masked out of every loss (lib/rollout/environment.ts) */
  environment?: EnvironmentOptions;
  /** frozen reference policy (default: a copy of the policy at train() start; for a LoRA policy its
   * base, policy.withoutAdapters(), sharing the weights) */
  reference?: Model;
  iterations: number;
  promptsPerIteration?: number;
  samplesPerPrompt?: number;
  sampling?: Partial<SamplingOptions>;
  epochs?: number;
  miniBatchSize?: number;
  lr?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  /** PPO clip ε: the ratio is clipped to [1 − ε, 1 + ε_high] */
  clipEps?: number;
  /** DAPO's clip-higher ε_high (default ε; DAPO uses 0.28 with ε = 0.2) */
  clipEpsHigh?: number;
  dualClip?: number;
  /** how the policy loss (and the entropy bonus and KL loss) reduce over tokens: 'token-mean' (default;
   * DAPO), 'seq-mean-token-mean' (original GRPO: each response's mean, then the mean over responses;
   * the default with lossMode 'gspo'), 'seq-mean-token-sum' (each response's sum, then the mean),
   * 'seq-mean-token-sum-norm' (the sum over the batch ÷ (responses × maxNewTokens); Dr. GRPO's default) */
  aggregation?: Aggregation;
  /** the model that samples the rollouts (behaviour policy μ: e.g. a quantised or stale copy); default the policy */
  rolloutPolicy?: Model;
  /** truncated importance sampling cap C >= 1 (TIS; 2 in the paper): π_old is recomputed by the policy and each
   * token's loss is weighted by min(π_old/μ, C), correcting for rollouts sampled by another policy */
  truncatedIS?: number;
  /** 1: one-step off-policy rollouts. A copy of the policy (refreshed before each iteration's
   * update, saved in checkpoints) samples iteration k + 1 while update k runs, so iteration k + 1
   * trains on samples of the weights before update k; their log-probs are the behaviour policy μ's,
   * the ratio's denominator (with truncatedIS: weights min(π_old/μ, C), π_old recomputed). 0
   * (default): on-policy, sampling and updates in turn. One process only; not with rolloutPolicy */
  asyncRollouts?: 0 | 1;
  /** 'vanilla' (default): PPO's per-token ratio and clip; 'gspo': GSPO's per-sequence ratio
   * exp(mean token log-ratio) and clip (Zheng et al. 2025; the paper uses ε = 3e-4, ε_high = 4e-4) */
  lossMode?: 'vanilla' | 'gspo';
  entropyCoef?: number;
  kl?: Partial<KlOptions>;
  rewardClip?: number;
  /** DAPO's soft overlong punishment added to each reward (maxLength default: sampling.maxNewTokens) */
  overlong?: { buffer: number; penalty?: number; maxLength?: number };
  /** responses cut by maxNewTokens (no stop token) take no part in the policy loss (TRL's mask_truncated_completions) */
  maskTruncated?: boolean;
  /** next-token loss on SFT data: {data, coef λ, batchSize, seqLen} */
  ptx?: { data: string | SftInput[]; coef: number; batchSize?: number; seqLen?: number };
  /** a reward source's NaN/±Infinity: 'error' (default) stops naming the prompt and sample; 'skip' drops the
   * sample (for grpo/rloo its group) with a warning */
  onInvalidReward?: 'error' | 'skip';
  seed?: number;
  saveEvery?: number;
  /** packed forwards (policy, reference, critic): several sequences per row of at most this many
   * tokens, block-diagonal attention, positions restarting per sequence; a longer sequence takes a
   * row of its own. Log-probs and values are bit-identical to the padded rows' on CPU (the first
   * ratio stays exactly 1); gradients equal up to summation order. Default: one padded row per sequence */
  packTokens?: number;
  /** ZeRO stage 1 over options.group: AdamW state (policy and critic) for this rank's share of the
   * parameters only (default true; bitwise the same weights) */
  shardOptimizer?: boolean;
  /**
   * Data parallelism: sum each update's gradients over options.group while the last backward of
   * the update still runs (ProcessGroup.backwardAllReduce: the same buckets, so bitwise the weights
   * of backward-then-all-reduce). Default true; it applies to a whole model on the CPU without LoRA
   * and not split over ranks, and any other model (or this option false) takes the plain
   * all-reduce after backward (a 'log' event says so once per model).
   */
  overlapAllReduce?: boolean;
  /** the gradient all-reduce's bucket size in bytes, overlapped or not (default DEFAULT_BUCKET_BYTES, 25 MiB:
   * a model with fewer gradient bytes is one bucket, which cannot begin before backward ends) */
  allReduceBucketBytes?: number;
}
export const POLICY_GRADIENT_KEYS = [
  'policy',
  'tokenizer',
  'reward',
  'prompts',
  'environment',
  'reference',
  'iterations',
  'promptsPerIteration',
  'samplesPerPrompt',
  'sampling',
  'epochs',
  'miniBatchSize',
  'lr',
  'weightDecay',
  'maxGradNorm',
  'clipEps',
  'clipEpsHigh',
  'dualClip',
  'aggregation',
  'lossMode',
  'rolloutPolicy',
  'truncatedIS',
  'asyncRollouts',
  'entropyCoef',
  'kl',
  'rewardClip',
  'overlong',
  'maskTruncated',
  'ptx',
  'onInvalidReward',
  'seed',
  'saveEvery',
  'packTokens',
  'group',
  'shardOptimizer',
  'overlapAllReduce',
  'allReduceBucketBytes',
  ...RUN_OPTION_KEYS,
] as const;

export interface PPOOptions extends PolicyGradientOptions {
  /** scalar-head model (e.g. Model.load(rmDir) or the policy loaded as *ForSequenceClassification) */
  critic: Model;
  criticLr?: number;
  valueClipEps?: number;
  gamma?: number;
  lambda?: number;
  /** 'reference' (ChatGLM-RLHF, default), 'normalize' (running mean/std), 'none' */
  baseline?: 'reference' | 'normalize' | 'none';
  whitenAdvantages?: boolean;
  criticWarmupIterations?: number;
  /** drop prompts whose k sampled rewards vary less than the given quantile of variances */
  promptFilter?: { samples?: number; quantile?: number };
}

const KEYS = [
  ...POLICY_GRADIENT_KEYS,
  'critic',
  'criticLr',
  'valueClipEps',
  'gamma',
  'lambda',
  'baseline',
  'whitenAdvantages',
  'criticWarmupIterations',
  'promptFilter',
] as const;

/** The reward source of environment-only runs: 0, to which each episode's environment reward is added. */
const ENVIRONMENT_ONLY: RewardSource = { name: 'environment', score: async (batch) => batch.map(() => 0) };

/** Options common to PPO and the group methods, validated. */
export function commonConfig(
  fn: string,
  opts: Record<string, unknown>,
  defaults: {
    samplesPerPrompt: number;
    klCoef: number;
    klMode: 'reward' | 'loss';
    klEstimator: 'k1' | 'k3';
    aggregation?: Aggregation;
  },
) {
  const o = options(fn, 'options', opts);
  for (const k of ['policy', 'tokenizer', 'prompts'] as const)
    if (opts[k] === undefined) throw typeError(fn, `options.${k}`, 'given', undefined);
  const environment = opts.environment === undefined ? undefined : readEnvironmentOptions(fn, opts.environment);
  if (opts.reward === undefined && !environment)
    throw typeError(
      fn,
      'options.reward',
      'given (or options.environment, whose rewards are then the scores)',
      undefined,
    );
  if (opts.rolloutPolicy !== undefined && typeof (opts.rolloutPolicy as Model).generate !== 'function')
    throw typeError(fn, 'options.rolloutPolicy', 'a Model', opts.rolloutPolicy);
  if (opts.asyncRollouts === 1 && opts.rolloutPolicy !== undefined)
    throw typeError(fn, 'options.asyncRollouts', '0 with options.rolloutPolicy (the copy of the policy samples)', 1);
  const s = options(fn, 'options.sampling', opts.sampling);
  s.known(['maxNewTokens', 'temperature', 'topP', 'topK']);
  const kl = options(fn, 'options.kl', opts.kl);
  kl.known(['coef', 'estimator', 'mode', 'target', 'horizon']);
  const promptsPerIteration = o.int('promptsPerIteration', { min: 1 }, 8);
  const maxNewTokens = s.int('maxNewTokens', { min: 1 }, 32);
  let overlong: { buffer: number; penalty: number; maxLength: number } | undefined;
  if (o.has('overlong')) {
    const v = options(fn, 'options.overlong', opts.overlong);
    v.known(['buffer', 'penalty', 'maxLength']);
    const maxLength = v.int('maxLength', { min: 1 }, maxNewTokens);
    overlong = {
      maxLength,
      buffer: v.int('buffer', { min: 1, max: maxLength }),
      penalty: v.number('penalty', { min: 0 }, 1),
    };
  }
  const samplesPerPrompt = o.int('samplesPerPrompt', { min: 1 }, defaults.samplesPerPrompt);
  const lossMode = o.oneOf('lossMode', ['vanilla', 'gspo'] as const, 'vanilla');
  return {
    o,
    config: {
      policy: opts.policy as Model,
      tokenizer: opts.tokenizer as Tokenizer,
      reward: (opts.reward as RewardSource | undefined) ?? ENVIRONMENT_ONLY,
      environment,
      prompts: opts.prompts as string | PromptRecord[],
      reference: opts.reference as Model | undefined,
      iterations: o.int('iterations', { min: 1 }),
      promptsPerIteration,
      samplesPerPrompt,
      sampling: {
        maxNewTokens,
        temperature: s.number('temperature', { min: 0 }, 1),
        topP: s.number('topP', { gt: 0, max: 1 }, 1),
        topK: s.int('topK', { min: 0 }, 0),
      },
      epochs: o.int('epochs', { min: 1 }, 1),
      miniBatchSize: o.int('miniBatchSize', { min: 1 }, promptsPerIteration * samplesPerPrompt),
      lr: o.number('lr', { min: 0, float32: true }, 1e-5),
      weightDecay: o.number('weightDecay', { min: 0, float32: true }, 0),
      maxGradNorm: o.number('maxGradNorm', { min: 0, float32: true }, 1),
      clipEps: o.number('clipEps', { gt: 0, lt: 1 }, 0.2),
      clipEpsHigh: o.has('clipEpsHigh') ? o.number('clipEpsHigh', { gt: 0 }) : undefined,
      dualClip: o.has('dualClip') ? o.number('dualClip', { gt: 1 }) : undefined,
      lossMode,
      rolloutPolicy: opts.rolloutPolicy as Model | undefined,
      truncatedIS: o.has('truncatedIS') ? o.number('truncatedIS', { min: 1 }) : undefined,
      asyncRollouts: o.int('asyncRollouts', { min: 0, max: 1 }, 0) as 0 | 1,
      aggregation: o.oneOf(
        'aggregation',
        AGGREGATIONS,
        defaults.aggregation ?? (lossMode === 'gspo' ? 'seq-mean-token-mean' : 'token-mean'),
      ),
      entropyCoef: o.number('entropyCoef', { min: 0 }, 0),
      kl: {
        coef: kl.number('coef', { min: 0 }, defaults.klCoef),
        estimator: kl.oneOf('estimator', ['k1', 'k2', 'k3'] as const, defaults.klEstimator),
        mode: kl.oneOf('mode', ['reward', 'loss'] as const, defaults.klMode),
        target: kl.has('target') ? kl.number('target', { gt: 0 }) : undefined,
        horizon: kl.has('horizon') ? kl.number('horizon', { gt: 0 }) : undefined,
      },
      rewardClip: o.has('rewardClip') ? o.number('rewardClip', { gt: 0 }) : undefined,
      overlong,
      maskTruncated: o.bool('maskTruncated', false),
      onInvalidReward: o.oneOf('onInvalidReward', ['error', 'skip'] as const, 'error'),
      seed: o.int('seed', { min: 0 }, 0),
      saveEvery: o.has('saveEvery') ? o.int('saveEvery', { min: 1 }) : undefined,
      packTokens: o.has('packTokens') ? o.int('packTokens', { min: 2 }) : undefined,
      group: opts.group as RunOptions['group'],
      shardOptimizer: o.bool('shardOptimizer', true),
      overlapAllReduce: o.bool('overlapAllReduce', true),
      allReduceBucketBytes: o.int('allReduceBucketBytes', { min: 4 }, DEFAULT_BUCKET_BYTES),
      ...readRunOptions(fn, o),
      ptx: undefined as PolicyGradientConfig['ptx'],
    },
  };
}

export function ptxConfig(fn: string, value: unknown): PolicyGradientConfig['ptx'] {
  if (value === undefined) return undefined;
  const p = options(fn, 'options.ptx', value);
  p.known(['data', 'coef', 'batchSize', 'seqLen']);
  if (p.obj.data === undefined) throw typeError(fn, 'options.ptx.data', 'a JSONL path or SFT records', undefined);
  return {
    data: p.obj.data as string | SftInput[],
    coef: p.number('coef', { min: 0 }),
    batchSize: p.int('batchSize', { min: 1 }, 4),
    seqLen: p.int('seqLen', { min: 2 }, 256),
  };
}

export class PPOTrainer extends PolicyGradientLoop {
  constructor(opts: PPOOptions) {
    const fn = 'PPOTrainer';
    const { o, config } = commonConfig(fn, opts as unknown as Record<string, unknown>, {
      samplesPerPrompt: 1,
      klCoef: 0.05,
      klMode: 'reward',
      klEstimator: 'k1',
    });
    o.known(KEYS);
    if (!opts.critic) throw typeError(fn, 'options.critic', 'a model with a scalar head', undefined);
    if (!opts.critic.config.valueHead)
      throw typeError(
        fn,
        'options.critic',
        'a *ForSequenceClassification model (scalar head)',
        opts.critic.config.architecture,
      );
    const f = opts.promptFilter === undefined ? undefined : options(fn, 'options.promptFilter', opts.promptFilter);
    f?.known(['samples', 'quantile']);
    super({
      ...config,
      stage: 'ppo',
      critic: opts.critic,
      advantage: 'gae',
      criticLr: o.number('criticLr', { min: 0, float32: true }, config.lr * 10),
      valueClipEps: o.number('valueClipEps', { gt: 0 }, 0.2),
      gamma: o.number('gamma', { min: 0, max: 1 }, 1),
      lambda: o.number('lambda', { min: 0, max: 1 }, 0.95),
      baseline: o.oneOf('baseline', ['reference', 'normalize', 'none'] as const, 'reference'),
      whitenAdvantages: o.bool('whitenAdvantages', true),
      criticWarmupIterations: o.int('criticWarmupIterations', { min: 0 }, 0),
      ptx: ptxConfig(fn, opts.ptx),
      promptFilter: f
        ? { samples: f.int('samples', { min: 2 }, 4), quantile: f.number('quantile', { min: 0, lt: 1 }, 0.1) }
        : undefined,
    });
  }
}
