/**
 * A trained reward model as a reward source: the scalar head's value at the last token of
 * prompt ++ response (the EOS position, as Hugging Face's *ForSequenceClassification pools).
 */
import type { Model } from '../engine/model.js';
import { encodePrompt } from '../data/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { lastTokenIndex, sequenceBatch, type Sequence } from '../rollout/sequences.js';
import type { RewardSource, ScoreRequest } from './types.js';

export class RewardModel implements RewardSource {
  readonly name: string;
  constructor(
    readonly model: Model,
    readonly tokenizer: Tokenizer,
    opts: { name?: string; batchSize?: number } = {},
  ) {
    if (!model.config.valueHead)
      throw new TypeError(
        `RewardModel: expected a model with a scalar head (*ForSequenceClassification), received a ${model.config.architecture}`,
      );
    this.name = opts.name ?? 'reward-model';
    this.#batchSize = opts.batchSize ?? 16;
  }
  #batchSize: number;

  /** Scores token sequences directly (prompt ids ++ response ids). */
  async scoreSequences(seqs: Sequence[]): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < seqs.length; i += this.#batchSize) {
      const sb = sequenceBatch(seqs.slice(i, i + this.#batchSize), this.tokenizer.padId);
      const f = await this.model.forward({
        tokens: sb.tokens,
        batch: sb.batch,
        seqLen: sb.seqLen,
        lengths: sb.lengths,
        values: true,
        saveForBackward: false,
      });
      for (let b = 0; b < sb.batch; b++) out.push(f.values![lastTokenIndex(sb, b)]);
    }
    return out;
  }

  score(batch: ScoreRequest[]): Promise<number[]> {
    return this.scoreSequences(batch.map((r) => ({ promptIds: r.promptIds, responseIds: r.responseIds })));
  }

  /** Scores text pairs (tokenising prompt and response; the response ends with eos). */
  scoreText(pairs: Array<{ prompt: ScoreRequest['prompt']; response: string }>): Promise<number[]> {
    return this.scoreSequences(
      pairs.map((p) => ({
        promptIds: Int32Array.from(encodePrompt(this.tokenizer, p.prompt)),
        responseIds: Int32Array.from([...this.tokenizer.encode(p.response), this.tokenizer.eosId]),
      })),
    );
  }
}
