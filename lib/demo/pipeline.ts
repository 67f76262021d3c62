/**
 * `rlhf demo`: the whole ChatGLM-RLHF pipeline on the built-in task (lib/demo/task.ts).
 *
 *   1 sft    a tiny model from scratch on deliberately imperfect demonstrations
 *   2 pairs  the SFT model answers each training prompt twice; the simulated annotator labels
 *   3 rm     a reward model from the SFT backbone, length-balanced pairs, accuracy on held-out
 *            pairs labelled by the noise-free gold function
 *   4 ppo    reference-baseline rewards + PTX; dpo and exo on the same pairs; grpo with n samples
 *   5 eval   every policy against the SFT policy on held-out prompts, judged by the gold function
 *   6 report metrics.jsonl per stage, summary.json, report.html, summary.md
 * Everything is seeded: the same seed (and thread count) reproduces the same figures.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { Model } from '../engine/model.js';
import { writeJsonl } from '../data/index.js';
import { RewardModel } from '../rewards/reward-model.js';
import { ByteTokenizer } from '../tokenizer/index.js';
import { TrainerEmitter, type RolloutEvent } from '../train/events.js';
import { renderMarkdown, writeRunReport, type PolicySummary } from '../report/index.js';
import { GroupTrainer } from '../train/group.js';
import { PPOTrainer } from '../train/ppo.js';
import { PreferenceTrainer } from '../train/preference.js';
import { RewardTrainer } from '../train/reward.js';
import { SFTTrainer } from '../train/sft.js';
import { compare, meanGold, samplePolicy, type PolicySamples } from './evaluate.js';
import { samplePairs } from './label.js';
import { goldScore, makePrompt, rng, splitPrompts, type Format } from './task.js';
import { createDemoModel, demoRmOptions, demoSftOptions, demoSftRecords } from './base.js';

export interface DemoSettings {
  seed: number;
  /** operands of the questions are 0..maxOperand */
  maxOperand: number;
  /** fraction of the prompts held out for evaluation */
  evalFraction: number;
  model: { hidden: number; layers: number; heads: number; kvHeads: number; ffn: number };
  /** probability that a demonstration is ideal */
  demoQuality: number;
  /** annotator label-flip probability */
  noise: number;
  maxNewTokens: number;
  sft: { repeats: number; epochs: number; lr: number; batchSize: number };
  /** rounds over the training prompts (2 answers each); evalRounds over the held-out prompts */
  pairs: { rounds: number; evalRounds: number };
  rm: { epochs: number; lr: number; batchSize: number };
  ppo: {
    iterations: number;
    promptsPerIteration: number;
    samplesPerPrompt: number;
    lr: number;
    criticLr: number;
    klCoef: number;
    ptxCoef: number;
  };
  dpo: { epochs: number; lr: number; beta: number };
  exo: { epochs: number; lr: number; beta: number };
  grpo: { iterations: number; promptsPerIteration: number; samplesPerPrompt: number; lr: number };
  eval: { samples: number };
}

