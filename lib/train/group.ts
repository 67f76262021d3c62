/**
 * Group methods: n samples per prompt, no critic; one advantage per response from its group's
 * scores (spec §4, "Does RLHF Scale?"):
 *   grpo         (R − mean_group) / (std_group + 1e-6)        (Shao et al. 2024)
 *   rloo         R − mean of the other n − 1 samples            (Ahmadian et al. 2024)
 *   reinforce++  (R − mean_batch) / std_batch                   (Hu 2025)
 * The advantage is shared by every token of the response; the clipped surrogate with the
 * generation's log-probs as π_old; KL to the reference as a loss term (k3, GRPO's form), off by
 * default. The loop is lib/train/policy-gradient.ts.
 */
import type { Model } from '../engine/model.js';
import type { PromptRecord, SftInput } from '../data/index.js';
import type { RewardSource } from '../rewards/types.js';
import type { SamplingOptions } from '../rollout/generate.js';
import type { Tokenizer } from '../tokenizer/index.js';
import type { KlOptions } from './policy-gradient.js';
import { PolicyGradientLoop } from './policy-gradient.js';
import { commonConfig, ptxConfig } from './ppo.js';

export interface GroupOptions {
  policy: Model;
  tokenizer: Tokenizer;
  reward: RewardSource;
  prompts: string | PromptRecord[];
  estimator?: 'grpo' | 'rloo' | 'reinforce++';
  reference?: Model;
  iterations: number;
  promptsPerIteration?: number;
  /** n samples per prompt (default 4) */
  samplesPerPrompt?: number;
  sampling?: Partial<SamplingOptions>;
  epochs?: number;
  miniBatchSize?: number;
  lr?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  clipEps?: number;
  dualClip?: number;
  entropyCoef?: number;
  kl?: Partial<KlOptions>;
  rewardClip?: number;
  ptx?: { data: string | SftInput[]; coef: number; batchSize?: number; seqLen?: number };
  seed?: number;
  outputDir?: string;
  saveEvery?: number;
  keepCheckpoints?: number;
  resumeFrom?: string;
}

const KEYS = ['policy', 'tokenizer', 'reward', 'prompts', 'estimator', 'reference', 'iterations', 'promptsPerIteration', 'samplesPerPrompt', 'sampling', 'epochs', 'miniBatchSize', 'lr', 'weightDecay', 'maxGradNorm', 'clipEps', 'dualClip', 'entropyCoef', 'kl', 'rewardClip', 'ptx', 'seed', 'outputDir', 'saveEvery', 'keepCheckpoints', 'resumeFrom'] as const;

export class GroupTrainer extends PolicyGradientLoop {
  constructor(opts: GroupOptions) {
    const fn = 'GroupTrainer';
    const { o, config } = commonConfig(fn, opts as unknown as Record<string, unknown>, { samplesPerPrompt: 4, klCoef: 0, klMode: 'loss', klEstimator: 'k3' });
    o.known(KEYS);
    const estimator = o.oneOf('estimator', ['grpo', 'rloo', 'reinforce++'] as const, 'grpo');
    if (estimator !== 'reinforce++' && config.samplesPerPrompt < 2)
      throw new RangeError(`${fn}: expected options.samplesPerPrompt to be >= 2 for ${estimator} (the group baseline needs several samples), received ${config.samplesPerPrompt}`);
    super({
      ...config,
      stage: 'group',
      advantage: estimator,
      criticLr: 0,
      valueClipEps: 0.2,
      gamma: 1,
      lambda: 1,
      baseline: 'none',
      whitenAdvantages: false,
      criticWarmupIterations: 0,
      ptx: ptxConfig(fn, opts.ptx),
    });
  }
}
