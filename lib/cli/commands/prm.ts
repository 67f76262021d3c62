/** rlhf prm: a process reward model from step-labelled responses. */
import { ProcessRewardTrainer } from '../../train/process-reward.js';
import type { CommandSpec, CommandHandler } from '../framework/index.js';
import { isWriterRank, joinProcessGroup, launchUnderMpi, needsLaunch } from './launch.js';
import {
  applyThreads,
  defined,
  follow,
  loadScalarHeadModel,
  loopFlags,
  saveFinal,
  TRAIN_FLAGS,
  unescapeFlag,
  lrFlag,
} from './shared.js';

export const prmSpec: CommandSpec = {
  name: 'prm',
  summary: 'train a process reward model on step-labelled responses (JSONL {prompt, steps, labels})',
  description:
    'Loads --model (usually the SFT model) with a scalar head and trains one score per reasoning step, read at the step separator, with binary cross-entropy against the step labels (1 = good; soft labels allowed, e.g. Monte-Carlo rollout success rates from monteCarloStepLabels). Reports held-out step accuracy and response accuracy (min over steps). Use the result in ppo/grpo/label/eval with --process-reward-model.',
  flags: {
    data: { type: 'path', required: true, placeholder: 'steps.jsonl', describe: 'step-labelled responses' },
    evalData: {
      type: 'path',
      placeholder: 'steps.jsonl',
      describe: 'held-out records (default: --eval-split of the data)',
    },
    evalSplit: { type: 'number', min: 0, max: 0.9, default: 0.1, describe: 'fraction held out when no --eval-data' },
    model: {
      type: 'checkpoint',
      required: true,
      placeholder: 'dir',
      describe: 'backbone checkpoint (a causal LM gets a new scalar head)',
    },
    stepSeparator: {
      type: 'string',
      default: '\\n',
      placeholder: 'text',
      describe: 'appended to every step; its last token carries the step score (\\n, \\t escapes)',
    },
    seqLen: { type: 'int', min: 2, default: 512, describe: 'longest prompt + steps (later steps are dropped)' },
    batchSize: { type: 'int', min: 1, default: 8, describe: 'responses per micro-batch' },
    epochs: { type: 'int', min: 1, default: 1, describe: 'passes over the data' },
    ...TRAIN_FLAGS,
    lr: lrFlag(1e-5, 'cosine'),
  },
  examples: [
    'rlhf prm --model runs/sft/model --data steps.jsonl --output runs/prm --epochs 2 --lr 1e-4',
    'rlhf grpo --model runs/sft/model --prompts prompts.jsonl --process-reward-model runs/prm/model --step-aggregate min --output runs/grpo',
  ],
};

export const prmCommand: CommandHandler = async (o, ctx) => {
  if (needsLaunch(o)) return launchUnderMpi(o, ctx);
  const group = joinProcessGroup(o);
  applyThreads(o);
  const { model, tokenizer } = await loadScalarHeadModel(o.model as string, '--model', true);
  const trainer = new ProcessRewardTrainer({
    model,
    tokenizer,
    train: o.data as string,
    ...(o.evalData ? { eval: o.evalData as string } : { evalSplit: o.evalSplit as number }),
    ...defined({ saveEvery: o.saveEvery as number | undefined, lr: o.lr as number | undefined }),
    separator: unescapeFlag(o.stepSeparator as string),
    ...loopFlags(o),
    ...defined({ group }),
  });
  if (!isWriterRank(group)) return saveFinal(model, tokenizer, o, ctx, (await trainer.train()).stopped, group);
  const done = await follow(trainer, ctx, ['loss', 'stepAccuracy', 'lr'], o, 'prm');
  const r = await trainer.train();
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  await done(
    `prm: ${r.steps} steps, held-out step accuracy ${r.eval ? pct(r.eval.stepAccuracy) : 'n/a'}, response accuracy ${r.eval ? pct(r.eval.responseAccuracy) : 'n/a'}, ${r.seconds.toFixed(0)} s${r.stopped ? ' (stopped; resume with --resume)' : ''}`,
  );
  return saveFinal(model, tokenizer, o, ctx, r.stopped, group);
};
