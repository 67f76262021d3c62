/**
 * Reward-model training (docs/algorithms.md §1.1, 2.2; properties 16–17): a backbone with a scalar head (a
 * `*ForSequenceClassification` Model, e.g. `Model.load(sftDir, {architecture:
 * 'LlamaForSequenceClassification'})`) learns r(x, y) from preference pairs.
 *
 *   data     {prompt, chosen, rejected, margin?} (JSONL or records); each response gets eos and the
 *            row is truncated to seqLen; eval: options.eval, or a seeded evalSplit of train
 *   balance  lengthBalance: balanceByLength on the pairs' response token lengths (before
 *            truncation), report emitted as a 'log' event and returned
 *   step     gradAccum micro-batches of batchSize pairs; chosen and rejected rows (and the
 *            micro-batch's correctness rows) in ONE forward; r = the value at each row's last
 *            token; L = BT(r_w, r_l, margin) + λ_reg·mean(r_w² + r_l²), averaged over the step's
 *            pairs, + correctnessWeight · BCE(σ(r), label) averaged over the step's correctness rows
 *   output   checkpoints (stage 'reward', part 'model'), metrics.jsonl, outputDir/model at the end;
 *            resume is bit-exact (only the micro-batch counter is data state)
 */
import { AdamW } from '../engine/adamw.js';
import type { Model } from '../engine/model.js';
import { RlhfError, ErrorCode } from '../errors.js';
import { balanceByLength, formatBalanceReport, type BalanceReport, type PreferenceRecord } from '../data/index.js';
import { bradleyTerryLoss, correctnessLoss } from '../losses/index.js';
import { lastTokenIndex, type Sequence } from '../rollout/sequences.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { options } from '../validate.js';
import { TrainerEmitter } from './events.js';
import { EpochBatches, encodeRow, loadPairData, type LoopOptions } from './preference-common.js';
import { loadCorrectnessData, type CorrectnessRecord } from './reward-data.js';
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

export type { CorrectnessRecord } from './reward-data.js';

/** Options of {@link RewardTrainer}: train / eval are JSONL paths or records {prompt, chosen, rejected, margin?}; batchSize = pairs per micro-batch. */
export interface RewardTrainerOptions extends ScalarHeadTrainerOptions<PreferenceRecord> {
  /** use each record's margin in the BT loss (default true; records without one use 0) */
  margin?: boolean;
  /** λ_reg of the squared-score penalty (default 0.01, docs/algorithms.md §2.2) */
  scoreRegularization?: number;
  /** bucket-based length balancing of the training pairs (default false) */
  lengthBalance?: boolean;
  /** bucket edges on |len(chosen) − len(rejected)| in tokens (default DEFAULT_BALANCE_EDGES) */
  balanceEdges?: number[];
  /** correctness-labelled records {prompt, response, label} mixed into every micro-batch (multi-task RM) */
  correctness?: string | CorrectnessRecord[];
  /** weight of the correctness BCE in the step loss (default 1) */
  correctnessWeight?: number;
  /** correctness rows per micro-batch (default batchSize) */
  correctnessBatchSize?: number;
}

const KEYS = [
  ...SCALAR_HEAD_KEYS,
  'margin',
  'scoreRegularization',
  'lengthBalance',
  'balanceEdges',
  'correctness',
  'correctnessWeight',
  'correctnessBatchSize',
] as const;

/** Held-out metrics: pairwise accuracy (r_w > r_l), BT loss (margins as in training, no penalty), mean score. */
export interface RewardEvalResult {
  accuracy: number;
  loss: number;
  meanScore: number;
  meanMargin: number;
  pairs: number;
}

export interface RewardTrainResult {
  steps: number;
  /** the last step's loss (total, including the penalty and the correctness term) */
  trainLoss: number;
  trainAccuracy: number;
  eval?: RewardEvalResult;
  /** with lengthBalance: what balancing kept, per bucket */
  balance?: BalanceReport;
  skippedSteps: number;
  seconds: number;
  stopped?: boolean;
}

interface Pair {
  chosen: Sequence;
  rejected: Sequence;
  margin: number;
}
interface Labelled {
  seq: Sequence;
  label: number;
}
interface Data {
  train: Pair[];
  eval?: Pair[];
  correctness?: Labelled[];
  balance?: BalanceReport;
}

