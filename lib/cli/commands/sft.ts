/** rlhf sft: supervised fine-tuning on {prompt, completion} or {messages} JSONL. */
import { join } from 'node:path';
import { SFTTrainer } from '../../train/sft.js';
import { CliError, type CommandSpec, type CommandHandler } from '../framework/index.js';
import { isWriterRank, joinProcessGroup, launchUnderMpi, needsLaunch } from './launch.js';
import { applyThreads, defined, follow, initModel, loadModel, loopFlags, TRAIN_FLAGS, lrFlag } from './shared.js';

export const sftSpec: CommandSpec = {
  name: 'sft',
  summary: 'supervised fine-tuning on demonstrations (JSONL {prompt, completion} or {messages})',
  description:
    'Trains the next-token loss on the completion (or assistant) tokens only. Starts from --model (a Hugging Face checkpoint directory) or from scratch with --init and the built-in byte tokenizer.',
  flags: {
    data: { type: 'path', required: true, placeholder: 'file.jsonl', describe: 'training data' },
    evalData: { type: 'path', placeholder: 'file.jsonl', describe: 'held-out data for the eval loss' },
    model: { type: 'checkpoint', placeholder: 'dir', describe: 'start from this checkpoint' },
    init: {
      type: 'enum',
      values: ['tiny', 'small'],
      describe: 'or start from scratch: tiny (~0.8M params) or small (~5M)',
    },
    seqLen: { type: 'int', min: 2, default: 512, describe: 'longest sequence; longer examples are truncated' },
    batchSize: { type: 'int', min: 1, default: 8, describe: 'rows per micro-batch' },
    gradAccum: { type: 'int', min: 1, default: 1, describe: 'micro-batches per optimizer step' },
    epochs: { type: 'int', min: 1, default: 1, describe: 'passes over the data' },
    maxSteps: { type: 'int', min: 1, describe: 'stop after this many optimizer steps' },
    warmupSteps: { type: 'int', min: 0, default: 0, describe: 'linear warmup steps (then cosine decay)' },
    weightDecay: { type: 'number', min: 0, default: 0, describe: 'decoupled weight decay' },
    maxGradNorm: { type: 'number', min: 0, default: 1, describe: 'clip the global gradient norm (0: off)' },
    packing: { type: 'bool', describe: 'pack examples into full rows instead of padding' },
    evalEvery: { type: 'int', min: 1, describe: 'evaluate every N steps (default: at the end)' },
    ...TRAIN_FLAGS,
    lr: lrFlag(0.0001, 'cosine'),
  },
  examples: [
    'rlhf sft --init tiny --data demos.jsonl --output runs/sft --epochs 3 --lr 3e-3',
    'rlhf sft --model runs/sft/model --data more.jsonl --output runs/sft2 --packing --resume',
    'rlhf sft --init tiny --data demos.jsonl --output runs/sft-dp --nproc 2',
    'rlhf sft --init small --data demos.jsonl --output runs/sft-tp --nproc 4 --tp 2',
  ],
};

export const sftCommand: CommandHandler = async (o, ctx) => {
  if (needsLaunch(o)) return launchUnderMpi(o, ctx);
  const group = joinProcessGroup(o);
  applyThreads(o);
  if (!o.model === !o.init) throw new CliError('give exactly one of --model <dir> or --init <preset>');
  const { model, tokenizer } = o.model
    ? await loadModel(o.model as string, '--model', undefined, true)
    : await initModel(o.init as string, o.seed as number);
  const trainer = new SFTTrainer({
    model,
    tokenizer,
    train: o.data as string,
    ...defined({
      eval: o.evalData as string | undefined,
      maxSteps: o.maxSteps as number | undefined,
      evalEvery: o.evalEvery as number | undefined,
      saveEvery: o.saveEvery as number | undefined,
      lr: o.lr as number | undefined,
    }),
    ...loopFlags(o),
    gradAccum: o.gradAccum as number,
    warmupSteps: o.warmupSteps as number,
    weightDecay: o.weightDecay as number,
    maxGradNorm: o.maxGradNorm as number,
    packing: o.packing as boolean,
    ...defined({ group }),
  });
  if (!isWriterRank(group)) return (await trainer.train()).stopped ? 130 : 0;
  const done = await follow(trainer, ctx, ['loss', 'lr', 'tokensPerSecond'], o, 'sft');
  const r = await trainer.train();
  await done(
    `sft: ${r.steps} steps, loss ${r.trainLoss.toFixed(4)}${r.evalLoss !== undefined ? `, eval loss ${r.evalLoss.toFixed(4)}` : ''}, ${r.seconds.toFixed(0)} s${r.stopped ? ' (stopped; resume with --resume)' : ''}`,
  );
  if (!r.stopped) ctx.stdout.write(`model: ${join(o.output as string, 'model')}\n`);
  return r.stopped ? 130 : 0;
};
