/**
 * What the scalar-head training commands (rlhf rm, rlhf prm) share: their data, held-out data and
 * backbone flags, and the command itself (load the backbone with a scalar head, train on the data
 * with the training-loop flags, follow progress, print a summary, save the model).
 */
import type { Model } from '../../engine/model.js';
import type { TrainerEmitter } from '../../train/events.js';
import type { Tokenizer } from '../../tokenizer/index.js';
import type { ProcessGroup } from '../../distributed/index.js';
import type { CommandContext, CommandSpec } from '../framework/index.js';
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

/** How a scalar-head command names its data (in flag help). */
export interface ScalarHeadData {
  /** placeholder of a data file, e.g. 'pairs.jsonl' */
  file: string;
  /** what --data holds */
  data: string;
  /** what --eval-data holds */
  held: string;
  /** what --seq-len bounds */
  seqLen: string;
  /** what a --batch-size micro-batch holds */
  batch: string;
  /** what --epochs passes over */
  epochs: string;
}

/** The command's flags: the data, held-out and backbone flags, then `own`, then the loop's. */
export function scalarHeadFlags(d: ScalarHeadData, own: CommandSpec['flags']): CommandSpec['flags'] {
  return {
    data: { type: 'path', required: true, placeholder: d.file, describe: d.data },
    evalData: { type: 'path', placeholder: d.file, describe: `${d.held} (default: --eval-split of the data)` },
    evalSplit: { type: 'number', min: 0, max: 0.9, default: 0.1, describe: 'fraction held out when no --eval-data' },
    model: {
      type: 'checkpoint',
      required: true,
      placeholder: 'dir',
      describe: 'backbone checkpoint (a causal LM gets a new scalar head)',
    },
    ...own,
    seqLen: { type: 'int', min: 2, default: 512, describe: d.seqLen },
    batchSize: { type: 'int', min: 1, default: 8, describe: d.batch },
    epochs: { type: 'int', min: 1, default: 1, describe: d.epochs },
    ...TRAIN_FLAGS,
    lr: lrFlag(1e-5, 'cosine'),
  };
}

/** The options every scalar-head trainer takes from the command's flags. */
export interface ScalarHeadOptions extends ReturnType<typeof loopFlags> {
  model: Model;
  tokenizer: Tokenizer;
  train: string;
  eval?: string;
  evalSplit?: number;
  saveEvery?: number;
  lr?: number;
  group?: ProcessGroup;
}

/**
 * Runs a scalar-head command: `make` builds the trainer from the common options (plus its own);
 * `shown` are the metrics the progress line follows; `summary` is the line printed at the end.
 * Returns the exit code (130 when stopped).
 */
export async function runScalarHeadCommand<R extends { steps: number; seconds: number; stopped?: boolean }>(
  name: string,
  o: Record<string, unknown>,
  ctx: CommandContext,
  make: (common: ScalarHeadOptions) => TrainerEmitter & { requestStop(): void; train(): Promise<R> },
  shown: string[],
  summary: (r: R) => string,
): Promise<number> {
  if (needsLaunch(o)) return launchUnderMpi(o, ctx);
  const group = joinProcessGroup(o);
  applyThreads(o);
  const { model, tokenizer } = await loadScalarHeadModel(o.model as string, '--model', true);
  const trainer = make({
    model,
    tokenizer,
    train: o.data as string,
    ...(o.evalData ? { eval: o.evalData as string } : { evalSplit: o.evalSplit as number }),
    ...defined({ saveEvery: o.saveEvery as number | undefined, lr: o.lr as number | undefined }),
    ...loopFlags(o),
    ...defined({ group }),
  });
  if (!isWriterRank(group)) return saveFinal(model, tokenizer, o, ctx, (await trainer.train()).stopped, group);
  const done = await follow(trainer, ctx, shown, o, name);
  const r = await trainer.train();
  await done(
    `${name}: ${r.steps} steps, ${summary(r)}, ${r.seconds.toFixed(0)} s${r.stopped ? ' (stopped; resume with --resume)' : ''}`,
  );
  return saveFinal(model, tokenizer, o, ctx, r.stopped, group);
}
