/**
 * The types of the policy-gradient loop (lib/train/policy-gradient.ts): its resolved configuration
 * (filled and validated by PPOTrainer / GroupTrainer), its result, and one iteration's data.
 */
import type { Model } from '../engine/model.js';
import type { PromptRecord, SftInput } from '../data/index.js';
import type { Aggregation, KlEstimator } from '../losses/index.js';
import type { RewardSource } from '../rewards/types.js';
import type { EnvironmentConfig } from '../rollout/environment.js';
import type { Rollout, SamplingOptions } from '../rollout/generate.js';
import type { SequenceBatch } from '../rollout/sequences.js';
import type { Tokenizer } from '../tokenizer/index.js';
import type { RunOptions } from './run.js';

export type AdvantageEstimator = 'gae' | 'grpo' | 'dr-grpo' | 'rloo' | 'reinforce++';

export interface KlOptions {
  /** β (initial value when adaptive) */
  coef: number;
  estimator: KlEstimator;
  /** 'reward': −β·kl_t in the token rewards (PPO); 'loss': β·KL(π‖ref) added to the loss (GRPO) */
  mode: 'reward' | 'loss';
  /** adaptive controller (Ziegler et al. 2019): target KL per response and horizon in samples */
  target?: number;
  horizon?: number;
}

/** Resolved options of the loop (the public trainers fill defaults and validate). */
export interface PolicyGradientConfig extends RunOptions {
  stage: 'ppo' | 'group';
  policy: Model;
  tokenizer: Tokenizer;
  reward: RewardSource;
  prompts: string | PromptRecord[];
  reference?: Model;
  critic?: Model;
  advantage: AdvantageEstimator;
  iterations: number;
  promptsPerIteration: number;
  samplesPerPrompt: number;
  sampling: SamplingOptions;
  epochs: number;
  miniBatchSize: number;
  lr: number;
  criticLr: number;
  weightDecay: number;
  maxGradNorm: number;
  clipEps: number;
  clipEpsHigh?: number;
  dualClip?: number;
  /** how the policy loss, entropy bonus and KL loss reduce over tokens (rows are the sequences); the critic's loss is a token mean */
  aggregation: Aggregation;
  valueClipEps: number;
  gamma: number;
  lambda: number;
  entropyCoef: number;
  kl: KlOptions;
  whitenAdvantages: boolean;
  baseline: 'reference' | 'normalize' | 'none';
  rewardClip?: number;
  overlong?: { buffer: number; penalty: number; maxLength: number };
  maskTruncated: boolean;
  criticWarmupIterations: number;
  ptx?: { data: string | SftInput[]; coef: number; batchSize: number; seqLen: number };
  promptFilter?: { samples: number; quantile: number };
  /** the model that samples the rollouts (the behaviour policy μ; default the policy) */
  rolloutPolicy?: Model;
  /** truncated importance sampling cap C: π_old is recomputed by the policy and each token's loss weighs min(π_old/μ, C) */
  truncatedIS?: number;
  /** 1: one-step off-policy rollouts, iteration k + 1 sampled by a copy of the policy before update k while update k runs; 0: on-policy */
  asyncRollouts: 0 | 1;
  /** multi-turn episodes against an environment instead of single responses (lib/rollout/environment.ts) */
  environment?: EnvironmentConfig;
  /** DAPO dynamic sampling (group methods): resample until every group has varying rewards, at most maxRounds rounds */
  dynamicSampling?: { maxRounds: number };
  /** packed forwards: each minibatch's sequences (and the reference and critic forwards' rows) share
   * rows of at most this many tokens (lib/train/packed-rows.ts); undefined: one padded row per sequence */
  packTokens?: number;
  /** ZeRO stage 1 over options.group (default true) */
  shardOptimizer?: boolean;
  /** the gradient all-reduce overlapped with the update's last backward where the model allows (default true) */
  overlapAllReduce?: boolean;
  /** the gradient all-reduce's bucket size, overlapped or not (default DEFAULT_BUCKET_BYTES) */
  allReduceBucketBytes?: number;
  /** 'vanilla': PPO's token-level ratio and clip; 'gspo': GSPO's sequence-level ratio and clip */
  lossMode: 'vanilla' | 'gspo';
  /** a NaN/±Infinity reward: 'error' stops naming the sample; 'skip' drops it (its whole group for grpo/rloo) with a warning */
  onInvalidReward: 'error' | 'skip';
  seed: number;
  saveEvery?: number;
}

export interface PolicyGradientResult {
  iterations: number;
  /** mean raw reward of each iteration's samples */
  rewardHistory: number[];
  skippedSteps: number;
  seconds: number;
  stopped?: boolean;
}

/** One iteration's rollout and everything the update needs, in the rollout's batch layout. */
export interface IterationData {
  rollout: Rollout;
  sb: SequenceBatch;
  scores: number[];
  shaped: number[];
  oldLogp: Float32Array;
  refLogp?: Float32Array;
  oldValues?: Float32Array;
  advantages: Float32Array;
  returns?: Float32Array;
  klPerResponse: number[];
  /** samples dropped for an invalid reward (onInvalidReward 'skip') */
  droppedSamples: number;
  /** dynamic sampling: rounds of sampling and zero-variance groups discarded */
  dyn?: { dynamicSamplingRounds: number; discardedGroups: number };
  /** truncated importance weights min(π_old/μ, C) per token (batch layout), with truncatedIS */
  isWeights?: Float32Array;
}
