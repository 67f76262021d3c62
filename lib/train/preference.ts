/**
 * Offline preference optimisation (docs/algorithms.md §1.2, 1.4, 2.6, 3.2–3.4, 5.6–5.7; properties 2, 10): the DPO
 * family (dpo, cdpo, ipo, simpo, orpo, kto) and EXO (exo on pairs; exo-rw and dpo-rw on K-sample
 * scored groups) on a causal-LM policy against a frozen reference (none for simpo and orpo).
 *
 *   data       pairs {prompt, chosen, rejected} or, for *-rw, scored groups {prompt, responses,
 *              scores} split into groups of groupSize (pairs become groups [chosen, rejected] with
 *              scores [1, 0], the official pref_to_rw), or, for kto, unpaired {prompt, completion,
 *              label} rows (one item each); each response gets eos, rows truncated to seqLen
 *   reference  options.reference, or a frozen clone of the policy made at train() start; its
 *              sequence log-probs are computed once per row after resuming (no gradients)
 *   log-probs  log π(y|x) = Σ over response tokens only (property 10), logits / temperature
 *   step       gradAccum micro-batches of batchSize items (pairs or groups) in one forward each; the
 *              loss is the mean over the step's items (+ ntpCoef · mean NLL of the step's chosen /
 *              best-scored response tokens); d/d(seq logp) is spread to each row's response tokens
 *   output     checkpoints with parts 'policy' (+ optimizer) and 'reference' (weights only, so a
 *              resumed run uses the original reference), metrics.jsonl, outputDir/model (the policy)
 */
import { AdamW } from '../engine/adamw.js';
import type { Model } from '../engine/model.js';
import type { PreferenceRecord, ScoredRecord, UnpairedRecord } from '../data/index.js';
import { ktoKlBaseline } from '../losses/index.js';
import { spreadToResponses } from './packed-rows.js';
import { prepareItems, type Item, type PreparedItems } from './preference-items.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { options } from '../validate.js';
import type { CheckpointPart } from './checkpoint.js';
import { TrainerEmitter } from './events.js';
import { shardRange, type ProcessGroup } from '../distributed/index.js';
import { EpochBatches, LOOP_KEYS, readLoopOptions, rowLogprobs, type LoopOptions } from './preference-common.js';
import {
  PREFERENCE_LOSSES,
  isGroupLoss,
  isReferenceFree,
  TALLY_KEYS,
  addTally,
  emptyTally,
  metricsOf,
  preferenceLoss,
  tallyOf,
  type LossParams,
  type Tally,
  type PreferenceLoss,
} from './preference-losses.js';
import { pairsFromGroups, sampleAndScore, type OnlinePair, type SampleOptions } from './preference-online.js';
import {
  DATA_PARALLEL_KEYS,
  localShare,
  readDataParallel,
  runStepLoop,
  stepCadence,
  type AllReduceOptions,
} from './loop.js';
import { TrainingRun, allFinite } from './run.js';
import { loopSchedule } from './schedule.js';
import { frozenReference } from './reference.js';

export { PREFERENCE_LOSSES, type PreferenceLoss } from './preference-losses.js';
export type { OnlinePair, SampleOptions, SampledGroup } from './preference-online.js';

