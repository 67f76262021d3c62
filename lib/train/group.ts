/**
 * Group methods: n samples per prompt, no critic; one advantage per response from its group's
 * scores (docs/algorithms.md §4, "Does RLHF Scale?"):
 *   grpo         (R − mean_group) / (std_group + 1e-6)        (Shao et al. 2024)
 *   dr-grpo      R − mean_group, no std division, and the loss summed over tokens ÷ a constant
 *                (responses × maxNewTokens, aggregation 'seq-mean-token-sum-norm') instead of each
 *                response's length: Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training",
 *                eq. 3) removes GRPO's length and difficulty biases
 *   rloo         R − mean of the other n − 1 samples            (Ahmadian et al. 2024)
 *   reinforce++  (R − mean_batch) / std_batch                   (Hu 2025)
 * The advantage is shared by every token of the response; the clipped surrogate with the
 * generation's log-probs as π_old; KL to the reference as a loss term (k3, GRPO's form), off by
 * default. The iteration is lib/train/policy-gradient.ts, on the trainers' one loop (lib/train/loop.ts).
 */
import { options } from '../validate.js';
import { PolicyGradientLoop } from './policy-gradient.js';
import { commonConfig, POLICY_GRADIENT_KEYS, ptxConfig, type PolicyGradientOptions } from './ppo.js';

export interface GroupOptions extends PolicyGradientOptions {
  estimator?: 'grpo' | 'dr-grpo' | 'rloo' | 'reinforce++';
  /** DAPO dynamic sampling: drop groups whose rewards are all equal and sample more prompts until
   * promptsPerIteration groups vary, at most maxRounds (default 4) sampling rounds per iteration */
  dynamicSampling?: boolean | { maxRounds?: number };
  /** n samples per prompt (default 4) */
  samplesPerPrompt?: number;
}

const KEYS = [...POLICY_GRADIENT_KEYS, 'estimator', 'dynamicSampling'] as const;

export class GroupTrainer extends PolicyGradientLoop {
  constructor(opts: GroupOptions) {
    const fn = 'GroupTrainer';
    const drGrpo = (opts as { estimator?: unknown }).estimator === 'dr-grpo';
    const { o, config } = commonConfig(fn, opts as unknown as Record<string, unknown>, {
      samplesPerPrompt: 4,
      klCoef: 0,
      klMode: 'loss',
      klEstimator: 'k3',
      ...(drGrpo ? { aggregation: 'seq-mean-token-sum-norm' as const } : {}),
    });
    o.known(KEYS);
    const estimator = o.oneOf('estimator', ['grpo', 'dr-grpo', 'rloo', 'reinforce++'] as const, 'grpo');
    let dynamicSampling: { maxRounds: number } | undefined;
    if (opts.dynamicSampling === true) dynamicSampling = { maxRounds: 4 };
    else if (opts.dynamicSampling !== undefined && opts.dynamicSampling !== false) {
      const d = options(fn, 'options.dynamicSampling', opts.dynamicSampling);
      d.known(['maxRounds']);
      dynamicSampling = { maxRounds: d.int('maxRounds', { min: 1 }, 4) };
    }
    if (estimator !== 'reinforce++' && config.samplesPerPrompt < 2)
      throw new RangeError(
        `${fn}: expected options.samplesPerPrompt to be >= 2 for ${estimator} (the group baseline needs several samples), received ${config.samplesPerPrompt}`,
      );
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
      dynamicSampling,
    });
  }
}
