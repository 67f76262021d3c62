// The tiny policy the policy-gradient trainer tests share: a byte-level model small enough for
// many short RL runs on one thread, and the reward they train toward (the share of ASCII bytes).
import { tinyConfig } from '../../lib/engine/config.js';
import type { ByteTokenizer } from '../../lib/tokenizer/index.js';

/** 2 layers, hidden 32, 4 query / 2 KV heads, the byte tokenizer's vocabulary; a value head for a critic. */
export function tinyRlConfig(tok: ByteTokenizer, valueHead = false): ReturnType<typeof tinyConfig> {
  return tinyConfig({
    vocab: 264,
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    maxPositions: 128,
    eosTokenId: tok.eosId,
    valueHead,
  });
}

/** Fraction of the ids that are ASCII bytes (0 for an empty response). */
export const asciiFraction = (ids: Int32Array): number =>
  ids.length ? [...ids].filter((id) => id < 128).length / ids.length : 0;