/** Trains a scalar-head reward model on preference pairs with the Bradley-Terry loss. */
export class RewardTrainer extends TrainerEmitter {
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  readonly optimizer: AdamW;
  /** data-parallel ranks (options.group): each takes its share of every micro-batch's pairs */
  readonly group: ProcessGroup;
  #o: LoopOptions & {
    useMargin: boolean;
    lambda: number;
    lengthBalance: boolean;
    edges?: number[];
    evalSplit?: number;
    cWeight: number;
    cBatch: number;
  };
  #allReduce: { overlapAllReduce: boolean; bucketBytes: number };
  #opts: RewardTrainerOptions;
  #data?: Promise<Data>;
  #stopRequested = false;

  constructor(opts: RewardTrainerOptions) {
    super();
    const fn = 'RewardTrainer';
    const o = options(fn, 'options', opts);
    o.known(KEYS);
    checkScalarHeadOptions(fn, opts);
    this.model = opts.model;
    this.tokenizer = opts.tokenizer;
    this.#opts = opts;
    const t = readScalarHeadTraining(fn, o, opts);
    const loop = t.loop;
    this.#o = {
      ...loop,
      useMargin: o.bool('margin', true),
      lambda: o.number('scoreRegularization', { min: 0 }, 0.01),
      lengthBalance: o.bool('lengthBalance', false),
      edges: opts.balanceEdges,
      evalSplit: t.evalSplit,
      cWeight: o.number('correctnessWeight', { min: 0 }, 1),
      cBatch: o.int('correctnessBatchSize', { min: 1 }, loop.batchSize),
    };
    this.group = t.group;
    this.optimizer = t.optimizer;
    this.#allReduce = t.allReduce;
    if (opts.balanceEdges !== undefined) {
      if (!this.#o.lengthBalance) throw new TypeError(`${fn}: options.balanceEdges needs options.lengthBalance: true`);
      balanceByLength([], { edges: opts.balanceEdges }); // validates the edges now rather than at train()
    }
  }

  /** Ends train() after the current step, writing a checkpoint first. */
  requestStop(): void {
    this.#stopRequested = true;
  }

  #log(message: string): void {
    this.emit('log', { stage: 'reward', message });
  }

  /** Tokenized pairs; `truncated`: how many had a row cut to seqLen (#prepare reports it once for train and eval). */
  #encode(records: PreferenceRecord[]): {
    pairs: Pair[];
    lengths: Array<{ chosen: number; rejected: number }>;
    truncated: number;
  } {
    let truncated = 0;
    const lengths: Array<{ chosen: number; rejected: number }> = [];
    const pairs = records.map((r) => {
      const c = encodeRow(this.tokenizer, r.prompt, r.chosen, this.#o.seqLen),
        l = encodeRow(this.tokenizer, r.prompt, r.rejected, this.#o.seqLen);
      if (c.truncated || l.truncated) truncated++;
      lengths.push({ chosen: c.fullResponseLength, rejected: l.fullResponseLength });
      return { chosen: c.seq, rejected: l.seq, margin: this.#o.useMargin ? (r.margin ?? 0) : 0 };
    });
    return { pairs, lengths, truncated };
  }

  /** Loads, splits, balances and tokenizes the data once (deterministic: resumed runs see the same). */
  #prepare(): Promise<Data> {
    this.#data ??= (async () => {
      const fn = 'RewardTrainer';
      const o = this.#o;
      const { train: records, eval: evalRecords } = splitHeldOut(
        fn,
        (await loadPairData(fn, 'train', this.#opts.train, 'pairs')) as PreferenceRecord[],
        this.#opts.eval !== undefined
          ? ((await loadPairData(fn, 'eval', this.#opts.eval, 'pairs')) as PreferenceRecord[])
          : undefined,
        o.evalSplit,
        o.seed,
        'pairs',
      );
      const encoded = this.#encode(records);
      const { lengths, truncated } = encoded;
      let pairs = encoded.pairs;
      const held = evalRecords && this.#encode(evalRecords);
      if (truncated || held?.truncated)
        this.#log(
          `${truncated} of ${records.length} training pairs${held ? ` and ${held.truncated} of ${evalRecords!.length} held-out pairs` : ''} truncated to ${o.seqLen} tokens`,
        );
      let balance: BalanceReport | undefined;
      if (o.lengthBalance) {
        const b = balanceByLength(lengths, { edges: o.edges, seed: o.seed });
        balance = b.report;
        pairs = b.kept.map((i) => pairs[i]);
        this.#log(`length balancing (token lengths of chosen vs rejected):\n${formatBalanceReport(b.report)}`);
        if (!pairs.length) throw new RlhfError(ErrorCode.FORMAT, `${fn}: length balancing kept no pair`);
      }
      const correctness =
        this.#opts.correctness !== undefined
          ? (await loadCorrectnessData(fn, this.#opts.correctness)).map((r) => ({
              seq: encodeRow(this.tokenizer, r.prompt, r.response, o.seqLen).seq,
              label: r.label,
            }))
          : undefined;
      return { train: pairs, eval: held?.pairs, correctness, balance };
    })();
    return this.#data;
  }

  /** Scores the rows (value at each row's last token); `save` keeps activations for backward. */
  async #scores(rows: Sequence[], save: boolean): Promise<{ scores: Float64Array; at: Int32Array; size: number }> {
    return scalarScores(this.model, this.tokenizer.padId, rows, (sb, b) => [lastTokenIndex(sb, b)], save);
  }

  /**
   * Pairwise accuracy, BT loss and mean score, no gradients: on the eval set (options.eval or the
   * evalSplit hold-out), or with `'train'` on the (balanced) training pairs — the mean score of
   * property 17.
   */
  async evaluate(split: 'eval' | 'train' = 'eval'): Promise<RewardEvalResult> {
    return this.#evaluate(evaluationSet('RewardTrainer.evaluate', await this.#prepare(), split));
  }

  /** Data-parallel: each rank scores its share of every batch and the sums are added over ranks (a collective). */
  async #evaluate(set: Pair[]): Promise<RewardEvalResult> {
    let loss = 0,
      correct = 0,
      scoreSum = 0,
      marginSum = 0,
      bad = 0;
    for (let i = 0; i < set.length && !bad; i += this.#o.batchSize) {
      const b = localShare(this.group, set.slice(i, i + this.#o.batchSize)),
        n = b.length;
      if (!n) continue;
      const { scores } = await this.#scores([...b.map((p) => p.chosen), ...b.map((p) => p.rejected)], false);
      if (!allFinite(...scores)) {
        bad = 1;
        break;
      }
      const bt = bradleyTerryLoss({
        chosen: scores.subarray(0, n),
        rejected: scores.subarray(n),
        margin: b.map((p) => p.margin),
      });
      loss += bt.loss * n;
      correct += bt.accuracy * n;
      marginSum += bt.meanMargin * n;
      for (const s of scores) scoreSum += s;
    }
    ({ loss, correct, scoreSum, marginSum, bad } = await reduceStep(this.group, undefined, {
      loss,
      correct,
      scoreSum,
      marginSum,
      bad,
    }));
    const n = set.length;
    if (bad) return { accuracy: NaN, loss: NaN, meanScore: NaN, meanMargin: NaN, pairs: n };
    return {
      accuracy: correct / n,
      loss: loss / n,
      meanScore: scoreSum / (2 * n),
      meanMargin: marginSum / n,
      pairs: n,
    };
  }

  async train(): Promise<RewardTrainResult> {
    const o = this.#o;
    const t0 = performance.now();
    const data = await this.#prepare();
    const pairs = new EpochBatches(data.train, o.batchSize, o.seed);
    const labelled = data.correctness && new EpochBatches(data.correctness, o.cBatch, o.seed, 1);
    const { totalSteps, schedule } = loopSchedule(o, pairs.perEpoch);
    const { group: _group, ...identity } = this.#opts;
    const run = new TrainingRun(
      'reward',
      this,
      totalSteps,
      { ...o, group: this.group },
      { config: { ...identity, ...o }, dataKeys: ['train', 'eval', 'correctness'] },
    );
    // pairs (N) and correctness rows (C) of the current step's global micro-batches
    let N = 0,
      C = 0,
      evalResult: RewardEvalResult | undefined;
    const r = await runStepLoop({
      run,
      group: this.group,
      model: this.model,
      optimizer: this.optimizer,
      tokenizer: this.tokenizer,
      ...stepCadence(o, !!data.eval),
      ...this.#allReduce,
      totalSteps,
      perEpoch: pairs.perEpoch,
      schedule,
      accumulate: async (micro, backward) => {
        const batches = Array.from({ length: o.gradAccum }, (_, i) => pairs.at(micro + i));
        const cBatches = Array.from({ length: labelled ? o.gradAccum : 0 }, (_, i) => labelled!.at(micro + i));
        N = batches.reduce((s, b) => s + b.length, 0);
        C = cBatches.reduce((s, b) => s + b.length, 0);
        const sum = { loss: 0, correct: 0, marginSum: 0, scoreSum: 0, cLoss: 0, cCorrect: 0 };
        for (let m = 0; m < batches.length; m++) {
          // this rank's share of the micro-batch's pairs and of its correctness rows
          const b = localShare(this.group, batches[m]),
            n = b.length,
            cb = localShare(this.group, cBatches[m] ?? []);
          if (!n && !cb.length) continue;
          const { scores, at, size } = await this.#scores(
            [...b.map((p) => p.chosen), ...b.map((p) => p.rejected), ...cb.map((c) => c.seq)],
            true,
          );
          if (!allFinite(...scores)) {
            // a non-finite score: no backward, and the NaN loss makes the step skip its update
            this.model.releaseActivations();
            sum.loss = NaN;
            continue;
          }
          const dValues = new Float32Array(size);
          if (n) {
            const bt = bradleyTerryLoss({
              chosen: scores.subarray(0, n),
              rejected: scores.subarray(n, 2 * n),
              margin: b.map((p) => p.margin),
              scoreRegularization: o.lambda,
            });
            // bt is a mean over these n pairs; weighting by n / N makes the step a mean over its N pairs
            for (let j = 0; j < n; j++) {
              dValues[at[j]] = (bt.dChosen[j] * n) / N;
              dValues[at[n + j]] = (bt.dRejected[j] * n) / N;
              sum.scoreSum += scores[j] + scores[n + j];
            }
            sum.loss += (bt.loss * n) / N;
            sum.correct += bt.accuracy * n;
            sum.marginSum += bt.meanMargin * n;
          }
          if (cb.length) {
            const cl = correctnessLoss({ scores: scores.subarray(2 * n), labels: cb.map((c) => c.label) });
            const w = (o.cWeight * cb.length) / C;
            for (let j = 0; j < cb.length; j++) dValues[at[2 * n + j]] = cl.dScores[j] * w;
            sum.loss += cl.loss * w;
            sum.cLoss += (cl.loss * cb.length) / C;
            sum.cCorrect += cl.accuracy * cb.length;
          }
          await backward({ dValues }, m === batches.length - 1);
        }
        return sum;
      },
      lossOf: (s) => s.loss,
      metrics: (s, u) => ({
        loss: s.loss,
        accuracy: s.correct / N,
        meanMargin: s.marginSum / N,
        meanScore: s.scoreSum / (2 * N),
        lr: u.lr,
        gradNorm: u.gradNorm,
        pairsPerSecond: N / u.seconds,
        ...(C ? { correctnessLoss: s.cLoss, correctnessAccuracy: s.cCorrect / C } : {}),
      }),
      evaluate:
        data.eval &&
        (async () => {
          const e = (evalResult = await this.#evaluate(data.eval!));
          return { evalAccuracy: e.accuracy, evalLoss: e.loss, evalMeanScore: e.meanScore };
        }),
      stopRequested: () => this.#stopRequested,
    });
    return {
      steps: r.steps,
      trainLoss: r.last?.loss ?? NaN,
      trainAccuracy: r.last?.accuracy ?? NaN,
      eval: evalResult,
      balance: data.balance,
      skippedSteps: run.skippedSteps,
      seconds: (performance.now() - t0) / 1000,
      ...(r.stopped ? { stopped: true } : {}),
    };
  }
}
