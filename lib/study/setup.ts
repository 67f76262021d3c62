/**
 * What every study of `rlhf study` shares, per seed: the demo task's SFT policy, its annotator-
 * labelled pairs, gold-labelled held-out pairs and the length-balanced reward model (the demo's
 * stages 1–3, lib/demo), and cached evaluations of trained policies against SFT under the gold
 * judge. Everything lands under `<output>/runs/<preset>/seed-<s>/`; a finished piece is written
 * atomically and read back instead of being redone, so an interrupted study resumes where it
 * stopped. A fresh run reloads the models it just saved, so a resumed and an uninterrupted run
 * compute from the same bytes.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDemoModel, demoRmOptions, demoSftOptions, demoSftRecords } from '../demo/base.js';
import { DEMO_PRESETS, type DemoSettings } from '../demo/pipeline.js';
import { samplePolicy, type PolicySamples } from '../demo/evaluate.js';
import { samplePairs } from '../demo/label.js';
import { goldScore, rng, splitPrompts, type TaskPrompt } from '../demo/task.js';
import { pathExists, writeFileAtomic } from '../io/atomic.js';
import { Model } from '../engine/model.js';
import type { PreferenceRecord } from '../data/index.js';
import { RewardModel } from '../rewards/reward-model.js';
import { generateRollout } from '../rollout/generate.js';
import { sequenceBatch } from '../rollout/sequences.js';
import { ByteTokenizer } from '../tokenizer/index.js';
import type { DemoFlaws, LongDocOptions } from './longdoc.js';
import { encodeRow } from '../train/preference-common.js';
import { RewardTrainer } from '../train/reward.js';
import { SFTTrainer } from '../train/sft.js';

export type PresetName = 'small' | 'full';

export interface StudySettings extends DemoSettings {
  preset: PresetName;
  /** default number of seeds (0, 1, …, seeds − 1) */
  seeds: number;
  /** EXO-rw / DPO-rw: samples per prompt K, β, learning rate */
  rw: { k: number; beta: number; lr: number; epochs: number };
  /** K of the exo-frontier study's EXO-rw / DPO-rw runs */
  frontierKs: number[];
  /** β (β_π = β_r) and epochs swept by the exo-frontier study at K = rw.k, besides rw.beta and rw.epochs */
  frontierBetas: number[];
  frontierEpochs: number[];
  /** best-of-n: candidates per answer */
  bestOfN: number;
  /** PTX coefficients compared by the ptx study */
  ptxCoefs: number[];
  /** PPO samples per prompt compared by the scaling study */
  scalingSamples: number[];
  /** policy and reward-model sizes the scaling study adds to the base size (each trained like the base) */
  scalingSizes: Array<DemoSettings['model']>;
  /** training prompts whose SFT demonstrations measure forgetting (negative log-likelihood) */
  nllPrompts: number;
  /** the longreward study's long-document task, policy and runs (lib/study/longdoc.ts) */
  longreward: LongRewardSettings;
}

export interface LongRewardSettings {
  doc: LongDocOptions;
  flaws: DemoFlaws;
  trainPrompts: number;
  evalPrompts: number;
  /** the policy; `window`: its sliding attention window (tokens), Mistral-style on every layer */
  model: DemoSettings['model'] & { window: number };
  /**
   * SFT in two phases: first `shortDocs` questions on documents of `shortChars` characters (cheap
   * rows that teach the answer form, at `lr`), then every training question's demonstration
   * `repeats` times on its long document (at `longLr`), one epoch each
   */
  sft: { shortDocs: number; shortChars: number; lr: number; repeats: number; longLr: number; batchSize: number };
  /** SFT answers per training question scored by the LongReward pipeline (the pairs' pool) */
  samplesPerPrompt: number;
  dpo: { epochs: number; lr: number; beta: number; batchSize: number };
  /** answers per held-out question per policy */
  evalSamples: number;
  maxNewTokens: number;
}

const LONGREWARD_SMALL: LongRewardSettings = {
  doc: { chars: 2000, entitiesPerDoc: 4, usualRate: 0.7 },
  flaws: { wrongRate: 0.2, extraRate: 0.5, fillerRate: 0.2 },
  trainPrompts: 32,
  evalPrompts: 16,
  model: { hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 171, window: 256 },
  sft: { shortDocs: 2400, shortChars: 150, lr: 5e-3, repeats: 1, longLr: 1e-3, batchSize: 8 },
  samplesPerPrompt: 4,
  dpo: { epochs: 2, lr: 3e-4, beta: 0.1, batchSize: 8 },
  evalSamples: 4,
  maxNewTokens: 80,
};