/** Options of {@link PreferenceTrainer}; loop options (batchSize = pairs or groups per micro-batch) as in SFTOptions. */
export interface PreferenceTrainerOptions extends Partial<LoopOptions>, AllReduceOptions {
  /** ZeRO stage 1 over options.group: AdamW moments for this rank's share of the parameters only (default true) */
  shardOptimizer?: boolean;
  policy: Model;
  /** frozen reference (default: a clone of the policy at train() start — for a LoRA policy its base,
   * policy.withoutAdapters(), sharing the weights; not used by simpo and orpo) */
  reference?: Model;
  tokenizer: Tokenizer;
  /** default 'dpo' */
  loss?: PreferenceLoss;
  /** β of dpo/cdpo/ipo/simpo/kto/exo, ORPO's λ (default 0.1) */
  beta?: number;
  /** ε_ls of cdpo (default 0.1; 'dpo' accepts it too, default 0) */
  labelSmoothing?: number;
  /** ε of exo (default 1e-3) */
  epsilon?: number;
  /** β_π of exo-rw/dpo-rw (default beta) */
  betaPi?: number;
  /** β_r of exo-rw/dpo-rw (default betaPi, as in the official scripts) */
  betaR?: number;
  /** KTO's weight w_d of the desirable (chosen) examples' loss (default 1, TRL's desirable_weight) */
  desirableWeight?: number;
  /** KTO's weight w_u of the undesirable (rejected) examples' loss (default 1, TRL's undesirable_weight) */
  undesirableWeight?: number;
  /** SimPO target margin γ (default 0.5, TRL's simpo_gamma) */
  gamma?: number;
  /** K of exo-rw/dpo-rw (default: the records' response count, which must then be the same for all) */
  groupSize?: number;
  /** λ_NTP of the NLL on the chosen (best-scored) responses (default 0, 1 for orpo: its SFT term; docs/algorithms.md §1.4, 5.7) */
  ntpCoef?: number;
  /** logits are divided by this for every log-prob (default 1; the EXO scripts use 0.8) */
  temperature?: number;
  /** packed forwards: each micro-batch's sequences share rows of at most this many tokens
   * (>= seqLen; block-diagonal attention, positions restart per sequence), instead of one padded
   * row each; the results equal the padded path's up to float rounding (default: padded) */
  packTokens?: number;
  /** JSONL path or records: pairs, scored groups for *-rw, pairs or unpaired rows for kto */
  train: string | Array<PreferenceRecord | ScoredRecord | UnpairedRecord>;
  eval?: string | Array<PreferenceRecord | ScoredRecord | UnpairedRecord>;
}

const KEYS = [
  ...DATA_PARALLEL_KEYS,
  'policy',
  'reference',
  'tokenizer',
  'loss',
  'beta',
  'labelSmoothing',
  'epsilon',
  'betaPi',
  'betaR',
  'gamma',
  'desirableWeight',
  'undesirableWeight',
  'groupSize',
  'ntpCoef',
  'temperature',
  'packTokens',
  'train',
  'eval',
  ...LOOP_KEYS,
] as const;
const BUILD_KEYS = ['policy', 'tokenizer', 'prompts', 'reward', 'samples', 'sampling', 'seed', 'batchSize'] as const;

/**
 * Mean diagnostics over a set of items (per step or for evaluate). Unpaired KTO: the chosen /
 * rejected means are over the desirable / undesirable rows (NaN in evaluate and left out of step
 * metrics when the set has none of that kind).
 */
export interface PreferenceMetrics {
  loss: number;
  /** implicit rewards of the chosen (best-scored) and rejected (worst-scored) responses */
  rewardsChosen: number;
  rewardsRejected: number;
  margin: number;
  /** fraction of items with rewardsChosen > rewardsRejected; unpaired KTO: of rows on their label's
   * side of the reference point (desirable: h > z0, undesirable: h < z0) */
  accuracy: number;
  /** policy sequence log-probs of the chosen / rejected responses */
  logpsChosen: number;
  logpsRejected: number;
}

export interface PreferenceTrainResult {
  steps: number;
  /** the last step's loss (with the NTP term) */
  trainLoss: number;
  eval?: PreferenceMetrics & { items: number };
  skippedSteps: number;
  seconds: number;
  stopped?: boolean;
}

/** DPO-family / EXO trainer on offline pairs or scored groups. */
export class PreferenceTrainer extends TrainerEmitter {
  readonly policy: Model;
  readonly tokenizer: Tokenizer;
  readonly optimizer: AdamW;
  /** the frozen reference (set at train() or evaluate() when not given) */
  reference?: Model;
  /** data-parallel ranks (RunOptions.group): each takes its share of every micro-batch's items */
  readonly group: ProcessGroup;
  #o: LoopOptions & LossParams & { k?: number; ntpCoef: number; temperature: number; packTokens?: number };
  #allReduce: { overlapAllReduce: boolean; bucketBytes: number };
  #opts: PreferenceTrainerOptions;
  #data?: Promise<PreparedItems>;
  #stopRequested = false;

