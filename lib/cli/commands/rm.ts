/** rlhf rm: a Bradley-Terry reward model from preference pairs. */
import { RewardTrainer } from '../../train/reward.js';
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
  lrFlag,
} from './shared.js';

export const rmSpec: CommandSpec = {
  name: 'rm',
  summary: 'train a reward model on preference pairs (JSONL {prompt, chosen, rejected, margin?})',
  description:
    "Loads --model (usually the SFT model) with a scalar head and trains the Bradley-Terry loss with the squared-score regulariser; reports held-out pairwise accuracy. --length-balance applies ChatGLM-RLHF's bucket-based length balancing.",
  flags: {
    data: { type: 'path', required: true, placeholder: 'pairs.jsonl', describe: 'preference pairs' },
    evalData: {
      type: 'path',
      placeholder: 'pairs.jsonl',
      describe: 'held-out pairs (default: --eval-split of the data)',
    },
    evalSplit: { type: 'number', min: 0, max: 0.9, default: 0.1, describe: 'fraction held out when no --eval-data' },
    model: {
      type: 'checkpoint',
      required: true,
      placeholder: 'dir',
      describe: 'backbone checkpoint (a causal LM gets a new scalar head)',
    },
    lengthBalance: { type: 'bool', describe: 'bucket-based length balancing of the training pairs' },
    scoreReg: { type: 'number', min: 0, default: 0.01, describe: 'λ of the squared-score regulariser' },
    seqLen: { type: 'int', min: 2, default: 512, describe: 'longest prompt + response' },
    batchSize: { type: 'int', min: 1, default: 8, describe: 'pairs per micro-batch' },
    epochs: { type: 'int', min: 1, default: 1, describe: 'passes over the pairs' },
    ...TRAIN_FLAGS,
    lr: lrFlag(1e-5, 'cosine'),
  },
  examples: [
    'rlhf rm --model runs/sft/model --data pairs.jsonl --output runs/rm --length-balance --epochs 2 --lr 1e-4',
    'rlhf rm --model runs/sft/model --data pairs.jsonl --output runs/rm-dp --nproc 2',
  ],
};

export const rmCommand: CommandHandler = async (o, ctx) => {
  if (needsLaunch(o)) return launchUnderMpi(o, ctx);
  const group = joinProcessGroup(o);
  applyThreads(o);
  const { model, tokenizer } = await loadScalarHeadModel(o.model as string, '--model', true);
  const trainer = new RewardTrainer({
    model,
    tokenizer,
    train: o.data as string,
    ...(o.evalData ? { eval: o.evalData as string } : { evalSplit: o.evalSplit as number }),
    ...defined({ saveEvery: o.saveEvery as number | undefined, lr: o.lr as number | undefined }),
    lengthBalance: o.lengthBalance as boolean,
    scoreRegularization: o.scoreReg as number,
    ...loopFlags(o),
    ...defined({ group }),
  });
  if (!isWriterRank(group)) return saveFinal(model, tokenizer, o, ctx, (await trainer.train()).stopped, group);
  const done = await follow(trainer, ctx, ['loss', 'accuracy', 'lr'], o, 'rm');
  const r = await trainer.train();
  await done(
    `rm: ${r.steps} steps, held-out accuracy ${r.eval ? (100 * r.eval.accuracy).toFixed(1) + '%' : 'n/a'}, ${r.seconds.toFixed(0)} s${r.stopped ? ' (stopped; resume with --resume)' : ''}`,
  );
  return saveFinal(model, tokenizer, o, ctx, r.stopped, group);
};
