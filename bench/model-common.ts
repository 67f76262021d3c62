/**
 * Model configurations and child-process plumbing shared by the model benchmarks. Each
 * measurement of ours runs in its own child process so its peak RSS is its own (the PyTorch peer
 * also runs one process per measurement).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { AdamW } from '../lib/engine/adamw.js';
import { tinyConfig } from '../lib/engine/config.js';
import type { Model } from '../lib/engine/model.js';

export const MODELS = {
  // ~6M parameters
  '6M': tinyConfig({ vocab: 4096, hidden: 256, layers: 6, heads: 8, kvHeads: 4, ffn: 688, maxPositions: 2048 }),
  // ~50M parameters
  '50M': tinyConfig({ vocab: 8192, hidden: 512, layers: 14, heads: 8, kvHeads: 4, ffn: 1376, maxPositions: 2048 }),
} as const;
export type ModelName = keyof typeof MODELS;

/** Runs this bench file again as `--child <json>` and returns the JSON it prints. */
export function runChild(moduleUrl: string, args: object): Record<string, number> {
  const r = spawnSync(process.execPath, [fileURLToPath(moduleUrl), '--child', JSON.stringify(args)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`benchmark child failed: ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

export function childArgs(): Record<string, unknown> | undefined {
  const i = process.argv.indexOf('--child');
  return i >= 0 ? JSON.parse(process.argv[i + 1]) : undefined;
}

export function peakRssMB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/**
 * One training step of next-token cross-entropy on a fixed pseudo-random batch (B × T tokens):
 * forward, backward, AdamW, zero-grad. Returns the mean loss before the update.
 */
export function trainStep(model: Model, opt: AdamW, B: number, T: number): () => Promise<number> {
  const V = model.config.vocab,
    N = B * T;
  let s = 12345;
  const tokens = Int32Array.from({ length: N }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % V);
  const targets = tokens.map((_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
  const d = new Float32Array(N).fill(-1 / (B * (T - 1)));
  return async () => {
    const f = await model.forward({ tokens, targets, batch: B, seqLen: T });
    let loss = 0;
    for (let i = 0; i < N; i++) loss -= f.logprobs[i];
    await model.backward({ dLogprobs: d });
    await opt.step();
    await model.zeroGrad();
    return loss / (B * (T - 1));
  };
}
