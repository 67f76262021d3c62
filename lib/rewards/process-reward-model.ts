/**
 * A trained process reward model as a reward source (docs/algorithms.md §4 PRM): the response is split into
 * steps at `separator`, encoded step by step as in training (lib/data/steps.ts), each step's
 * probability of being good is σ(score at its separator), and the sequence reward aggregates them:
 * `min` (the weakest step, default), `last` or `mean`. A response with no step inside the model's
 * context (empty, or a prompt that fills it) scores 0.
 */
import type { Model } from '../engine/model.js';
import { encodeSteps, splitSteps, type Prompt } from '../data/index.js';
import { aggregateProcessScores, sigmoid, type ProcessAggregation } from '../losses/index.js';
import { sequenceBatch } from '../rollout/sequences.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { options } from '../validate.js';
import type { RewardSource, ScoreRequest } from './types.js';

export interface ProcessRewardModelOptions {
  name?: string;
  /** the step separator the model was trained with (default "\n") */
  separator?: string;
  /** how step probabilities become one reward (default 'min') */
  aggregate?: ProcessAggregation;
  /** responses per forward (default 16) */
  batchSize?: number;
}

export class ProcessRewardModel implements RewardSource {
  readonly name: string;
  readonly separator: string;
  readonly aggregate: ProcessAggregation;
  #batchSize: number;

  constructor(
    readonly model: Model,
    readonly tokenizer: Tokenizer,
    opts: ProcessRewardModelOptions = {},
  ) {
    const fn = 'ProcessRewardModel';
    if (!model.config.valueHead)
      throw new TypeError(
        `${fn}: expected a model with a scalar head (*ForSequenceClassification), received a ${model.config.architecture}`,
      );
    const o = options(fn, 'options', opts);
    o.known(['name', 'separator', 'aggregate', 'batchSize']);
    this.name = o.string('name', 'process-reward-model');
    this.separator = o.string('separator', '\n');
    if (this.separator === '') throw new TypeError(`${fn}: expected options.separator to be a non-empty string`);
    this.aggregate = o.oneOf('aggregate', ['min', 'last', 'mean'] as const, 'min');
    this.#batchSize = o.int('batchSize', { min: 1 }, 16);
  }

  /** P(step good) = σ(score) for every step of each response (steps past the context are left out). */
  async stepProbabilities(items: Array<{ prompt: Prompt; steps: string[] }>): Promise<number[][]> {
    const out: number[][] = [];
    const maxLength = this.model.config.maxPositions;
    for (let i = 0; i < items.length; i += this.#batchSize) {
      const enc = items
        .slice(i, i + this.#batchSize)
        .map((it) => encodeSteps(this.tokenizer, it.prompt, it.steps, this.separator, maxLength));
      const live = enc.filter((e) => e.stepEnds.length > 0);
      const probs = new Map<(typeof enc)[number], number[]>();
      if (live.length) {
        const sb = sequenceBatch(live, this.tokenizer.padId);
        const f = await this.model.forward({
          tokens: sb.tokens,
          batch: sb.batch,
          seqLen: sb.seqLen,
          lengths: sb.lengths,
          values: true,
          saveForBackward: false,
        });
        live.forEach((e, b) =>
          probs.set(
            e,
            e.stepEnds.map((p) => sigmoid(f.values![b * sb.seqLen + p])),
          ),
        );
      }
      for (const e of enc) out.push(probs.get(e) ?? []);
    }
    return out;
  }

  async score(batch: ScoreRequest[]): Promise<number[]> {
    const probs = await this.stepProbabilities(
      batch.map((r) => ({ prompt: r.prompt, steps: splitSteps(r.response, this.separator) })),
    );
    return probs.map((p) => (p.length ? aggregateProcessScores(p, this.aggregate) : 0));
  }
}