const SMALL_BASE: DemoSettings = {
  ...DEMO_PRESETS.quick,
  model: { hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 171 },
  maxNewTokens: 32,
  sft: { repeats: 4, epochs: 8, lr: 3e-3, batchSize: 32 },
  pairs: { rounds: 3, evalRounds: 2 },
  rm: { epochs: 2, lr: 1e-3, batchSize: 32 },
  ppo: {
    iterations: 24,
    promptsPerIteration: 16,
    samplesPerPrompt: 2,
    lr: 2e-4,
    criticLr: 1e-3,
    klCoef: 0.02,
    ptxCoef: 1,
  },
  dpo: { epochs: 1, lr: 1e-4, beta: 0.1 },
  exo: { epochs: 1, lr: 1e-4, beta: 0.1 },
  grpo: { iterations: 12, promptsPerIteration: 8, samplesPerPrompt: 4, lr: 2e-4 },
  eval: { samples: 4 },
};

export const STUDY_PRESETS: Record<PresetName, StudySettings> = {
  small: {
    ...SMALL_BASE,
    preset: 'small',
    seeds: 3,
    rw: { k: 4, beta: 0.1, lr: 1e-4, epochs: 1 },
    frontierKs: [2, 4, 8],
    frontierBetas: [0.03, 0.3],
    frontierEpochs: [2],
    bestOfN: 4,
    ptxCoefs: [0, 0.5, 1],
    scalingSamples: [1, 2, 4, 8],
    scalingSizes: [{ hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 86 }],
    nllPrompts: 60,
    longreward: LONGREWARD_SMALL,
  },
  full: {
    ...DEMO_PRESETS.default,
    preset: 'full',
    seeds: 5,
    rw: { k: 4, beta: 0.1, lr: 2e-5, epochs: 1 },
    frontierKs: [2, 4, 8],
    frontierBetas: [0.03, 0.3, 1],
    frontierEpochs: [2, 3],
    bestOfN: 4,
    ptxCoefs: [0, 0.5, 1],
    scalingSamples: [1, 2, 4, 8, 16],
    scalingSizes: [
      { hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 86 },
      { hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 171 },
    ],
    nllPrompts: 120,
    longreward: {
      ...LONGREWARD_SMALL,
      doc: { ...LONGREWARD_SMALL.doc, chars: 3000 },
      trainPrompts: 96,
      evalPrompts: 32,
      sft: { ...LONGREWARD_SMALL.sft, shortDocs: 4800, repeats: 2 },
      dpo: { ...LONGREWARD_SMALL.dpo, epochs: 3 },
    },
  },
};

/** One policy evaluated against SFT on the held-out prompts (per prompt: the mean over its samples). */
export interface PolicyEval {
  /** gold score per prompt */
  gold: number[];
  /** win (1), tie (0.5) or loss (0) against the SFT sample of the same index, averaged per prompt */
  win: number[];
  /** KL(π‖π_sft) per response, per prompt (Monte Carlo on the policy's samples; best-of-n: log n − (n−1)/n) */
  kl: number[];
  /** characters per response, per prompt */
  length: number[];
  /** per-token negative log-likelihood of the SFT demonstrations of `nllPrompts` training prompts (null for best-of-n) */
  nll: number[] | null;
  /** per training iteration (RL methods): mean reward given to the policy-gradient loss (after the baseline), raw reward, KL */
  curve?: Array<{ step: number; shapedReward: number; reward: number; kl: number }>;
  /** two example responses */
  examples: Array<{ prompt: string; response: string; gold: number }>;
}

/** The per-seed base: the demo's stages 1–3, loaded. */
export interface SeedBase {
  seed: number;
  settings: StudySettings;
  dir: string;
  tokenizer: ByteTokenizer;
  train: TaskPrompt[];
  eval: TaskPrompt[];
  sftRecords: Array<{ kind: 'messages'; messages: Array<{ role: string; content: string }> }>;
  sft: Model;
  rm: Model;
  reward: RewardModel;
  pairs: PreferenceRecord[];
  /** gold-labelled pairs of fresh SFT samples on the training prompts (never trained on) */
  goldPairs: PreferenceRecord[];
  rmAccuracy: number;
  dispose(): void;
}

export const seedDir = (output: string, preset: PresetName, seed: number): string =>
  join(output, 'runs', preset, `seed-${seed}`);

