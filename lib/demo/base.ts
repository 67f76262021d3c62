/**
 * The demo's first stages as both `rlhf demo` (lib/demo/pipeline.ts) and `rlhf study`'s per-seed
 * base (lib/study/setup.ts) run them: the SFT data, a fresh policy of a given size, and the SFT
 * and reward-model trainer settings. One definition, so the study's base is the demo's.
 */
import { tinyConfig } from '../engine/config.js';
import { Model } from '../engine/model.js';
import type { ByteTokenizer, ChatMessage } from '../tokenizer/index.js';
import type { DemoSettings } from './pipeline.js';
import { demonstration, type TaskPrompt } from './task.js';

/** The demo's SFT data: every training prompt's demonstration, `repeats` times (flaws drawn by `r`). */
export function demoSftRecords(
  train: TaskPrompt[],
  s: Pick<DemoSettings, 'sft' | 'demoQuality'>,
  r: () => number,
): Array<{ kind: 'messages'; messages: ChatMessage[] }> {
  return Array.from({ length: s.sft.repeats }, () =>
    train.map((p) => ({
      kind: 'messages' as const,
      messages: [...p.messages, { role: 'assistant', content: demonstration(p, r, s.demoQuality) }],
    })),
  ).flat();
}

/** A fresh demo-task policy of `size` (Llama-style, byte vocabulary, 256 positions). */
export function createDemoModel(size: DemoSettings['model'], tok: ByteTokenizer, seed: number): Promise<Model> {
  return Model.create(
    tinyConfig({
      vocab: tok.vocabSize,
      hidden: size.hidden,
      layers: size.layers,
      heads: size.heads,
      kvHeads: size.kvHeads,
      ffn: size.ffn,
      maxPositions: 256,
      eosTokenId: tok.eosId,
      padTokenId: tok.padId,
    }),
    { seed },
  );
}

/** The demo's SFT trainer settings (rows of 96 tokens, packed). */
export const demoSftOptions = (s: Pick<DemoSettings, 'sft'>, seed: number) => ({
  seqLen: 96,
  batchSize: s.sft.batchSize,
  epochs: s.sft.epochs,
  lr: s.sft.lr,
  warmupSteps: 10,
  packing: true,
  seed,
});

/** The demo's reward-model trainer settings (length-balanced pairs). */
export const demoRmOptions = (s: Pick<DemoSettings, 'rm'>, seed: number) => ({
  seqLen: 96,
  batchSize: s.rm.batchSize,
  epochs: s.rm.epochs,
  lr: s.rm.lr,
  lengthBalance: true,
  seed,
});
