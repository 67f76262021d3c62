/** rlhf prm: a process reward model from step-labelled responses. */
import { ProcessRewardTrainer } from '../../train/process-reward.js';
import type { CommandSpec, CommandHandler } from '../framework/index.js';
import { runScalarHeadCommand, scalarHeadFlags } from './scalar-head.js';
import { unescapeFlag } from './shared.js';

export const prmSpec: CommandSpec = {
  name: 'prm',
  summary: 'train a process reward model on step-labelled responses (JSONL {prompt, steps, labels})',
  description:
    'Loads --model (usually the SFT model) with a scalar head and trains one score per reasoning step, read at the step separator, with binary cross-entropy against the step labels (1 = good; soft labels allowed, e.g. Monte-Carlo rollout success rates from monteCarloStepLabels). Reports held-out step accuracy and response accuracy (min over steps). Use the result in ppo/grpo/label/eval with --process-reward-model.',
  flags: scalarHeadFlags(
    {
      file: 'steps.jsonl',
      data: 'step-labelled responses',
      held: 'held-out records',
      seqLen: 'longest prompt + steps (later steps are dropped)',
      batch: 'responses per micro-batch',
      epochs: 'passes over the data',
    },
    {
      stepSeparator: {
        type: 'string',
        default: '\\n',
        placeholder: 'text',
        describe: 'appended to every step; its last token carries the step score (\\n, \\t escapes)',
      },
    },
  ),
  examples: [
    'rlhf prm --model runs/sft/model --data steps.jsonl --output runs/prm --epochs 2 --lr 1e-4',
    'rlhf grpo --model runs/sft/model --prompts prompts.jsonl --process-reward-model runs/prm/model --step-aggregate min --output runs/grpo',
  ],
};

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export const prmCommand: CommandHandler = (o, ctx) =>
  runScalarHeadCommand(
    'prm',
    o,
    ctx,
    (common) => new ProcessRewardTrainer({ ...common, separator: unescapeFlag(o.stepSeparator as string) }),
    ['loss', 'stepAccuracy', 'lr'],
    (r) =>
      `held-out step accuracy ${r.eval ? pct(r.eval.stepAccuracy) : 'n/a'}, response accuracy ${r.eval ? pct(r.eval.responseAccuracy) : 'n/a'}`,
  );
