// The small SFT run the output-folder and checkpoint-integrity tests drive: a byte-level model,
// 16 short examples and settings that write a checkpoint every 2 of 6 steps.
import { tinyConfig } from '../../lib/engine/config.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';

export const tok = new ByteTokenizer();
export const cfg = () =>
  tinyConfig({
    vocab: tok.vocabSize,
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    maxPositions: 64,
    eosTokenId: tok.eosId,
    padTokenId: tok.padId,
  });
export const data = Array.from({ length: 16 }, (_, i) => ({
  prompt: `q${i % 4}:`,
  completion: ` ${'ab'.repeat(1 + (i % 3))}`,
}));
export const common = {
  tokenizer: tok,
  train: data,
  seqLen: 24,
  batchSize: 4,
  maxSteps: 6,
  lr: 3e-3,
  seed: 7,
  saveEvery: 2,
};
