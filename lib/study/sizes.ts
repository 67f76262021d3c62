/**
 * Policies and reward models of other sizes for the scaling study, per seed: trained exactly as
 * the seed's base (lib/study/setup.ts) is — same SFT demonstrations, annotator pairs, gold-labelled
 * held-out pairs, steps and learning rates — only the width and depth differ. A reward model of a
 * size starts from the SFT policy of that size. Cached under `<seed dir>/sizes/h<hidden>-l<layers>/`;
 * a `done.json` written atomically after the weights marks a finished piece. Also the base-size
 * reward model without length balancing (the length-balance study's and its PPO's).
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDemoModel, demoRmOptions, demoSftOptions } from '../demo/base.js';
import type { DemoSettings } from '../demo/pipeline.js';
import { pathExists, writeFileAtomic } from '../io/atomic.js';
import { Model } from '../engine/model.js';
import { RewardTrainer } from '../train/reward.js';
import { SFTTrainer } from '../train/sft.js';
import type { SeedBase } from './setup.js';

export type ModelSize = DemoSettings['model'];

export const sizeKey = (m: ModelSize): string => `h${m.hidden}-l${m.layers}`;
export const sizeLabel = (m: ModelSize): string => `${m.layers} × ${m.hidden}`;
export const sameSize = (a: ModelSize, b: ModelSize): boolean =>
  a.hidden === b.hidden && a.layers === b.layers && a.heads === b.heads && a.kvHeads === b.kvHeads && a.ffn === b.ffn;

const dirOf = (b: SeedBase, size: ModelSize) => join(b.dir, 'sizes', sizeKey(size));

/** The SFT policy of `size` (the caller disposes it); the base's own when `size` is the base size. */
export async function sizedSft(b: SeedBase, size: ModelSize): Promise<Model> {
  if (sameSize(size, b.settings.model)) return b.sft.clone();
  const dir = join(dirOf(b, size), 'sft');
  if (!(await pathExists(join(dir, 'done.json')))) {
    await mkdir(dir, { recursive: true });
    const model = await createDemoModel(size, b.tokenizer, b.seed);
    const r = await new SFTTrainer({
      model,
      tokenizer: b.tokenizer,
      train: b.sftRecords,
      ...demoSftOptions(b.settings, b.seed),
    }).train();
    await model.save(dir, { extraFiles: (d) => b.tokenizer.save(d) });
    model.dispose();
    await writeFileAtomic(join(dir, 'done.json'), JSON.stringify({ trainLoss: r.trainLoss }));
  }
  return Model.load(dir);
}

/** The reward model of `size` and its accuracy on the seed's gold-labelled pairs (the caller disposes it). */
export async function sizedRm(b: SeedBase, size: ModelSize): Promise<{ model: Model; accuracy: number }> {
  if (sameSize(size, b.settings.model)) return { model: await b.rm.clone(), accuracy: b.rmAccuracy };
  const dir = join(dirOf(b, size), 'rm');
  const done = join(dir, 'done.json');
  if (!(await pathExists(done))) {
    const sft = await sizedSft(b, size);
    await sft.save(dir, { extraFiles: (d) => b.tokenizer.save(d) });
    sft.dispose();
    const rm = await Model.load(dir, { architecture: 'LlamaForSequenceClassification', seed: b.seed });
    const r = await new RewardTrainer({
      model: rm,
      tokenizer: b.tokenizer,
      train: b.pairs,
      eval: b.goldPairs,
      ...demoRmOptions(b.settings, b.seed),
    }).train();
    await rm.save(dir, { extraFiles: (d) => b.tokenizer.save(d) });
    rm.dispose();
    await writeFileAtomic(done, JSON.stringify({ accuracy: r.eval!.accuracy }));
  }
  const { accuracy } = JSON.parse(await readFile(done, 'utf8')) as { accuracy: number };
  return { model: await Model.load(dir), accuracy };
}

/**
 * The base-size reward model trained like the base one but on all pairs, without length balancing
 * (the caller disposes it). Cached under `<seed dir>/rm-unbalanced/`.
 */
export async function unbalancedRm(b: SeedBase): Promise<Model> {
  const dir = join(b.dir, 'rm-unbalanced');
  const done = join(dir, 'done.json');
  if (!(await pathExists(done))) {
    const rm = await Model.load(join(b.dir, 'sft'), { architecture: 'LlamaForSequenceClassification', seed: b.seed });
    await new RewardTrainer({
      model: rm,
      tokenizer: b.tokenizer,
      train: b.pairs,
      ...demoRmOptions(b.settings, b.seed),
      lengthBalance: false,
    }).train();
    await rm.save(dir, { extraFiles: (d) => b.tokenizer.save(d) });
    rm.dispose();
    await writeFileAtomic(done, '{}');
  }
  return Model.load(dir);
}
