/**
 * Process reward model training (docs/algorithms.md §4 PRM): a backbone with a scalar head learns one score
 * per reasoning step, read at the step's separator token, against step labels in [0, 1].
 *
 *   data     {prompt, steps, labels} (JSONL or records, lib/data/steps.ts); each response encoded
 *            step by step (encodeSteps) and cut at seqLen (the steps past it dropped, counted in a
 *            'log' event; a record with no step left is dropped); eval: options.eval or a seeded
 *            evalSplit of train
 *   step     gradAccum micro-batches of batchSize records in one forward each; L = processRewardLoss
 *            (BCE of σ(score) against the label), a mean over every step of the step's records
 *   eval     step accuracy (σ(score) > 0.5 agrees with label >= 0.5), loss, and response accuracy:
 *            the min-aggregated response (all steps good?) classified right
 *   output   checkpoints (stage 'prm', part 'model'), metrics.jsonl, outputDir/model at the end;
 *            resume is bit-exact (only the micro-batch counter is data state)
 */
import { AdamW } from '../engine/adamw.js';
import type { Model } from '../engine/model.js';
import { RlhfError, ErrorCode } from '../errors.js';
import { encodeSteps, loadStepData, type StepRecord } from '../data/index.js';
import { processRewardLoss, sigmoid } from '../losses/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { options } from '../validate.js';
import { TrainerEmitter } from './events.js';
import { EpochBatches, type LoopOptions } from './preference-common.js';
import type { ProcessGroup } from '../distributed/index.js';
import { localShare, reduceStep, runStepLoop, stepCadence } from './loop.js';
import { TrainingRun, allFinite } from './run.js';
import {
  SCALAR_HEAD_KEYS,
  checkScalarHeadOptions,
  type ScalarHeadTrainerOptions,
  evaluationSet,
  readScalarHeadTraining,
  scalarScores,
  splitHeldOut,
} from './scalar-head.js';
import { loopSchedule } from './schedule.js';

/** Options of {@link ProcessRewardTrainer}: train / eval are JSONL paths or records {prompt, steps, labels}; batchSize = records per micro-batch. */
export interface ProcessRewardTrainerOptions extends ScalarHeadTrainerOptions<StepRecord> {
  /** appended to every step before encoding; the step's score is read at its last token (default "\n") */
  separator?: string;
}

const KEYS = [...SCALAR_HEAD_KEYS, 'separator'] as const;

export interface ProcessRewardEvalResult {
  /** σ(score) > 0.5 agrees with label >= 0.5, over all steps */
  stepAccuracy: number;
  /** mean BCE over all steps */
  loss: number;
  /** min over a response's σ(step score) > 0.5 agrees with "every label >= 0.5" */
  responseAccuracy: number;
  steps: number;
  responses: number;
}

export interface ProcessRewardTrainResult {
  steps: number;
  trainLoss: number;
  trainStepAccuracy: number;
  eval?: ProcessRewardEvalResult;
  skippedSteps: number;
  seconds: number;
  stopped?: boolean;
}

interface Row {
  promptIds: Int32Array;
  responseIds: Int32Array;
  stepEnds: number[];
  labels: number[];
}

/** Trains a scalar-head model to score each reasoning step of a response. */
export class ProcessRewardTrainer extends TrainerEmitter {
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  readonly optimizer: AdamW;
  /** data-parallel ranks (options.group): each takes its share of every micro-batch's records */
  readonly group: ProcessGroup;
  readonly separator: string;
  #o: LoopOptions & { evalSplit?: number };
  #allReduce: { overlapAllReduce: boolean; bucketBytes: number };
  #opts: ProcessRewardTrainerOptions;
  #data?: Promise<{ train: Row[]; eval?: Row[] }>;
  #stopRequested = false;