/** Builds (or loads) the base of one seed. `log` gets one line per finished stage. */
export async function prepareBase(
  output: string,
  settings: StudySettings,
  seed: number,
  log: (line: string) => void = () => {},
): Promise<SeedBase> {
  const s = settings;
  const dir = seedDir(output, s.preset, seed);
  const tok = new ByteTokenizer();
  const { train, eval: evalPrompts } = splitPrompts(seed, s.evalFraction, s.maxOperand);
  const sftRecords = demoSftRecords(train, s, rng(seed));
  const marker = join(dir, 'base.json');
  if (!(await pathExists(marker))) {
    await mkdir(dir, { recursive: true });
    const model = await createDemoModel(s.model, tok, seed);
    const sftResult = await new SFTTrainer({
      model,
      tokenizer: tok,
      train: sftRecords,
      ...demoSftOptions(s, seed),
    }).train();
    await model.save(join(dir, 'sft'), { extraFiles: (d) => tok.save(d) });
    const common = { model, tokenizer: tok, prompts: train, maxNewTokens: s.maxNewTokens };
    const labelled = await samplePairs({ ...common, rounds: s.pairs.rounds, seed: seed + 1, noise: s.noise });
    const goldPairs = (await samplePairs({ ...common, rounds: s.pairs.evalRounds, seed: seed + 2, gold: true })).pairs;
    model.dispose();
    const rm = await Model.load(join(dir, 'sft'), { architecture: 'LlamaForSequenceClassification', seed });
    const rmResult = await new RewardTrainer({
      model: rm,
      tokenizer: tok,
      train: labelled.pairs,
      eval: goldPairs,
      ...demoRmOptions(s, seed),
    }).train();
    await rm.save(join(dir, 'rm'), { extraFiles: (d) => tok.save(d) });
    rm.dispose();
    await writeFileAtomic(
      marker,
      JSON.stringify({
        sftLoss: sftResult.trainLoss,
        rmAccuracy: rmResult.eval!.accuracy,
        pairs: labelled.pairs,
        goldPairs,
      }),
    );
    log(
      `seed ${seed}: SFT loss ${sftResult.trainLoss.toFixed(3)}, ${labelled.pairs.length} pairs, reward model ${(100 * rmResult.eval!.accuracy).toFixed(1)}% on gold-labelled pairs`,
    );
  }
  const saved = JSON.parse(await readFile(marker, 'utf8')) as {
    rmAccuracy: number;
    pairs: PreferenceRecord[];
    goldPairs: PreferenceRecord[];
  };
  const sft = await Model.load(join(dir, 'sft'));
  const rm = await Model.load(join(dir, 'rm'));
  return {
    seed,
    settings: s,
    dir,
    tokenizer: tok,
    train,
    eval: evalPrompts,
    sftRecords,
    sft,
    rm,
    reward: new RewardModel(rm, tok, { batchSize: 64 }),
    pairs: saved.pairs,
    goldPairs: saved.goldPairs,
    rmAccuracy: saved.rmAccuracy,
    dispose: () => {
      sft.dispose();
      rm.dispose();
    },
  };
}

/** Reads a cached JSON result, or computes, writes (atomically) and returns it. */
export async function cached<T>(path: string, compute: () => Promise<T>): Promise<T> {
  if (await pathExists(path)) return JSON.parse(await readFile(path, 'utf8')) as T;
  const value = await compute();
  await mkdir(join(path, '..'), { recursive: true });
  await writeFileAtomic(path, JSON.stringify(value));
  return value;
}

const evalSeed = (b: SeedBase) => b.seed + 3;

/** The SFT policy's own samples on the held-out prompts (the baseline of every comparison). */
async function sftSamples(b: SeedBase): Promise<PolicySamples> {
  return cached(join(b.dir, 'policies', 'sft-samples.json'), () =>
    samplePolicy({
      policy: b.sft,
      sft: b.sft,
      tokenizer: b.tokenizer,
      prompts: b.eval,
      samples: b.settings.eval.samples,
      maxNewTokens: b.settings.maxNewTokens,
      seed: evalSeed(b),
    }),
  );
}