export const DEMO_PRESETS: Record<'default' | 'quick', DemoSettings> = {
  default: {
    seed: 0,
    maxOperand: 9,
    evalFraction: 0.2,
    model: { hidden: 128, layers: 4, heads: 4, kvHeads: 2, ffn: 341 },
    demoQuality: 0.4,
    noise: 0.1,
    maxNewTokens: 40,
    sft: { repeats: 8, epochs: 16, lr: 3e-3, batchSize: 32 },
    pairs: { rounds: 36, evalRounds: 6 },
    rm: { epochs: 3, lr: 1e-3, batchSize: 32 },
    ppo: {
      iterations: 80,
      promptsPerIteration: 32,
      samplesPerPrompt: 2,
      lr: 1e-4,
      criticLr: 1e-3,
      klCoef: 0.05,
      ptxCoef: 1,
    },
    dpo: { epochs: 1, lr: 2e-5, beta: 0.1 },
    exo: { epochs: 1, lr: 2e-5, beta: 0.1 },
    grpo: { iterations: 30, promptsPerIteration: 16, samplesPerPrompt: 4, lr: 1e-4 },
    eval: { samples: 8 },
  },
  quick: {
    seed: 0,
    maxOperand: 9,
    evalFraction: 0.2,
    model: { hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 171 },
    demoQuality: 0.4,
    noise: 0.1,
    maxNewTokens: 32,
    sft: { repeats: 4, epochs: 4, lr: 3e-3, batchSize: 32 },
    pairs: { rounds: 2, evalRounds: 2 },
    rm: { epochs: 2, lr: 1e-3, batchSize: 32 },
    ppo: {
      iterations: 8,
      promptsPerIteration: 16,
      samplesPerPrompt: 2,
      lr: 1e-4,
      criticLr: 1e-3,
      klCoef: 0.02,
      ptxCoef: 0.2,
    },
    dpo: { epochs: 1, lr: 1e-4, beta: 0.1 },
    exo: { epochs: 1, lr: 1e-4, beta: 0.1 },
    grpo: { iterations: 6, promptsPerIteration: 8, samplesPerPrompt: 4, lr: 1e-4 },
    eval: { samples: 2 },
  },
};

/** One policy against SFT: the report's {@link PolicySummary}. */
export type DemoPolicySummary = PolicySummary;

export interface DemoSummary {
  /** accuracy: held-out pairs on the training prompts (what PPO/GRPO query); accuracyUnseenPrompts: on held-out prompts */
  rm: { accuracy: number; accuracyUnseenPrompts: number; pairs: number; annotatorAgreement: number };
  sft: { goldScore: number; length: number };
  policies: Record<string, DemoPolicySummary>;
  seconds: number;
  task: { description: string; noise: number };
  stages: Array<{ name: string; seconds: number; line: string }>;
  /** example generations; rm: the reward model's score of the same text */
  samples: Array<{ prompt: string; responses: Record<string, { text: string; gold: number; rm: number }> }>;
  /** per RL policy and iteration: mean reward-model score (the proxy) and mean gold score of the rollouts, and KL to the reference */
  proxyGold: Record<string, Array<{ step: number; proxy: number; gold: number; kl: number }>>;
  settings: Record<string, string | number | boolean>;
}

/** How the caller follows progress: called when a stage starts; the returned function ends it. */
export type StageHook = (name: string, emitter?: TrainerEmitter) => (line: string) => void;