  constructor(opts: PreferenceTrainerOptions) {
    super();
    const fn = 'PreferenceTrainer';
    const o = options(fn, 'options', opts);
    o.known(KEYS);
    if (!opts.policy || !opts.tokenizer)
      throw new TypeError(`${fn}: options.policy and options.tokenizer are required`);
    if (!opts.policy.config.lmHead)
      throw new TypeError(
        `${fn}: expected options.policy to be a causal LM, received a ${opts.policy.config.architecture}`,
      );
    if (opts.reference && opts.reference.config.architecture !== opts.policy.config.architecture)
      throw new TypeError(
        `${fn}: options.reference (${opts.reference.config.architecture}) must have the policy's architecture (${opts.policy.config.architecture})`,
      );
    if (opts.train === undefined) throw new TypeError(`${fn}: options.train is required`);
    this.policy = opts.policy;
    this.tokenizer = opts.tokenizer;
    this.reference = opts.reference;
    this.#opts = opts;
    const loss = o.oneOf('loss', PREFERENCE_LOSSES, 'dpo');
    const beta = o.number('beta', { gt: 0 }, 0.1);
    const betaPi = o.number('betaPi', { gt: 0 }, beta);
    this.#o = {
      ...readLoopOptions(fn, o, { lr: 1e-6 }),
      loss,
      beta,
      labelSmoothing: o.number('labelSmoothing', { min: 0, max: 0.5 }, loss === 'cdpo' ? 0.1 : 0),
      epsilon: o.number('epsilon', { gt: 0, lt: 1 }, 1e-3),
      betaPi,
      betaR: o.number('betaR', { gt: 0 }, betaPi),
      gamma: o.number('gamma', { min: 0 }, 0.5),
      desirableWeight: o.number('desirableWeight', { gt: 0 }, 1),
      undesirableWeight: o.number('undesirableWeight', { gt: 0 }, 1),
      k: o.has('groupSize') ? o.int('groupSize', { min: 2 }) : undefined,
      ntpCoef: o.number('ntpCoef', { min: 0 }, loss === 'orpo' ? 1 : 0),
      temperature: o.number('temperature', { gt: 0 }, 1),
      packTokens: o.has('packTokens') ? o.int('packTokens', { min: 2 }) : undefined,
    };
    if (this.#o.packTokens !== undefined && this.#o.packTokens < this.#o.seqLen)
      throw new RangeError(
        `${fn}: expected options.packTokens to be >= options.seqLen (${this.#o.seqLen}), received ${this.#o.packTokens}`,
      );
    if (o.has('labelSmoothing') && !['dpo', 'cdpo'].includes(loss))
      throw new TypeError(`${fn}: options.labelSmoothing applies to loss 'dpo' or 'cdpo', not '${loss}'`);
    for (const key of ['desirableWeight', 'undesirableWeight'])
      if (o.has(key) && loss !== 'kto')
        throw new TypeError(`${fn}: options.${key} applies to loss 'kto', not '${loss}'`);
    if (this.#o.k !== undefined && !isGroupLoss(loss))
      throw new TypeError(`${fn}: options.groupSize applies to loss 'exo-rw' or 'dpo-rw', not '${loss}'`);
    const dp = readDataParallel(o, opts.group);
    this.group = dp.group;
    this.#allReduce = { overlapAllReduce: dp.overlapAllReduce, bucketBytes: dp.bucketBytes };
    this.optimizer = new AdamW(
      this.policy,
      { lr: this.#o.lr, weightDecay: this.#o.weightDecay, maxGradNorm: this.#o.maxGradNorm },
      { group: dp.optimizerGroup },
    );
  }

  /**
   * Online pair construction (ChatGLM-RLHF DPO data, docs/algorithms.md §2.6; LongReward, 5.6): `samples` responses
   * per prompt from the policy, scored by `reward`; per prompt the first best-scored response is
   * chosen and the last worst-scored rejected; prompts whose best and worst scores are equal give no
   * pair. Also returns every prompt's scored group (data for exo-rw / dpo-rw). Deterministic in
   * (policy weights, prompts, seed).
   */
  static async buildPairs(
    opts: Omit<SampleOptions, 'n'> & { samples: number },
  ): Promise<{ pairs: OnlinePair[]; groups: ScoredRecord[]; droppedTies: number }> {
    const fn = 'PreferenceTrainer.buildPairs';
    const o = options(fn, 'options', opts);
    o.known(BUILD_KEYS);
    o.int('samples', { min: 2 });
    return pairsFromGroups(await sampleAndScore(fn, opts as unknown as SampleOptions, 'samples'));
  }

  /** Ends train() after the current step, writing a checkpoint first. */
  requestStop(): void {
    this.#stopRequested = true;
  }

  #log(message: string): void {
    this.emit('log', { stage: 'preference', message });
  }

  /** Tokenizes the data once (lib/train/preference-items.ts). */
  #prepare(): Promise<PreparedItems> {
    this.#data ??= prepareItems('PreferenceTrainer', this.#opts, this.#o, this.tokenizer, (m) => this.#log(m));
    return this.#data;
  }

