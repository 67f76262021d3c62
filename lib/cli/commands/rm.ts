/** rlhf rm: a Bradley-Terry reward model from preference pairs. */
import { RewardTrainer } from '../../train/reward.js';
import type { CommandSpec, CommandHandler } from '../framework/index.js';
import { runScalarHeadCommand, scalarHeadFlags } from './scalar-head.js';

export const rmSpec: CommandSpec = {
  name: 'rm',
  summary: 'train a reward model on preference pairs (JSONL {prompt, chosen, rejected, margin?})',
  description:
    "Loads --model (usually the SFT model) with a scalar head and trains the Bradley-Terry loss with the squared-score regulariser; reports held-out pairwise accuracy. --length-balance applies ChatGLM-RLHF's bucket-based length balancing.",
  flags: scalarHeadFlags(
    {
      file: 'pairs.jsonl',
      data: 'preference pairs',
      held: 'held-out pairs',
      seqLen: 'longest prompt + response',
      batch: 'pairs per micro-batch',
      epochs: 'passes over the pairs',
    },
    {
      lengthBalance: { type: 'bool', describe: 'bucket-based length balancing of the training pairs' },
      scoreReg: { type: 'number', min: 0, default: 0.01, describe: 'λ of the squared-score regulariser' },
    },
  ),
  examples: [
    'rlhf rm --model runs/sft/model --data pairs.jsonl --output runs/rm --length-balance --epochs 2 --lr 1e-4',
    'rlhf rm --model runs/sft/model --data pairs.jsonl --output runs/rm-dp --nproc 2',
  ],
};

export const rmCommand: CommandHandler = (o, ctx) =>
  runScalarHeadCommand(
    'rm',
    o,
    ctx,
    (common) =>
      new RewardTrainer({
        ...common,
        lengthBalance: o.lengthBalance as boolean,
        scoreRegularization: o.scoreReg as number,
      }),
    ['loss', 'accuracy', 'lr'],
    (r) => `held-out accuracy ${r.eval ? (100 * r.eval.accuracy).toFixed(1) + '%' : 'n/a'}`,
  );