export async function runDemo(opts: {
  outputDir: string;
  quick?: boolean;
  seed?: number;
  settings?: DemoSettings;
  onStage?: StageHook;
}): Promise<DemoSummary> {
  const s: DemoSettings = { ...(opts.settings ?? DEMO_PRESETS[opts.quick ? 'quick' : 'default']) };
  if (opts.seed !== undefined) s.seed = opts.seed;
  const out = opts.outputDir;
  // the demo's folder is its own: a rerun replaces the stages of the previous demo (overwrite: true)
  const hook: StageHook = opts.onStage ?? (() => () => {});
  const t0 = performance.now();
  const stages: DemoSummary['stages'] = [];
  const stage = async <T>(
    name: string,
    emitter: TrainerEmitter | undefined,
    f: () => Promise<T>,
    line: (r: T) => string,
  ): Promise<T> => {
    const done = hook(name, emitter);
    const ts = performance.now();
    const r = await f();
    const seconds = (performance.now() - ts) / 1000;
    const l = line(r);
    stages.push({ name, seconds, line: l });
    done(l);
    return r;
  };
  await mkdir(join(out, 'data'), { recursive: true });
  const tok = new ByteTokenizer();
  const { train: trainPrompts, eval: evalPrompts } = splitPrompts(s.seed, s.evalFraction, s.maxOperand);
  const r = rng(s.seed);

  // 1. SFT on imperfect demonstrations
  const sftRecords = demoSftRecords(trainPrompts, s, r);
  await writeJsonl(
    join(out, 'data', 'sft.jsonl'),
    sftRecords.map(({ messages }) => ({ messages })),
  );
  await writeJsonl(
    join(out, 'data', 'prompts.jsonl'),
    trainPrompts.map((p) => ({ prompt: p.messages, a: p.a, b: p.b, format: p.format })),
  );
  const sft = await createDemoModel(s.model, tok, s.seed);
  const sftTrainer = new SFTTrainer({
    model: sft,
    tokenizer: tok,
    train: sftRecords,
    outputDir: join(out, 'sft'),
    overwrite: true,
    ...demoSftOptions(s, s.seed),
  });
  await stage(
    'sft',
    sftTrainer,
    () => sftTrainer.train(),
    (x) => `${x.steps} steps, final loss ${x.trainLoss.toFixed(3)}, ${sft.numParameters.toLocaleString()} parameters`,
  );

  // 2. pairs labelled by the simulated annotator; held-out pairs labelled by the gold function
  const pairsProgress = new TrainerEmitter();
  const labelled = await stage(
    'pairs',
    pairsProgress,
    () =>
      samplePairs(
        {
          model: sft,
          tokenizer: tok,
          prompts: trainPrompts,
          rounds: s.pairs.rounds,
          maxNewTokens: s.maxNewTokens,
          seed: s.seed + 1,
          noise: s.noise,
        },
        { emitter: pairsProgress, stage: 'pairs' },
      ),
    (x) =>
      `${x.pairs.length} preference pairs (annotator agrees with gold on ${(100 * x.annotatorAgreement).toFixed(0)}% of decided pairs, ${x.identical} identical pairs dropped)`,
  );
  // Held-out pairs (fresh samples, never trained on) labelled by the noise-free gold function:
  // on the training prompts — the distribution PPO/GRPO query the RM on — and on unseen prompts.
  const goldPairs = (
    await samplePairs({
      model: sft,
      tokenizer: tok,
      prompts: trainPrompts,
      rounds: s.pairs.evalRounds,
      maxNewTokens: s.maxNewTokens,
      seed: s.seed + 2,
      gold: true,
    })
  ).pairs;
  const goldUnseen = (
    await samplePairs({
      model: sft,
      tokenizer: tok,
      prompts: evalPrompts,
      rounds: s.pairs.evalRounds,
      maxNewTokens: s.maxNewTokens,
      seed: s.seed + 3,
      gold: true,
    })
  ).pairs;
  await writeJsonl(join(out, 'data', 'preferences.jsonl'), labelled.pairs);
  await writeJsonl(join(out, 'data', 'eval-pairs.jsonl'), goldPairs);
  await writeJsonl(join(out, 'data', 'eval-pairs-unseen-prompts.jsonl'), goldUnseen);

  // 3. reward model from the SFT backbone
  await sft.save(join(out, 'sft', 'model'), { extraFiles: (d) => tok.save(d) });
  const rm = await Model.load(join(out, 'sft', 'model'), {
    architecture: 'LlamaForSequenceClassification',
    seed: s.seed,
  });
  const rmTrainer = new RewardTrainer({
    model: rm,
    tokenizer: tok,
    train: labelled.pairs,
    eval: goldPairs,
    outputDir: join(out, 'rm'),
    overwrite: true,
    ...demoRmOptions(s, s.seed),
  });
  const rmResult = await stage(
    'rm',
    rmTrainer,
    async () => ({
      train: await rmTrainer.train(),
      unseen: await new RewardTrainer({
        model: rm,
        tokenizer: tok,
        train: goldUnseen,
        eval: goldUnseen,
        seqLen: 96,
      }).evaluate(),
    }),
    (x) =>
      `accuracy against gold labels ${(100 * x.train.eval!.accuracy).toFixed(1)}% on ${x.train.eval!.pairs} held-out pairs (${(100 * x.unseen.accuracy).toFixed(1)}% on ${x.unseen.pairs} pairs of unseen prompts)`,
  );
  await rm.save(join(out, 'rm', 'model'), { extraFiles: (d) => tok.save(d) });
  const reward = new RewardModel(rm, tok, { batchSize: 64 });

  // 4. policies
  const prompts = trainPrompts.map((p) => ({ prompt: p.messages }));
  const policies: Record<string, Model> = {};
  const ppoPolicy = await sft.clone();
  const critic = await rm.clone();
  const ppo = new PPOTrainer({
    policy: ppoPolicy,
    critic,
    reference: sft,
    tokenizer: tok,
    reward,
    prompts,
    iterations: s.ppo.iterations,
    promptsPerIteration: s.ppo.promptsPerIteration,
    samplesPerPrompt: s.ppo.samplesPerPrompt,
    sampling: { maxNewTokens: s.maxNewTokens },
    lr: s.ppo.lr,
    criticLr: s.ppo.criticLr,
    kl: { coef: s.ppo.klCoef },
    ptx: { data: sftRecords, coef: s.ppo.ptxCoef, batchSize: 16, seqLen: 96 },
    outputDir: join(out, 'ppo'),
    overwrite: true,
    seed: s.seed,
  });
  const proxyGold: DemoSummary['proxyGold'] = { ppo: followProxyGold(ppo), grpo: [] };
  await stage(
    'ppo',
    ppo,
    () => ppo.train(),
    (x) =>
      `${x.iterations} iterations, RM reward ${x.rewardHistory[0].toFixed(2)} -> ${x.rewardHistory.at(-1)!.toFixed(2)}`,
  );
  policies.ppo = ppoPolicy;
  for (const loss of ['dpo', 'exo'] as const) {
    const policy = await sft.clone();
    const o = s[loss];
    const t = new PreferenceTrainer({
      policy,
      reference: sft,
      tokenizer: tok,
      loss,
      beta: o.beta,
      train: labelled.pairs,
      outputDir: join(out, loss),
      overwrite: true,
      seqLen: 96,
      batchSize: 32,
      epochs: o.epochs,
      lr: o.lr,
      seed: s.seed,
    });
    await stage(
      loss,
      t,
      () => t.train(),
      (x) => `${x.steps} steps, final loss ${x.trainLoss.toFixed(3)}`,
    );
    policies[loss] = policy;
  }
  const grpoPolicy = await sft.clone();
  const grpo = new GroupTrainer({
    policy: grpoPolicy,
    reference: sft,
    tokenizer: tok,
    reward,
    prompts,
    estimator: 'grpo',
    iterations: s.grpo.iterations,
    promptsPerIteration: s.grpo.promptsPerIteration,
    samplesPerPrompt: s.grpo.samplesPerPrompt,
    sampling: { maxNewTokens: s.maxNewTokens },
    lr: s.grpo.lr,
    outputDir: join(out, 'grpo'),
    overwrite: true,
    seed: s.seed,
  });
  proxyGold.grpo = followProxyGold(grpo);
  await stage(
    'grpo',
    grpo,
    () => grpo.train(),
    (x) =>
      `${x.iterations} iterations, RM reward ${x.rewardHistory[0].toFixed(2)} -> ${x.rewardHistory.at(-1)!.toFixed(2)}`,
  );
  policies.grpo = grpoPolicy;
  for (const [name, policy] of Object.entries(policies))
    await policy.save(join(out, name, 'model'), { extraFiles: (d) => tok.save(d) });

  // 5. evaluation against SFT with the gold judge
  const evalOpts = {
    sft,
    tokenizer: tok,
    prompts: evalPrompts,
    samples: s.eval.samples,
    maxNewTokens: s.maxNewTokens,
    seed: s.seed + 3,
  };
  const evalProgress = new TrainerEmitter();
  const results = await stage(
    'eval',
    evalProgress,
    async () => {
      const total = 1 + Object.keys(policies).length,
        te = performance.now();
      let done = 0;
      const tick = () =>
        void evalProgress.emit('step', {
          stage: 'eval',
          step: ++done,
          totalSteps: total,
          etaSeconds: ((performance.now() - te) / 1000 / done) * (total - done),
          metrics: { policies: done },
        });
      const base = await samplePolicy({ ...evalOpts, policy: sft });
      tick();
      const per: Record<string, { samples: PolicySamples; summary: DemoPolicySummary }> = {};
      for (const [name, policy] of Object.entries(policies)) {
        const ps = await samplePolicy({ ...evalOpts, policy });
        tick();
        const c = compare(ps, base);
        per[name] = { samples: ps, summary: { ...c, kl: ps.kl, length: ps.length } };
      }
      return { base, per };
    },
    (x) =>
      Object.entries(x.per)
        .map(([k, v]) => `${k} ${(100 * v.summary.winRate).toFixed(0)}%`)
        .join(', ') + ' win rate against SFT',
  );

  const shown = evalPrompts.slice(0, 6);
  const sources: Array<[string, PolicySamples]> = [
    ['sft', results.base],
    ...Object.entries(results.per).map(([k, v]) => [k, v.samples] as [string, PolicySamples]),
  ];
  const rmScores = await reward.scoreText(
    shown.flatMap((p, i) => sources.map(([, v]) => ({ prompt: p.messages, response: v.texts[i][0] }))),
  );
  const summary: DemoSummary = {
    rm: {
      accuracy: rmResult.train.eval!.accuracy,
      accuracyUnseenPrompts: rmResult.unseen.accuracy,
      pairs: labelled.pairs.length,
      annotatorAgreement: labelled.annotatorAgreement,
    },
    sft: { goldScore: meanGold(results.base), length: results.base.length },
    policies: Object.fromEntries(Object.entries(results.per).map(([k, v]) => [k, v.summary])),
    seconds: (performance.now() - t0) / 1000,
    task: {
      description:
        'Single-digit addition with a requested format (a number, words or a sentence). The hidden gold function rewards a correct answer (+3), the requested format (+1), concision (−0.1 per extra character), and penalises repetition (−1) and filler (−1).',
      noise: s.noise,
    },
    stages,
    samples: shown.map((p, i) => ({
      prompt: p.text,
      responses: Object.fromEntries(
        sources.map(([k, v], j) => [
          k,
          { text: v.texts[i][0], gold: v.gold[i][0], rm: rmScores[i * sources.length + j] },
        ]),
      ),
    })),
    proxyGold,
    settings: {
      seed: s.seed,
      preset: opts.quick ? 'quick' : 'default',
      parameters: sft.numParameters,
      noise: s.noise,
      demoQuality: s.demoQuality,
    },
  };
  await writeFileAtomic(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  // the same report as `rlhf report <out>`: summary.json and the stage folders' metrics.jsonl
  await writeRunReport([out], join(out, 'report.html'), { title: 'rlhf demo report' });
  await writeFileAtomic(
    join(out, 'summary.md'),
    renderMarkdown(summary as unknown as Parameters<typeof renderMarkdown>[0], { title: 'rlhf demo summary' }),
  );
  for (const model of [sft, rm, critic, ...Object.values(policies)]) model.dispose();
  ppo.dispose();
  grpo.dispose();
  return summary;
}

/** Mean proxy (reward-model) and gold score of each RL iteration's rollouts, collected from 'rollout' events. */
function followProxyGold(trainer: TrainerEmitter): Array<{ step: number; proxy: number; gold: number; kl: number }> {
  const rows: Array<{ step: number; proxy: number; gold: number; kl: number }> = [];
  const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / Math.max(1, x.length);
  trainer.on('rollout', (e: RolloutEvent) => {
    const gold = e.samples.map((x) => {
      const m = /What is (\d+)\+(\d+)\? Answer (with a number|in words|in a sentence)/.exec(x.prompt);
      const format: Format = m?.[3] === 'with a number' ? 'number' : m?.[3] === 'in words' ? 'words' : 'sentence';
      return m ? goldScore(makePrompt(Number(m[1]), Number(m[2]), format), x.response).total : NaN;
    });
    rows.push({
      step: e.step,
      proxy: mean(e.samples.map((x) => x.reward)),
      gold: mean(gold),
      kl: mean(e.samples.map((x) => x.kl)),
    });
  });
  return rows;
}
