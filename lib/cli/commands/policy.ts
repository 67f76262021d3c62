/** rlhf ppo / rlhf grpo: policy optimisation against a reward model or a rule, or in a built-in environment. */
import type { ProcessGroup } from '../../distributed/index.js';
import { Model } from '../../engine/model.js';
import { CalculatorEnvironment } from '../../demo/calculator.js';
import type { RewardSource } from '../../rewards/types.js';
import type { EnvironmentOptions } from '../../rollout/environment.js';
import { GroupTrainer } from '../../train/group.js';
import { PPOTrainer } from '../../train/ppo.js';
import { CliError, type CommandSpec, type CommandHandler, type FlagSpec } from '../framework/index.js';
import { isWriterRank, joinProcessGroup, launchUnderMpi, needsLaunch } from './launch.js';
import {
  applyThreads,
  defined,
  follow,
  loadModel,
  loadScalarHeadModel,
  lrFlag,
  resolveReward,
  REWARD_FLAGS,
  runFlags,
  saveFinal,
  TRAIN_FLAGS,
} from './shared.js';
import { frozenReference } from '../../train/reference.js';

const POLICY_FLAGS: Record<string, FlagSpec> = {
  policy: {
    type: 'checkpoint',
    required: true,
    placeholder: 'dir',
    describe: 'the policy to train (usually the SFT model); also the frozen reference',
  },
  prompts: {
    type: 'path',
    required: true,
    placeholder: 'prompts.jsonl',
    describe: 'prompts ({prompt: string | messages, ...})',
  },
  ...REWARD_FLAGS,
  iterations: { type: 'int', min: 1, default: 100, describe: 'rollout + update iterations' },
  promptsPerIteration: { type: 'int', min: 1, default: 8, describe: 'prompts per iteration' },
  maxNewTokens: { type: 'int', min: 1, default: 64, describe: 'longest response' },
  temperature: {
    type: 'number',
    min: 0,
    default: 1,
    describe: 'sampling temperature of the rollouts; ratios, KL and entropy use the same one',
  },
  topP: {
    type: 'number',
    min: 0,
    max: 1,
    default: 1,
    describe: 'nucleus sampling mass of the rollouts (log-probs stay those of the full tempered distribution)',
  },
  topK: { type: 'int', min: 0, default: 0, describe: 'sample from the k most likely tokens (0 = off)' },
  epochs: { type: 'int', min: 1, default: 1, describe: 'update passes over each rollout batch' },
  miniBatchSize: { type: 'int', min: 1, describe: 'responses per update (default: the whole batch)' },
  clipEps: { type: 'number', min: 0, max: 1, describe: 'PPO ratio clip ε (default 0.2)' },
  clipEpsHigh: { type: 'number', min: 0, describe: "upper clip ε_high, DAPO's clip-higher (default ε)" },
  lossAggregation: {
    type: 'enum',
    values: ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'],
    describe:
      'how the policy loss reduces over tokens (default token-mean; seq-mean-token-mean with --loss-mode gspo; seq-mean-token-sum-norm with --estimator dr-grpo)',
  },
  lossMode: {
    type: 'enum',
    values: ['vanilla', 'gspo'],
    default: 'vanilla',
    describe: 'policy ratio and clip per token (PPO) or per sequence (GSPO: exp of the mean token log-ratio)',
  },
  ptxData: {
    type: 'path',
    placeholder: 'sft.jsonl',
    describe: 'SFT data for the next-token regulariser (ChatGLM-RLHF)',
  },
  ptxCoef: { type: 'number', min: 0, default: 0, describe: 'λ of the next-token regulariser' },
  overlongBuffer: {
    type: 'int',
    min: 1,
    placeholder: 'N',
    describe: 'DAPO soft overlong punishment: the reward ramps down over the last N tokens before --max-new-tokens',
  },
  overlongPenalty: {
    type: 'number',
    min: 0,
    default: 1,
    describe: 'the full overlong penalty (with --overlong-buffer)',
  },
  packTokens: {
    type: 'int',
    min: 2,
    placeholder: 'N',
    describe:
      'pack the sequences of each forward (policy, reference, critic) into rows of N tokens (block-diagonal attention; log-probs bit-identical to the padded rows)',
  },
  maskTruncated: { type: 'bool', describe: 'responses cut by --max-new-tokens take no part in the policy loss' },
  printSamples: {
    type: 'int',
    min: 0,
    default: 10,
    placeholder: 'N',
    describe: 'print a few samples (prompt, response, reward, KL to the reference) every N iterations (0: never)',
  },
  rolloutPolicy: {
    type: 'path',
    placeholder: 'dir',
    describe: 'sample the rollouts from this model (a behaviour policy other than --policy, e.g. a quantised copy)',
  },
  truncatedIs: {
    type: 'number',
    min: 1,
    describe:
      'truncated importance sampling cap C: recompute π_old with --policy and weight each token by min(π_old/μ, C)',
  },
  asyncRollouts: {
    type: 'int',
    min: 0,
    max: 1,
    default: 0,
    describe:
      'one-step off-policy rollouts: a copy of the policy samples the next iteration while the update runs (ratios against its log-probs; with --truncated-is corrected)',
  },
  onInvalidReward: {
    type: 'enum',
    values: ['error', 'skip'],
    default: 'error',
    describe:
      'a NaN/Infinity reward stops the run naming the sample, or drops the sample (grpo/rloo: its group) with a warning',
  },
  environment: {
    type: 'enum',
    values: ['calculator'],
    describe:
      'multi-turn episodes in a built-in environment: calculator answers "calc <expression>" turns and gives 1 for a final answer equal to the prompt record\'s "answer" (a reward flag is then optional and adds to it)',
  },
  maxTurns: { type: 'int', min: 1, max: 256, default: 4, describe: 'policy turns per episode (with --environment)' },
  turnRewards: {
    type: 'enum',
    values: ['final', 'per-turn'],
    default: 'final',
    describe:
      "with --environment: the episode's reward at its last token, or each step's reward at the last token of the policy turn it follows (ppo; grpo sums them)",
  },
  ...TRAIN_FLAGS,
};