  /** Creates the default reference (a frozen clone of the policy) if needed. */
  async #ensureReference(): Promise<void> {
    if (!isReferenceFree(this.#o.loss)) this.reference ??= await frozenReference(this.policy);
  }

  /** Fills item.ref with the reference's sequence log-probs (dataset order, no gradients). */
  async #cacheReference(items: Item[], force: boolean): Promise<void> {
    if (isReferenceFree(this.#o.loss)) return;
    const todo = force ? items : items.filter((it) => !it.ref);
    for (let i = 0; i < todo.length; i += this.#o.batchSize) {
      const batch = todo.slice(i, i + this.#o.batchSize);
      const rb = await rowLogprobs(
        this.reference!,
        batch.flatMap((it) => it.rows),
        this.tokenizer.padId,
        { save: false, temperature: this.#o.temperature, rowTokens: this.#o.packTokens },
      );
      let row = 0;
      for (const it of batch) ((it.ref = rb.seq.slice(row, row + it.rows.length)), (row += it.rows.length));
    }
  }

  /**
   * Policy and reference sequence log-probs of KTO's mismatched rows [begin, end) of `items` (TRL's
   * KL term), no gradients: unpaired, row i's prompt with row (i−1)'s completion, as TRL shifts the
   * completions of a batch by one; pairs, item i's prompt with item (i+1)'s chosen response. A
   * micro-batch of one item has no mismatched row: z0 is then its own h.
   */
  async #mismatched(items: Item[], begin: number, end: number) {
    const n = items.length;
    const rows = items.slice(begin, end).map((it, j) => {
      const i = begin + j;
      const p = it.rows[it.best].promptIds,
        other = items[it.label === undefined ? (i + 1) % n : (i + n - 1) % n];
      return {
        promptIds: p,
        responseIds: other.rows[other.best].responseIds.slice(0, Math.max(0, this.#o.seqLen - p.length)),
      };
    });
    const opts = { save: false, temperature: this.#o.temperature, rowTokens: this.#o.packTokens };
    const pol = await rowLogprobs(this.policy, rows, this.tokenizer.padId, opts),
      ref = await rowLogprobs(this.reference!, rows, this.tokenizer.padId, opts);
    return { pol: pol.seq, ref: ref.seq };
  }

  /** KTO's z0 of a micro-batch (ktoKlBaseline over its mismatched rows). */
  async #klBaseline(items: Item[]): Promise<number> {
    const { pol, ref } = await this.#mismatched(items, 0, items.length);
    return allFinite(...pol, ...ref) ? ktoKlBaseline(pol, ref) : NaN;
  }

  /**
   * KTO's z0 of a GLOBAL micro-batch when data-parallel (a collective): each rank forwards the
   * mismatched rows of its share, the terms (p − r) / N are summed over ranks, so z0 is the
   * one-process value whatever the number of ranks (NaN everywhere when a log-prob is not finite).
   */
  async #klBaselineShared(global: Item[]): Promise<number> {
    const [begin, end] = shardRange(global.length, this.group.rank, this.group.size);
    let s = 0;
    if (end > begin) {
      const { pol, ref } = await this.#mismatched(global, begin, end);
      for (let i = 0; i < pol.length; i++) s += (pol[i] - ref[i]) / global.length;
    }
    return Math.max(0, this.group.allReduceSum(Float64Array.of(s))[0]);
  }

  /**
   * One micro-batch: loss, gradient w.r.t. the policy's sequence log-probs, its metric tally; null
   * (and no saved activations) when a log-prob is not finite.
   */
  async #lossOf(items: Item[], save: boolean, sharedZ0?: number) {
    const k = items[0].rows.length;
    const z0 = this.#o.loss === 'kto' ? (sharedZ0 ?? (await this.#klBaseline(items))) : undefined;
    const rb = await rowLogprobs(
      this.policy,
      items.flatMap((it) => it.rows),
      this.tokenizer.padId,
      { save, temperature: this.#o.temperature, rowTokens: this.#o.packTokens },
    );
    const ref = isReferenceFree(this.#o.loss) ? undefined : Float64Array.from(items.flatMap((it) => [...it.ref!]));
    if (!allFinite(...rb.seq, ...(ref ?? []), z0 ?? 0)) {
      if (save) this.policy.releaseActivations();
      return null;
    }
    const input = {
      k,
      policy: rb.seq,
      ref,
      lengths: items.flatMap((it) => it.lengths),
      scores: items[0].scores && items.flatMap((it) => it.scores!),
      best: items.map((it) => it.best),
      worst: items.map((it) => it.worst),
      desirable: items[0].label === undefined ? undefined : items.map((it) => (it.label ? 1 : 0)),
      klBaseline: z0,
    };
    const out = preferenceLoss(this.#o, input);
    return { rb, out, tally: tallyOf(this.#o, input, out, items.length) };
  }

  /** Mean loss (without the NTP term) and diagnostics over the eval set, no gradients. */
  async evaluate(): Promise<PreferenceMetrics & { items: number }> {
    const data = await this.#prepare();
    if (!data.eval) throw new TypeError('PreferenceTrainer.evaluate: no eval data (options.eval)');
    await this.#ensureReference();
    await this.#cacheReference(data.eval, false);
    return this.#evaluate(data.eval);
  }

  async #evaluate(set: Item[]): Promise<PreferenceMetrics & { items: number }> {
    const sum = emptyTally();
    for (let i = 0; i < set.length; i += this.#o.batchSize) {
      const r = await this.#lossOf(set.slice(i, i + this.#o.batchSize), false);
      if (!r) {
        const nan = Object.fromEntries(TALLY_KEYS.map((k) => [k, NaN])) as Tally;
        return { ...this.#metrics(nan, false), items: set.length };
      }
      addTally(sum, r.tally);
    }
    return { ...this.#metrics(sum, false), items: set.length };
  }

  /** The metrics of a tally; `step`: without the means of a kind the set has no row of (as TRL logs). */
  #metrics(t: Tally, step: boolean): PreferenceMetrics & { klBaseline?: number } {
    const { klBaseline, ...m } = metricsOf(t);
    const out: PreferenceMetrics & { klBaseline?: number } = this.#o.loss === 'kto' ? { ...m, klBaseline } : m;
    if (step)
      for (const [kind, keys] of [
        ['chosen', ['rewardsChosen', 'logpsChosen', 'margin']],
        ['rejected', ['rewardsRejected', 'logpsRejected', 'margin']],
      ] as const)
        if (t[kind] === 0) for (const key of keys) delete (out as Partial<PreferenceMetrics>)[key];
    return out;
  }

  async train(): Promise<PreferenceTrainResult> {
    const o = this.#o;
    const t0 = performance.now();
    const data = await this.#prepare();
    const batches = new EpochBatches(data.train, o.batchSize, o.seed);
    const { totalSteps, schedule } = loopSchedule(o, batches.perEpoch);
    const { group: _group, ...identity } = this.#opts;
    const run = new TrainingRun(
      'preference',
      this,
      totalSteps,
      { ...o, group: this.group },
      { config: { ...identity, ...o }, dataKeys: ['train', 'eval'] },
    );
    await this.#ensureReference();
    // a LoRA policy's reference is its base (a view of the policy's own weights): nothing to save
    const frozen: Record<string, CheckpointPart> =
      this.reference && !this.reference.adaptersOf ? { reference: { model: this.reference } } : {};
    // the step's metrics: each a sum over micro-batches of per-item means weighted by the micro-batch's share
    let N = 0,
      evalResult: PreferenceTrainResult['eval'];
    const r = await runStepLoop({
      run,
      group: this.group,
      model: this.policy,
      optimizer: this.optimizer,
      tokenizer: this.tokenizer,
      part: 'policy',
      frozen,
      ...stepCadence(o, !!data.eval),
      savedState: { seed: o.seed, loss: o.loss },
      ...this.#allReduce,
      // after resume: the reference may have been restored from the checkpoint
      afterResume: () => this.#cacheReference([...data.train, ...(data.eval ?? [])], true),
      totalSteps,
      perEpoch: batches.perEpoch,
      schedule,
      accumulate: async (micro, backward) => {
        const micros = Array.from({ length: o.gradAccum }, (_, i) => batches.at(micro + i));
        N = micros.reduce((s, b) => s + b.length, 0);
        // NTP: mean NLL over the step's chosen (best-scored; unpaired: desirable) response tokens
        const ntpTokens = micros.reduce(
          (s, b) => s + b.reduce((t, it) => t + (it.label === false ? 0 : it.lengths[it.best]), 0),
          0,
        );
        const tally = emptyTally();
        let nll = 0;
        for (const [m, global] of micros.entries()) {
          // KTO's reference point is the whole micro-batch's, as in one process
          const sharedZ0 = o.loss === 'kto' && this.group.size > 1 ? await this.#klBaselineShared(global) : undefined;
          const items = localShare(this.group, global);
          if (!items.length) continue;
          const r = await this.#lossOf(items, true, sharedZ0);
          if (!r) {
            tally.loss = NaN; // no backward; the step skips its update
            continue;
          }
          const { rb, out } = r;
          const w = items.length / N; // each micro-batch loss is a mean over its items; the step's is over all N
          const dTok = spreadToResponses(
            out.dPolicy.map((d) => d * w),
            rb.sb,
          );
          if (o.ntpCoef > 0)
            items.forEach((it, i) => {
              if (it.label === false) return;
              const b = i * it.rows.length + it.best;
              for (let j = 0; j < rb.sb.responseLength[b]; j++) {
                nll -= rb.logprobs[rb.sb.responseStart[b] + j] / ntpTokens;
                dTok[rb.sb.responseStart[b] + j] -= o.ntpCoef / ntpTokens;
              }
            });
          addTally(tally, r.tally);
          await backward({ dLogprobs: Float32Array.from(dTok) }, m === micros.length - 1);
        }
        return { ...tally, ntpLoss: nll };
      },
      lossOf: (m) => (o.ntpCoef > 0 ? m.loss + o.ntpCoef * m.ntpLoss : m.loss),
      metrics: (sums, u) => {
        const m: Record<string, number> = { ...this.#metrics(sums as unknown as Tally, true) };
        if (o.ntpCoef > 0) ((m.ntpLoss = sums.ntpLoss), (m.loss += o.ntpCoef * sums.ntpLoss));
        return { ...m, lr: u.lr, gradNorm: u.gradNorm, itemsPerSecond: N / u.seconds };
      },
      evaluate:
        data.eval &&
        (async () => {
          evalResult = await this.#evaluate(data.eval!);
          const { items: _items, ...m } = evalResult;
          return Object.fromEntries(
            Object.entries(m).map(([key, v]) => [`eval${key[0].toUpperCase()}${key.slice(1)}`, v]),
          );
        }),
      stopRequested: () => this.#stopRequested,
    });
    return {
      steps: r.steps,
      trainLoss: r.last?.loss ?? NaN,
      eval: evalResult,
      skippedSteps: run.skippedSteps,
      seconds: (performance.now() - t0) / 1000,
      ...(r.stopped ? { stopped: true } : {}),
    };
  }
}