  constructor(opts: ProcessRewardTrainerOptions) {
    super();
    const fn = 'ProcessRewardTrainer';
    const o = options(fn, 'options', opts);
    o.known(KEYS);
    checkScalarHeadOptions(fn, opts);
    this.model = opts.model;
    this.tokenizer = opts.tokenizer;
    this.separator = o.string('separator', '\n');
    if (this.separator === '') throw new TypeError(`${fn}: expected options.separator to be a non-empty string`);
    this.#opts = opts;
    const t = readScalarHeadTraining(fn, o, opts);
    this.#o = { ...t.loop, evalSplit: t.evalSplit };
    this.group = t.group;
    this.optimizer = t.optimizer;
    this.#allReduce = t.allReduce;
  }

  /** Ends train() after the current step, writing a checkpoint first. */
  requestStop(): void {
    this.#stopRequested = true;
  }

  #encode(records: StepRecord[], name: string): Row[] {
    let droppedSteps = 0,
      droppedRecords = 0;
    const rows: Row[] = [];
    for (const r of records) {
      const e = encodeSteps(this.tokenizer, r.prompt, r.steps, this.separator, this.#o.seqLen);
      droppedSteps += e.droppedSteps;
      if (!e.stepEnds.length) {
        droppedRecords++;
        continue;
      }
      rows.push({
        promptIds: e.promptIds,
        responseIds: e.responseIds,
        stepEnds: e.stepEnds,
        labels: r.labels.slice(0, e.stepEnds.length),
      });
    }
    if (droppedSteps)
      this.emit('log', {
        stage: 'prm',
        message: `${name}: ${droppedSteps} steps past seqLen ${this.#o.seqLen} dropped (${droppedRecords} records left with none)`,
      });
    if (!rows.length)
      throw new RlhfError(
        ErrorCode.FORMAT,
        `ProcessRewardTrainer: no ${name} record has a step within seqLen ${this.#o.seqLen}`,
      );
    return rows;
  }

