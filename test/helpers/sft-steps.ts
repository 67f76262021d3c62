// Steps of plain next-token SFT driven by hand (zeroGrad, forward, backward, optimizer step), for
// tests that check a model's training path (dtype, storage, resume) without the SFT trainer.
import type { Model } from '../../lib/engine/model.js';
import type { AdamW } from '../../lib/engine/adamw.js';
import type { Rng } from './random.js';

/** Tokens and targets of a [batch, seqLen] next-token batch (targets -1 where ignored). */
export interface TokenBatch {
  tokens: Int32Array;
  targets: Int32Array;
  batch: number;
  seqLen: number;
}

/**
 * A [B, T] batch of uniform random tokens in [0, vocab) whose targets are the next token; each
 * row's last position has target -1.
 */
export function nextTokenBatch(rng: Rng, vocab: number, B: number, T: number): TokenBatch {
  const tokens = new Int32Array(B * T).map(() => rng.int(0, vocab - 1));
  const targets = new Int32Array(B * T).fill(-1);
  for (let b = 0; b < B; b++) for (let i = 0; i < T - 1; i++) targets[b * T + i] = tokens[b * T + i + 1];
  return { tokens, targets, batch: B, seqLen: T };
}

/**
 * Steps `from` .. `from + steps - 1` of next-token SFT: step s trains on `batchAt(s)` with the
 * mean negative log-prob over its targeted positions as the loss, then `opt.step()`. Gradients are
 * zeroed before each step. Returns each step's loss (before its update), in step order.
 */
export async function sftSteps(
  m: Model,
  opt: AdamW,
  batchAt: (step: number) => TokenBatch,
  steps: number,
  from = 0,
): Promise<number[]> {
  const losses: number[] = [];
  for (let s = from; s < from + steps; s++) {
    const batch = batchAt(s);
    await m.zeroGrad();
    const f = await m.forward({ ...batch, saveForBackward: true });
    let n = 0,
      sum = 0;
    for (let i = 0; i < f.logprobs.length; i++) if (batch.targets[i] >= 0) ((sum -= f.logprobs[i]), n++);
    losses.push(sum / n);
    const d = new Float32Array(f.logprobs.length);
    for (let i = 0; i < d.length; i++) d[i] = batch.targets[i] >= 0 ? -1 / n : 0;
    await m.backward({ dLogprobs: d });
    await opt.step();
  }
  return losses;
}
