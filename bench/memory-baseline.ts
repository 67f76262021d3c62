/**
 * The memory bench's baseline arm: the same LoRA setup and step run by another checkout of the
 * engine (its own compiled lib in `<root>/dist` and its addon through RLHF_ADDON), in a child
 * process, so the figure is what that engine held. `addon` is the path to the checkout's
 * build/Release/rlhf.node; its root is the nearest folder above it holding package.json, and that
 * checkout must have run `npm run build:ts` (dist/engine/*.js). The checkout's API must take
 * Model.create(config, {seed, lora}), new AdamW(model, {lr}), forward/backward/zeroGrad and
 * estimateTrainingMemory(config, {batch, seqLen, lora, targetRows}) — the engine's shape since LoRA
 * landed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { LoraOptions } from '../lib/engine/lora.js';

/** The checkout that built `addon`: the nearest folder above it with a package.json and a dist/engine. */
export function baselineRoot(addon: string): string {
  const path = resolve(addon);
  if (!existsSync(path)) throw new Error(`--baseline-addon: ${path} does not exist`);
  for (let d = dirname(path); d !== dirname(d); d = dirname(d))
    if (existsSync(join(d, 'package.json'))) {
      if (!existsSync(join(d, 'dist', 'engine', 'model.js')))
        throw new Error(`--baseline-addon: ${d} has no dist/engine/model.js (run \`npm run build:ts\` there)`);
      return d;
    }
  throw new Error(`--baseline-addon: no package.json in any folder above ${path}`);
}

export interface BaselineArgs {
  addon: string;
  hfConfig: Record<string, unknown>;
  lora: LoraOptions;
  batch: number;
  seqLen: number;
}

/** Runs `baselineChild` in a child process with RLHF_ADDON set; returns the JSON it prints. */
export function runBaseline(a: BaselineArgs): Record<string, number> {
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [self, '--baseline-child', JSON.stringify(a)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
    env: { ...process.env, RLHF_ADDON: resolve(a.addon) },
  });
  if (r.status !== 0) throw new Error(`baseline child failed: ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

async function baselineChild(a: BaselineArgs): Promise<void> {
  const root = baselineRoot(a.addon);
  const mod = async (p: string): Promise<any> => import(pathToFileURL(join(root, 'dist', 'engine', p)).href);
  const [{ Model }, { AdamW }, { configFromHF }, { nativeMemoryPeak }, { estimateTrainingMemory }, { resolveLora }] =
    await Promise.all([
      mod('model.js'),
      mod('adamw.js'),
      mod('config.js'),
      mod('device.js'),
      mod('memory.js'),
      mod('lora.js'),
    ]);
  const startRss = process.memoryUsage().rss / 2 ** 20;
  const cfg = configFromHF(a.hfConfig, 'baseline config');
  const m = await Model.create(cfg, { seed: 1, lora: a.lora });
  const afterCreate = process.resourceUsage().maxRSS / 1024;
  const opt = new AdamW(m, { lr: 1e-4 });
  // the step of bench/model-common.ts trainStep, written against the other checkout's Model
  const B = a.batch,
    T = a.seqLen,
    V = cfg.vocab,
    N = B * T;
  let s = 12345;
  const tokens = Int32Array.from({ length: N }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % V);
  const targets = tokens.map((_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
  const f = await m.forward({ tokens, targets, batch: B, seqLen: T });
  let loss = 0;
  for (let i = 0; i < N; i++) loss -= f.logprobs[i];
  await m.backward({ dLogprobs: new Float32Array(N).fill(-1 / (B * (T - 1))) });
  await opt.step();
  await m.zeroGrad();
  const est = estimateTrainingMemory(cfg, {
    batch: B,
    seqLen: T,
    lora: resolveLora('baseline', a.lora, cfg),
    targetRows: B * (T - 1),
  });
  console.log(
    JSON.stringify({
      rss: process.resourceUsage().maxRSS / 1024,
      startRss,
      afterCreate,
      nativePeak: nativeMemoryPeak() / 2 ** 20,
      estimate: est.peak / 2 ** 20,
      parameters: est.parameters / 2 ** 20,
      gradients: est.gradients / 2 ** 20,
      loss: loss / (B * (T - 1)),
    }),
  );
}

const i = process.argv.indexOf('--baseline-child');
if (i >= 0) await baselineChild(JSON.parse(process.argv[i + 1]) as BaselineArgs);