  #prepare(): Promise<{ train: Row[]; eval?: Row[] }> {
    this.#data ??= (async () => {
      const fn = 'ProcessRewardTrainer';
      const { train: records, eval: evalRecords } = splitHeldOut(
        fn,
        await loadStepData(fn, 'train', this.#opts.train),
        this.#opts.eval !== undefined ? await loadStepData(fn, 'eval', this.#opts.eval) : undefined,
        this.#o.evalSplit,
        this.#o.seed,
        'records',
      );
      return { train: this.#encode(records, 'train'), eval: evalRecords && this.#encode(evalRecords, 'eval') };
    })();
    return this.#data;
  }

  /** Step scores of the rows, flattened row by row; `at` their batch indices. */
  #scores(rows: Row[], save: boolean): Promise<{ scores: Float64Array; at: Int32Array; size: number }> {
    return scalarScores(
      this.model,
      this.tokenizer.padId,
      rows,
      (sb, b) => rows[b].stepEnds.map((e) => b * sb.seqLen + e),
      save,
    );
  }

  /** Step and response accuracy and the BCE on the eval set (or, with 'train', the training records). */
  async evaluate(split: 'eval' | 'train' = 'eval'): Promise<ProcessRewardEvalResult> {
    return this.#evaluate(evaluationSet('ProcessRewardTrainer.evaluate', await this.#prepare(), split));
  }

  /** Data-parallel: each rank scores its share of every batch and the sums are added over ranks (a collective). */
  async #evaluate(set: Row[]): Promise<ProcessRewardEvalResult> {
    let loss = 0,
      correct = 0,
      steps = 0,
      responsesRight = 0;
    for (let i = 0; i < set.length; i += this.#o.batchSize) {
      const rows = localShare(this.group, set.slice(i, i + this.#o.batchSize));
      if (!rows.length) continue;
      const { scores } = await this.#scores(rows, false);
      const labels = rows.flatMap((r) => r.labels);
      const l = processRewardLoss({ stepScores: scores, stepLabels: labels });
      loss += l.loss * l.steps;
      correct += l.accuracy * l.steps;
      steps += l.steps;
      let k = 0;
      for (const r of rows) {
        let minP = Infinity;
        for (let j = 0; j < r.stepEnds.length; j++) minP = Math.min(minP, sigmoid(scores[k + j]));
        k += r.stepEnds.length;
        if (minP > 0.5 === r.labels.every((x) => x >= 0.5)) responsesRight++;
      }
    }
    ({ loss, correct, steps, responsesRight } = await reduceStep(this.group, undefined, {
      loss,
      correct,
      steps,
      responsesRight,
    }));
    return {
      stepAccuracy: correct / steps,
      loss: loss / steps,
      responseAccuracy: responsesRight / set.length,
      steps,
      responses: set.length,
    };
  }

  async train(): Promise<ProcessRewardTrainResult> {
    const o = this.#o;
    const t0 = performance.now();
    const data = await this.#prepare();
    const batches = new EpochBatches(data.train, o.batchSize, o.seed);
    const { totalSteps, schedule } = loopSchedule(o, batches.perEpoch);
    const { group: _group, ...identity } = this.#opts;
    const run = new TrainingRun(
      'prm',
      this,
      totalSteps,
      { ...o, group: this.group },
      { config: { ...identity, ...o }, dataKeys: ['train', 'eval'] },
    );
    // reasoning steps (labels) in the current step's global micro-batches
    let S = 0,
      evalResult: ProcessRewardEvalResult | undefined;
    const r = await runStepLoop({
      run,
      group: this.group,
      model: this.model,
      optimizer: this.optimizer,
      tokenizer: this.tokenizer,
      ...stepCadence(o, !!data.eval),
      ...this.#allReduce,
      totalSteps,
      perEpoch: batches.perEpoch,
      schedule,
      accumulate: async (micro, backward) => {
        const micros = Array.from({ length: o.gradAccum }, (_, i) => batches.at(micro + i));
        S = micros.reduce((s, rows) => s + rows.reduce((a, r) => a + r.stepEnds.length, 0), 0);
        const sum = { loss: 0, correct: 0 };
        for (const [m, global] of micros.entries()) {
          const rows = localShare(this.group, global);
          if (!rows.length) continue;
          const { scores, at, size } = await this.#scores(rows, true);
          if (!allFinite(...scores)) {
            this.model.releaseActivations(); // no backward; the NaN loss skips the update
            sum.loss = NaN;
            continue;
          }
          const l = processRewardLoss({ stepScores: scores, stepLabels: rows.flatMap((r) => r.labels) });
          // l is a mean over these rows' steps; weighting by their share makes the step a mean over all S steps
          const w = l.steps / S;
          const dValues = new Float32Array(size);
          for (let j = 0; j < at.length; j++) dValues[at[j]] = l.dStepScores[j] * w;
          sum.loss += l.loss * w;
          sum.correct += l.accuracy * l.steps;
          await backward({ dValues }, m === micros.length - 1);
        }
        return sum;
      },
      lossOf: (s) => s.loss,
      metrics: (s, u) => ({
        loss: s.loss,
        stepAccuracy: s.correct / S,
        lr: u.lr,
        gradNorm: u.gradNorm,
        stepsPerSecond: S / u.seconds,
      }),
      evaluate:
        data.eval &&
        (async () => {
          const e = (evalResult = await this.#evaluate(data.eval!));
          return {
            evalStepAccuracy: e.stepAccuracy,
            evalLoss: e.loss,
            evalResponseAccuracy: e.responseAccuracy,
          };
        }),
      stopRequested: () => this.#stopRequested,
    });
    return {
      steps: r.steps,
      trainLoss: r.last?.loss ?? NaN,
      trainStepAccuracy: r.last?.stepAccuracy ?? NaN,
      eval: evalResult,
      skippedSteps: run.skippedSteps,
      seconds: (performance.now() - t0) / 1000,
      ...(r.stopped ? { stopped: true } : {}),
    };
  }
}
