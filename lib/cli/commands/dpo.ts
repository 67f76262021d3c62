/** rlhf dpo: the DPO family and EXO on preference pairs (or K-sample scored groups). */
import { PreferenceTrainer, PREFERENCE_LOSSES, type PreferenceLoss } from '../../train/preference.js';
import type { CommandSpec, CommandHandler } from '../framework/index.js';
import { isWriterRank, joinProcessGroup, launchUnderMpi, needsLaunch } from './launch.js';
import { applyThreads, defined, follow, loadModel, loopFlags, saveFinal, TRAIN_FLAGS, lrFlag } from './shared.js';

export const dpoSpec: CommandSpec = {
  name: 'dpo',
  summary:
    'preference optimisation on pairs: DPO, cDPO, IPO, SimPO, ORPO, KTO, EXO (and exo-rw / dpo-rw on scored groups)',
  flags: {
    policy: {
      type: 'checkpoint',
      required: true,
      placeholder: 'dir',
      describe: 'the policy to train (usually the SFT model); a frozen copy is the reference (none for simpo, orpo)',
    },
    data: {
      type: 'path',
      required: true,
      placeholder: 'pairs.jsonl',
      describe:
        'pairs {prompt, chosen, rejected} (or {prompt, responses, scores} for exo-rw / dpo-rw; for kto also unpaired {prompt, completion, label})',
    },
    evalData: { type: 'path', placeholder: 'pairs.jsonl', describe: 'held-out pairs' },
    loss: { type: 'enum', values: PREFERENCE_LOSSES, default: 'dpo', describe: 'the loss' },
    beta: { type: 'number', min: 0, default: 0.1, describe: 'β (EXO: β_π; ORPO: λ of the odds-ratio term)' },
    labelSmoothing: { type: 'number', min: 0, max: 0.5, describe: 'cDPO label smoothing (default 0.1 for cdpo)' },
    epsilon: { type: 'number', min: 0, max: 1, describe: 'EXO-pref ε (default 1e-3)' },
    desirableWeight: { type: 'number', min: 0, describe: "KTO: weight of the desirable examples' loss (default 1)" },
    undesirableWeight: {
      type: 'number',
      min: 0,
      describe: "KTO: weight of the undesirable examples' loss (default 1)",
    },
    ntpCoef: { type: 'number', min: 0, describe: 'NLL on the chosen response (regulariser; default 0, 1 for orpo)' },
    seqLen: { type: 'int', min: 2, default: 512, describe: 'longest prompt + response' },
    packTokens: {
      type: 'int',
      min: 2,
      describe: 'pack each micro-batch into rows of this many tokens (>= --seq-len; block-diagonal attention)',
    },
    batchSize: { type: 'int', min: 1, default: 8, describe: 'pairs per micro-batch' },
    epochs: { type: 'int', min: 1, default: 1, describe: 'passes over the pairs' },
    ...TRAIN_FLAGS,
    lr: lrFlag(1e-6, 'cosine'),
  },
  examples: [
    'rlhf dpo --policy runs/sft/model --data pairs.jsonl --output runs/dpo --loss dpo --beta 0.1 --lr 2e-5',
    'rlhf dpo --policy runs/sft/model --data pairs.jsonl --output runs/exo --loss exo',
    'rlhf dpo --policy runs/sft/model --data thumbs.jsonl --output runs/kto --loss kto --undesirableWeight 1.2',
    'rlhf dpo --policy runs/sft/model --data pairs.jsonl --output runs/dpo-dp --nproc 2',
  ],
};

export const dpoCommand: CommandHandler = async (o, ctx) => {
  if (needsLaunch(o)) return launchUnderMpi(o, ctx);
  const group = joinProcessGroup(o);
  applyThreads(o);
  const { model: policy, tokenizer } = await loadModel(o.policy as string, '--policy', undefined, true);
  const trainer = new PreferenceTrainer({
    policy,
    tokenizer,
    loss: o.loss as PreferenceLoss,
    beta: o.beta as number,
    train: o.data as string,
    ...defined({
      eval: o.evalData as string | undefined,
      labelSmoothing: o.labelSmoothing as number | undefined,
      epsilon: o.epsilon as number | undefined,
      desirableWeight: o.desirableWeight as number | undefined,
      undesirableWeight: o.undesirableWeight as number | undefined,
      ntpCoef: o.ntpCoef as number | undefined,
      packTokens: o.packTokens as number | undefined,
      lr: o.lr as number | undefined,
      saveEvery: o.saveEvery as number | undefined,
    }),
    ...loopFlags(o),
    ...defined({ group }),
  });
  if (!isWriterRank(group)) return saveFinal(policy, tokenizer, o, ctx, (await trainer.train()).stopped, group);
  const done = await follow(trainer, ctx, ['loss', 'margin', 'accuracy'], o, 'dpo');
  const r = await trainer.train();
  await done(
    `${o.loss}: ${r.steps} steps, loss ${r.trainLoss.toFixed(4)}, ${r.seconds.toFixed(0)} s${r.stopped ? ' (stopped; resume with --resume)' : ''}`,
  );
  return saveFinal(policy, tokenizer, o, ctx, r.stopped, group);
};