/** The reward source (optional with --environment) and the environment options of the command. */
async function rewardAndEnvironment(o: Record<string, unknown>): Promise<{
  reward?: RewardSource;
  rm?: Model;
  environment?: EnvironmentOptions;
}> {
  if (!o.environment) return resolveReward(o);
  const { reward, rm } = o.rewardModel || o.rewardRule || o.processRewardModel ? await resolveReward(o) : {};
  return {
    reward,
    rm,
    environment: {
      create: () => new CalculatorEnvironment(),
      maxTurns: o.maxTurns as number,
      turnRewards: o.turnRewards as 'final' | 'per-turn',
    },
  };
}

export const ppoSpec: CommandSpec = {
  name: 'ppo',
  summary: 'PPO with a critic, reference-baseline rewards and the next-token regulariser (ChatGLM-RLHF)',
  flags: {
    ...POLICY_FLAGS,
    lr: lrFlag(1e-5, 'constant'),
    klCoef: {
      type: 'number',
      min: 0,
      default: 0.05,
      describe: 'β: KL to the reference as a per-token penalty in the reward (KL is measured and logged whatever β)',
    },
    klEstimator: { type: 'enum', values: ['k1', 'k2', 'k3'], default: 'k1', describe: 'per-token KL estimator' },
    critic: {
      type: 'checkpoint',
      placeholder: 'dir',
      describe: 'critic initialisation (default: the reward model, else the policy with a new scalar head)',
    },
    samplesPerPrompt: { type: 'int', min: 1, default: 1, describe: 'responses per prompt' },
    baseline: {
      type: 'enum',
      values: ['reference', 'normalize', 'none'],
      default: 'reference',
      describe: 'reward shaping: r(x,y) − r(x,y_ref) (ChatGLM-RLHF), running normalisation, or none',
    },
    criticLr: { type: 'number', min: 0, describe: 'critic learning rate (default 10× --lr)' },
    criticWarmup: { type: 'int', min: 0, default: 0, describe: 'iterations that train only the critic' },
    klTarget: {
      type: 'number',
      min: 0,
      describe: 'adaptive KL controller target (KL per response; default: none, a fixed β)',
    },
  },
  examples: [
    'rlhf ppo --policy runs/sft/model --reward-model runs/rm/model --prompts prompts.jsonl --ptx-data sft.jsonl --ptx-coef 1 --output runs/ppo --iterations 80 --lr 1e-4',
  ],
};

