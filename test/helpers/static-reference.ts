// What a GenerationSession request must equal bit for bit: the same request alone on the static
// batch (Model.generate({staticBatch: true}): one contiguous KV cache, same seed and stream).
import type { Model } from '../../lib/engine/model.js';
import { bitwiseEqual } from './tolerance.js';

export interface SoloRequest {
  prompt: number[];
  maxNewTokens: number;
  temperature?: number;
  topK?: number;
  seed?: number;
  stream?: number;
  stopTokens?: number[];
}

/** The request generated alone on the static batch (temperature 1, seed and stream 0, no stop tokens unless given). */
export async function staticReference(m: Model, r: SoloRequest) {
  const [g] = await m.generate({
    prompts: [r.prompt],
    maxNewTokens: r.maxNewTokens,
    temperature: r.temperature ?? 1,
    topK: r.topK ?? 0,
    seed: r.seed ?? 0,
    streams: [r.stream ?? 0],
    stopTokens: r.stopTokens ?? [],
    staticBatch: true,
  });
  return g;
}

export const sameInts = (a: Int32Array, b: Int32Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** The same tokens and bitwise the same log-probs. */
export function sameGeneration(
  a: { tokens: Int32Array; logprobs: Float32Array },
  b: { tokens: Int32Array; logprobs: Float32Array },
): boolean {
  return sameInts(a.tokens, b.tokens) && bitwiseEqual(a.logprobs, b.logprobs);
}