/** Per-token NLL of the SFT demonstrations of the first `nllPrompts` training prompts (first repeat), per prompt. */
export async function demonstrationNll(b: SeedBase, policy: Model): Promise<number[]> {
  const rows = b.sftRecords.slice(0, Math.min(b.settings.nllPrompts, b.train.length)).map((rec) => {
    const [user, answer] = rec.messages;
    return encodeRow(b.tokenizer, [user], answer.content, 96).seq;
  });
  const sb = sequenceBatch(rows, b.tokenizer.padId);
  const f = await policy.forward({
    tokens: sb.tokens,
    targets: sb.targets,
    batch: sb.batch,
    seqLen: sb.seqLen,
    lengths: sb.lengths,
    saveForBackward: false,
  });
  return rows.map((_, i) => {
    let s = 0;
    for (let t = 0; t < sb.responseLength[i]; t++) s -= f.logprobs[sb.responseStart[i] + t];
    return s / sb.responseLength[i];
  });
}

function toEval(b: SeedBase, ps: PolicySamples, base: PolicySamples): Omit<PolicyEval, 'nll'> {
  const win = ps.gold.map((row, p) => {
    let w = 0;
    row.forEach((g, k) => (w += Math.abs(g - base.gold[p][k]) < 1e-9 ? 0.5 : g > base.gold[p][k] ? 1 : 0));
    return w / row.length;
  });
  return {
    gold: ps.gold.map((row) => row.reduce((a, x) => a + x, 0) / row.length),
    win,
    kl: ps.klPerPrompt,
    length: ps.lengthPerPrompt,
    examples: [0, 1].map((i) => ({ prompt: b.eval[i].text, response: ps.texts[i][0], gold: ps.gold[i][0] })),
  };
}

/**
 * A policy's evaluation, cached under `policies/<key>.json`: `train` is called only when it is not
 * there yet, returns the trained policy (disposed here), for RL methods its training curve, and,
 * for a policy of another size, the SFT policy its KL is measured against (default the base's).
 */
export async function evaluatePolicy(
  b: SeedBase,
  key: string,
  train: () => Promise<{ policy: Model; curve?: PolicyEval['curve']; reference?: Model }>,
): Promise<PolicyEval> {
  return cached(join(b.dir, 'policies', `${key}.json`), async () => {
    const base = await sftSamples(b);
    const { policy, curve, reference } = await train();
    try {
      const ps =
        policy === b.sft
          ? base
          : await samplePolicy({
              policy,
              sft: reference ?? b.sft,
              tokenizer: b.tokenizer,
              prompts: b.eval,
              samples: b.settings.eval.samples,
              maxNewTokens: b.settings.maxNewTokens,
              seed: evalSeed(b),
            });
      return { ...toEval(b, ps, base), nll: await demonstrationNll(b, policy), ...(curve ? { curve } : {}) };
    } finally {
      if (policy !== b.sft) policy.dispose();
      if (reference && reference !== b.sft) reference.dispose();
    }
  });
}

/**
 * Best-of-n on the SFT policy: each answer is the reward model's favourite of n fresh SFT samples;
 * KL(π_bon‖π_sft) is the usual analytic estimate log n − (n − 1)/n.
 */
export async function evaluateBestOfN(b: SeedBase, n: number): Promise<PolicyEval> {
  return cached(join(b.dir, 'policies', `best-of-${n}.json`), async () => {
    const base = await sftSamples(b);
    const k = b.settings.eval.samples;
    const roll = await generateRollout({
      policy: b.sft,
      tokenizer: b.tokenizer,
      prompts: b.eval.map((p) => ({ prompt: p.messages })),
      samplesPerPrompt: k * n,
      sampling: { maxNewTokens: b.settings.maxNewTokens, temperature: 1 },
      seed: evalSeed(b) + 1000,
    });
    const scores = await b.reward.scoreText(
      roll.samples.map((s) => ({ prompt: b.eval[s.promptIndex].messages, response: s.text })),
    );
    const texts = b.eval.map(() => [] as string[]);
    for (let p = 0; p < b.eval.length; p++)
      for (let j = 0; j < k; j++) {
        let best = -1;
        for (let i = 0; i < n; i++) {
          const r = (p * k + j) * n + i;
          if (best < 0 || scores[r] > scores[best]) best = r;
        }
        texts[p].push(roll.samples[best].text);
      }
    const ps: PolicySamples = {
      texts,
      gold: texts.map((row, p) => row.map((t) => goldScore(b.eval[p], t).total)),
      kl: Math.log(n) - (n - 1) / n,
      length: 0,
      klPerPrompt: b.eval.map(() => Math.log(n) - (n - 1) / n),
      lengthPerPrompt: texts.map((row) => row.reduce((a, t) => a + t.length, 0) / row.length),
    };
    return { ...toEval(b, ps, base), nll: null };
  });
}