export const grpoSpec: CommandSpec = {
  name: 'grpo',
  summary:
    'group methods with n samples per prompt and no critic: GRPO, Dr. GRPO, RLOO, REINFORCE++ (GSPO with --loss-mode gspo)',
  flags: {
    ...POLICY_FLAGS,
    lr: lrFlag(1e-5, 'constant'),
    klCoef: {
      type: 'number',
      min: 0,
      default: 0,
      describe: 'β: KL to the reference added to the loss (KL is measured and logged whatever β)',
    },
    klEstimator: { type: 'enum', values: ['k1', 'k2', 'k3'], default: 'k3', describe: 'per-token KL estimator' },
    estimator: {
      type: 'enum',
      values: ['grpo', 'dr-grpo', 'rloo', 'reinforce++'],
      default: 'grpo',
      describe: 'advantage estimator (dr-grpo: no std normalisation, constant length normaliser)',
    },
    dynamicSampling: {
      type: 'bool',
      describe:
        'DAPO dynamic sampling: drop groups whose rewards are all equal and sample more prompts to fill the batch',
    },
    dynamicSamplingMaxRounds: {
      type: 'int',
      min: 1,
      default: 4,
      describe: 'sampling rounds per iteration at most (with --dynamic-sampling)',
    },
    samplesPerPrompt: { type: 'int', min: 1, default: 4, describe: 'responses per prompt (the group)' },
  },
  examples: [
    'rlhf grpo --policy runs/sft/model --reward-rule demo-gold --prompts prompts.jsonl --output runs/grpo --samples-per-prompt 8 --lr 1e-4',
    'rlhf grpo --policy runs/sft/model --reward-rule demo-gold --prompts prompts.jsonl --output runs/grpo-dp --nproc 2',
  ],
};

function common(o: Record<string, unknown>) {
  return {
    prompts: o.prompts as string,
    iterations: o.iterations as number,
    promptsPerIteration: o.promptsPerIteration as number,
    samplesPerPrompt: o.samplesPerPrompt as number,
    sampling: {
      maxNewTokens: o.maxNewTokens as number,
      temperature: o.temperature as number,
      topP: o.topP as number,
      topK: o.topK as number,
    },
    epochs: o.epochs as number,
    ...defined({
      miniBatchSize: o.miniBatchSize as number | undefined,
      lr: o.lr as number | undefined,
      saveEvery: o.saveEvery as number | undefined,
      clipEps: o.clipEps as number | undefined,
      clipEpsHigh: o.clipEpsHigh as number | undefined,
      packTokens: o.packTokens as number | undefined,
    }),
    ...defined({
      aggregation: o.lossAggregation as
        'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum' | 'seq-mean-token-sum-norm' | undefined,
    }),
    lossMode: o.lossMode as 'vanilla' | 'gspo',
    kl: defined({
      coef: o.klCoef as number | undefined,
      estimator: o.klEstimator as 'k1' | 'k2' | 'k3' | undefined,
      target: o.klTarget as number | undefined,
    }),
    ...(o.ptxData ? { ptx: { data: o.ptxData as string, coef: o.ptxCoef as number } } : {}),
    ...(o.overlongBuffer
      ? { overlong: { buffer: o.overlongBuffer as number, penalty: o.overlongPenalty as number } }
      : {}),
    maskTruncated: o.maskTruncated === true,
    onInvalidReward: o.onInvalidReward as 'error' | 'skip',
    ...defined({ truncatedIS: o.truncatedIs as number | undefined }),
    asyncRollouts: o.asyncRollouts as 0 | 1,
    seed: o.seed as number,
    ...runFlags(o),
  };
}

async function finish(
  policy: Model,
  tokenizer: Awaited<ReturnType<typeof loadModel>>['tokenizer'],
  o: Record<string, unknown>,
  ctx: Parameters<CommandHandler>[1],
  r: { iterations: number; rewardHistory: number[]; seconds: number; stopped?: boolean },
  name: string,
  group: ProcessGroup | undefined,
): Promise<number> {
  const first = r.rewardHistory[0],
    last = r.rewardHistory.at(-1);
  const line = `${name}: ${r.iterations} iterations, reward ${first?.toFixed(3)} -> ${last?.toFixed(3)}, ${r.seconds.toFixed(0)} s${r.stopped ? ' (stopped; resume with --resume)' : ''}`;
  ctx.stderr.write(`${line}\n`);
  return saveFinal(policy, tokenizer, o, ctx, r.stopped, group);
}

export const ppoCommand: CommandHandler = async (o, ctx) => {
  if (needsLaunch(o)) return launchUnderMpi(o, ctx);
  const group = joinProcessGroup(o);
  applyThreads(o);
  if (o.ptxCoef && !o.ptxData) throw new CliError('--ptx-coef needs --ptx-data');
  const { model: policy, tokenizer } = await loadModel(o.policy as string, '--policy', undefined, true);
  const reference = await frozenReference(policy);
  const { reward, rm, environment } = await rewardAndEnvironment(o);
  const rolloutPolicy = o.rolloutPolicy
    ? (await loadModel(o.rolloutPolicy as string, '--rollout-policy')).model
    : undefined;
  const criticDir = (o.critic as string | undefined) ?? (o.rewardModel as string | undefined) ?? (o.policy as string);
  const critic =
    rm && !o.critic
      ? await rm.clone()
      : (await loadScalarHeadModel(criticDir, o.critic ? '--critic' : '--policy')).model;
  const trainer = new PPOTrainer({
    ...common(o),
    policy,
    critic,
    reference,
    tokenizer,
    ...defined({ reward, environment }),
    ...(rolloutPolicy ? { rolloutPolicy } : {}),
    baseline: o.baseline as 'reference' | 'normalize' | 'none',
    criticWarmupIterations: o.criticWarmup as number,
    ...defined({ criticLr: o.criticLr as number | undefined, group }),
  });
  if (!isWriterRank(group)) return saveFinal(policy, tokenizer, o, ctx, (await trainer.train()).stopped, group);
  const done = await follow(trainer, ctx, ['rewardMean', 'kl', 'valueLoss'], o, 'ppo');
  const r = await trainer.train();
  await done();
  return finish(policy, tokenizer, o, ctx, r, 'ppo', group);
};

export const grpoCommand: CommandHandler = async (o, ctx) => {
  if (needsLaunch(o)) return launchUnderMpi(o, ctx);
  const group = joinProcessGroup(o);
  applyThreads(o);
  if (o.ptxCoef && !o.ptxData) throw new CliError('--ptx-coef needs --ptx-data');
  const { model: policy, tokenizer } = await loadModel(o.policy as string, '--policy', undefined, true);
  const { reward, environment } = await rewardAndEnvironment(o);
  const rolloutPolicy = o.rolloutPolicy
    ? (await loadModel(o.rolloutPolicy as string, '--rollout-policy')).model
    : undefined;
  const trainer = new GroupTrainer({
    ...common(o),
    policy,
    tokenizer,
    ...defined({ reward, environment }),
    estimator: o.estimator as 'grpo' | 'dr-grpo' | 'rloo' | 'reinforce++',
    ...(rolloutPolicy ? { rolloutPolicy } : {}),
    ...(o.dynamicSampling ? { dynamicSampling: { maxRounds: o.dynamicSamplingMaxRounds as number } } : {}),
    ...defined({ group }),
  });
  if (!isWriterRank(group)) return saveFinal(policy, tokenizer, o, ctx, (await trainer.train()).stopped, group);
  const done = await follow(trainer, ctx, ['rewardMean', 'kl', 'entropy'], o, 'grpo');
  const r = await trainer.train();
  await done();
  return finish(policy, tokenizer, o, ctx, r, String(o.estimator), group);
};
