/**
 * The policy-gradient step shared by PPOTrainer and GroupTrainer, run on the trainers' one loop
 * (lib/train/loop.ts runLoop: resume, checkpoints, stop requests, events and metrics; one loop step
 * is one iteration). Its sampling rounds are lib/train/sampling.ts, its update
 * policy-gradient-update.ts, its types policy-gradient-config.ts, its per-iteration helpers
 * policy-gradient-stats.ts; multi-turn episodes lib/rollout/environment.ts. One iteration:
 *
 *   prompts   the next promptsPerIteration prompts (seeded order, epochs wrap around)
 *   generate  samplesPerPrompt responses each, with log π_old of every token (lib/rollout), or
 *             with asyncRollouts 1 from a copy of the policy one update behind, sampled while the
 *             previous update ran (RoundSource, lib/train/sampling.ts; log-probs then μ's), or
 *             with options.environment an episode each (policy and environment turns; only the
 *             policy's tokens enter losses, KL and GAE)
 *   score     the reward source; PPO's baseline: R = r(x,y) − r(x,y_ref) with y_ref sampled once
 *             per prompt from the reference policy and cached (ChatGLM-RLHF, docs/algorithms.md §2.4), or
 *             running normalisation, or none
 *   advantage 'gae': token rewards r_t = −β·kl_t + 1[t = last]·R, GAE over critic values (docs/algorithms.md §1.3)
 *             'grpo' | 'rloo' | 'reinforce++': one advantage per response from the group's scores
 *   update    epochs × minibatches: clipped surrogate (+ entropy bonus, + KL in the loss, + λ·NTP on
 *             SFT data), one AdamW step per minibatch; the critic's clipped value loss likewise
 *
 * Temperature: rollouts sample from π_T (logits / T, then top-k / top-p) and record log π_T of the
 * full tempered distribution; every forward of the loop on sampled responses (policy, reference,
 * hence ratios, KL and entropy) runs at the same T, so on-policy ratios are exactly 1 (the metric
 * rolloutLogprobDiffMax, max |log π_T − log π_old| on the first minibatch, is 0 on CPU with a fixed
 * thread count). Greedy sampling (T = 0) uses T = 1 in forward. PTX runs at T = 1.
 *
 * Rewards: a non-finite score is an error naming the prompt, the sample and the reward source, or
 * with onInvalidReward 'skip' the sample is dropped (for grpo/rloo its whole group, whose baseline it
 * would spoil) with a warning. Whitening runs in float64, so finite rewards of any size give finite
 * advantages. A batch whose rewards carry no signal (every group, or for reinforce++ the batch, with
 * zero variance) is logged as a warning: its policy gradient is 0.
 *
 * Losses: the native policy-gradient family (lib/engine/pg.ts pgNative, native/cpu/pg_losses.cc) on
 * whole minibatches — aggregation weights, the clipped policy loss (PPO or GSPO), entropy bonus, KL
 * loss, value loss, per-token KL; the float64 functions of lib/losses are their test references.
 * Token rewards and GAE stay float64 (lib/losses): their fp32 native twins would overflow on rewards
 * near the fp32 limit before the whitening brings them back into range.
 *
 * Packing (packTokens): every forward on sampled sequences (policy, reference, critic) runs on
 * aligned packed rows (lib/train/packed-rows.ts) and its outputs are moved back to the padded
 * layout, where every loss is computed as without packing.
 *
 * Every update is guarded: a non-finite loss or gradient skips the step (counted), so non-finite
 * weights are never produced or saved. Checkpoints hold policy, critic, the frozen reference and
 * the trainer state (iteration, KL coefficient, cached reference scores, kept prompts), so a
 * resumed run continues exactly.
 */
import { AdamW } from '../engine/adamw.js';
import type { Model } from '../engine/model.js';
import { RlhfError, ErrorCode } from '../errors.js';
import { loadPromptFile, loadSftFile, tokenizeSft, toSftRecords, type TokenizedExample } from '../data/index.js';
import {
  gae,
  grpoAdvantages,
  truncatedImportanceWeights,
  reinforcePlusPlusAdvantages,
  rlooAdvantages,
} from '../losses/index.js';
import { pgNative } from '../engine/pg.js';
import { policyTokenMask } from '../rollout/environment.js';
import { responseSlice, scatterResponses, sequenceBatch } from '../rollout/sequences.js';
import { forwardRows, policyUpdate, type PolicyUpdateHost } from './policy-gradient-update.js';
import { RolloutSampler, RoundSource, type SampledRound } from './sampling.js';
import { TrainerEmitter } from './events.js';
import { currentGroup, type ProcessGroup } from '../distributed/index.js';
import { gatherRows, overlapDeclined, runLoop, type StepReport } from './loop.js';
import { TrainingRun } from './run.js';
import type { IterationData, PolicyGradientConfig, PolicyGradientResult } from './policy-gradient-config.js';
import { isStats, rolloutEvent, sampleTokenRewards, std, whitenRows, zeroVariance } from './policy-gradient-stats.js';

export type {
  AdvantageEstimator,
  KlOptions,
  PolicyGradientConfig,
  PolicyGradientResult,
} from './policy-gradient-config.js';
import { frozenReference } from './reference.js';

export class PolicyGradientLoop extends TrainerEmitter {
  readonly policy: Model;
  readonly optimizer: AdamW;
  readonly criticOptimizer?: AdamW;
  /** data-parallel ranks (options.group): each samples its share of the prompts (whole groups) */
  readonly group: ProcessGroup;
  protected c: PolicyGradientConfig;
  #reference?: Model;
  #ownsReference = false;
  #stop = false;
  #klCoef: number;
  #sampler: RolloutSampler;
  #norm = { count: 0, mean: 0, m2: 0 };
  #overlap = { policy: false, critic: false };

  constructor(c: PolicyGradientConfig) {
    super();
    this.c = c;
    this.policy = c.policy;
    this.group = c.group ?? currentGroup();
    const sharded = { group: c.shardOptimizer !== false && this.group.size > 1 ? this.group : undefined };
    this.optimizer = new AdamW(c.policy, { lr: c.lr, weightDecay: c.weightDecay, maxGradNorm: c.maxGradNorm }, sharded);
    if (c.critic)
      this.criticOptimizer = new AdamW(
        c.critic,
        { lr: c.criticLr, weightDecay: c.weightDecay, maxGradNorm: c.maxGradNorm },
        sharded,
      );
    this.#klCoef = c.kl.coef;
    this.#sampler = new RolloutSampler(c, this.group, (message) => this.emit('log', { stage: c.stage, message }));
  }

  /** Ends train() after the current iteration, writing a checkpoint first. */
  requestStop(): void {
    this.#stop = true;
  }

  /** The current KL coefficient (changes when the adaptive controller is on). */
  get klCoef(): number {
    return this.#klCoef;
  }

  /** The temperature of every forward on sampled responses: the sampling temperature (1 when greedy). */
  get #forwardTemperature(): number {
    const T = this.c.sampling.temperature ?? 1;
    return T > 0 ? T : 1;
  }

  get #needsReference(): boolean {
    return true; // KL to the reference is always measured (and logged), even when β = 0
  }

  /** Runs the iterations on the shared trainer loop (lib/train/loop.ts runLoop): one step = one iteration. */
  async train(): Promise<PolicyGradientResult> {
    const c = this.c;
    const t0 = performance.now();
    const prompts = typeof c.prompts === 'string' ? await loadPromptFile(c.prompts) : c.prompts;
    if (!prompts.length) throw new RlhfError(ErrorCode.FORMAT, `${c.stage}: no prompts`);
    if (this.#needsReference && !this.#reference) {
      this.#reference = c.reference ?? (await frozenReference(c.policy));
      this.#ownsReference = !c.reference;
    }
    this.#sampler.reference = this.#reference;
    const ptx = c.ptx ? await this.#ptxExamples(c.ptx) : undefined;
    // data-parallel ranks, or the processes of a tensor-parallel group (whose every forward is collective)
    if (c.asyncRollouts && this.group.worldSize > 1)
      throw new RlhfError(
        ErrorCode.INVALID_ARGUMENT,
        `${c.stage}: asyncRollouts 1 runs in one process (its sampling would interleave with the update's collectives); got ${this.group.worldSize} ranks`,
      );
    const copy = c.asyncRollouts ? await c.policy.clone() : undefined;
    this.#overlap = { policy: this.#overlapFor('policy', c.policy), critic: this.#overlapFor('critic', c.critic) };
    const run = new TrainingRun(c.stage, this, c.iterations, c, {
      config: c as unknown as Record<string, unknown>,
      dataKeys: ['prompts', 'ptx.data'],
    });
    let kept: number[] | undefined;
    let rounds: RoundSource | undefined;
    const rewardHistory: number[] = [];
    const r = await runLoop({
      run,
      group: this.group,
      totalSteps: c.iterations,
      parts: () => ({
        policy: { model: c.policy, optimizer: this.optimizer, tokenizer: c.tokenizer },
        ...(c.critic ? { critic: { model: c.critic, optimizer: this.criticOptimizer } } : {}),
        // a LoRA policy's reference is its base (a view of the policy's own weights): nothing to save
        ...(this.#reference && !this.#reference.adaptersOf ? { reference: { model: this.#reference } } : {}),
        // asyncRollouts: the weights the next iteration's samples come from (the policy before the last update)
        ...(copy ? { rollout: { model: copy } } : {}),
      }),
      // a checkpoint waits for the round in flight (its reference-baseline scores join the saved cache)
      state: async () => {
        await rounds?.settle();
        return {
          klCoef: this.#klCoef,
          refScores: Object.fromEntries(this.#sampler.refScores),
          norm: this.#norm,
          keptPrompts: kept,
          rewardHistory,
          seed: c.seed,
        };
      },
      begin: async (resumed) => {
        if (resumed) {
          this.#klCoef = resumed.klCoef as number;
          this.#sampler.refScores = new Map(
            Object.entries(resumed.refScores as Record<string, number>).map(([k, v]) => [Number(k), v]),
          );
          this.#norm = resumed.norm as { count: number; mean: number; m2: number };
          kept = resumed.keptPrompts as number[] | undefined;
          rewardHistory.push(...(resumed.rewardHistory as number[]));
        } else if (c.promptFilter) {
          kept = await this.#sampler.filterPrompts(prompts, c.promptFilter, run);
        }
        const pool = kept ?? prompts.map((_, i) => i);
        rounds = new RoundSource(this.#sampler, prompts, pool, c.iterations, copy && { copy, policy: c.policy });
      },
      step: (iteration) => this.#iteration(run, rounds!, iteration, rewardHistory, ptx),
      saveEvery: c.saveEvery,
      end: async () => {
        try {
          await rounds?.close();
        } finally {
          copy?.dispose();
        }
      },
      stopRequested: () => this.#stop,
    });
    return {
      iterations: r.steps,
      rewardHistory,
      skippedSteps: run.skippedSteps,
      seconds: (performance.now() - t0) / 1000,
      ...(r.stopped ? { stopped: true } : {}),
    };
  }

  /** One iteration: sample, score, advantages, update; its metrics (and the 'rollout' event once reported). */
  async #iteration(
    run: TrainingRun,
    rounds: RoundSource,
    iteration: number,
    rewardHistory: number[],
    ptx: TokenizedExample[] | undefined,
  ): Promise<StepReport> {
    const c = this.c;
    const time: Record<string, number> = {};
    const timed = async <T>(phase: string, f: () => Promise<T>): Promise<T> => {
      const s = performance.now();
      try {
        return await f();
      } finally {
        time[phase] = (time[phase] ?? 0) + (performance.now() - s) / 1000;
      }
    };
    const times = () => Object.fromEntries(Object.entries(time).map(([k, v]) => [`time/${k}`, v]));
    const data = await this.#collect(await rounds.next(iteration, time), iteration, timed);
    if ('emptyRewardMean' in data) {
      // dynamic sampling found no group with varying rewards: nothing to train on this iteration
      rewardHistory.push(data.emptyRewardMean);
      return {
        metrics: {
          rewardMean: data.emptyRewardMean,
          dynamicSamplingRounds: c.dynamicSampling!.maxRounds,
          keptGroups: 0,
          ...times(),
        },
      };
    }
    const m = await policyUpdate(this.#updateHost(run), data, iteration, ptx, timed);
    if (c.kl.target !== undefined && this.#needsReference) {
      const observed = data.klPerResponse.reduce((a, b) => a + b, 0) / data.klPerResponse.length;
      const err = Math.max(-0.2, Math.min(0.2, observed / c.kl.target - 1));
      this.#klCoef *= 1 + (err * data.klPerResponse.length) / (c.kl.horizon ?? 10000);
    }
    const meanReward = data.scores.reduce((a, b) => a + b, 0) / data.scores.length;
    rewardHistory.push(meanReward);
    // tokens the policy sampled (an episode's environment tokens are not counted)
    const generated = data.rollout.samples.reduce(
      (s, x) => s + (x.lossMask ? x.lossMask.reduce((a, m) => a + m, 0) : x.responseIds.length),
      0,
    );
    const seconds = Object.values(time).reduce((a, b) => a + b, 0);
    return {
      metrics: {
        rewardMean: meanReward,
        rewardStd: std(data.scores),
        shapedRewardMean: data.shaped.reduce((a, b) => a + b, 0) / data.shaped.length,
        kl: data.klPerResponse.reduce((a, b) => a + b, 0) / data.klPerResponse.length,
        klCoef: this.#klCoef,
        klEstimator: Number(c.kl.estimator.slice(1)), // 1, 2, 3: which of k1/k2/k3 `kl` is (reports name it)
        responseLength: generated / data.rollout.samples.length,
        stopRate: data.rollout.samples.filter((s) => s.finishReason === 'stop').length / data.rollout.samples.length,
        tokensPerSecond: generated / seconds,
        ...(c.onInvalidReward === 'skip' ? { droppedSamples: data.droppedSamples } : {}),
        ...(data.dyn ? { ...data.dyn, keptGroups: data.rollout.prompts.length } : {}),
        ...(data.isWeights ? isStats(data.isWeights, data.sb, c.truncatedIS!) : {}),
        ...m,
        ...times(),
      },
      reported: () => this.emit('rollout', rolloutEvent(c.stage, iteration + 1, data)),
    };
  }

  /** Frees the reference model this trainer cloned (not one the caller passed). */
  dispose(): void {
    if (this.#ownsReference) this.#reference?.dispose();
    this.#reference = undefined;
    this.optimizer.dispose();
    this.criticOptimizer?.dispose();
  }

  /** The iteration's data, or (dynamic sampling with no group of varying rewards) the mean reward of everything sampled. */
  async #collect(
    round: SampledRound,
    iteration: number,
    timed: <T>(p: string, f: () => Promise<T>) => Promise<T>,
  ): Promise<IterationData | { emptyRewardMean: number }> {
    const c = this.c,
      n = c.samplesPerPrompt,
      tok = c.tokenizer;
    const { rollout, scores, ref } = round;
    let shaped = round.shaped;
    const drop = { size: round.dropped };
    if (!rollout.samples.length) {
      if (c.dynamicSampling) return { emptyRewardMean: round.seenRewardMean }; // nothing to learn from: no update this iteration
      throw new RlhfError(
        ErrorCode.OUT_OF_RANGE,
        `${c.stage}: iteration ${iteration + 1}: every sample had an invalid reward (reward source "${c.reward.name}")`,
      );
    }
    if (ref) {
      shaped = shaped.map((s, r) => s - ref![rollout.samples[r].promptIndex]);
    } else if (c.baseline === 'normalize') {
      for (const s of shaped) {
        const st = this.#norm;
        st.count++;
        const d = s - st.mean;
        st.mean += d / st.count;
        st.m2 += d * (s - st.mean);
      }
      const sd = Math.sqrt(this.#norm.m2 / Math.max(1, this.#norm.count - 1)) || 1;
      shaped = shaped.map((s) => (s - this.#norm.mean) / sd);
    }
    const sb = sequenceBatch(rollout.samples, tok.padId);
    let oldLogp = scatterResponses(
      rollout.samples.map((s) => s.logprobs),
      sb,
    );
    // a model's log-probs of the rollout's tokens at the sampling temperature, timed as `phase`;
    // data-parallel: each rank forwards its share of the rows, then every rank holds them all
    const rolloutLogprobs = (model: Model, phase: string): Promise<Float32Array> =>
      timed(phase, () =>
        gatherRows(this.group, sb.batch, sb.seqLen, async (r0, r1) => {
          const f = await forwardRows(c, model, sb, rollout.samples, r0, r1, {
            temperature: this.#forwardTemperature,
            saveForBackward: false,
          });
          return f.logprobs;
        }),
      );
    // the policy's tokens: environment tokens of multi-turn episodes take no part in losses, KL or GAE
    const batchMask = policyTokenMask(sb, rollout.samples);
    let isWeights: Float32Array | undefined;
    if (c.truncatedIS !== undefined) {
      // the rollout's log-probs are μ's; π_old is the policy's own, at the sampling temperature
      const behaviour = oldLogp;
      oldLogp = await rolloutLogprobs(c.policy, 'old');
      isWeights = Float32Array.from(
        truncatedImportanceWeights({
          oldLogp,
          behaviourLogp: behaviour,
          mask: batchMask,
          cap: c.truncatedIS,
        }),
      );
    }
    let refLogp: Float32Array | undefined, oldValues: Float32Array | undefined;
    if (this.#reference) refLogp = await rolloutLogprobs(this.#reference, 'reference');
    if (c.critic)
      oldValues = await timed('critic', () =>
        gatherRows(this.group, sb.batch, sb.seqLen, async (r0, r1) => {
          const f = await forwardRows(
            c,
            c.critic!,
            sb,
            rollout.samples,
            r0,
            r1,
            { values: true, saveForBackward: false },
            false,
          );
          return f.values!;
        }),
      );

    const B = sb.batch;
    const klTokens = refLogp
      ? pgNative.klPerToken({ logp: oldLogp, refLogp, mask: batchMask, estimator: c.kl.estimator }).kl
      : undefined;
    const klPerResponse: number[] = [];
    const perRowAdv: Float64Array[] = [],
      perRowRet: Float64Array[] = [];
    let seqAdv: Float64Array | undefined;
    if (
      c.advantage !== 'gae' &&
      !c.dynamicSampling &&
      zeroVariance(shaped, c.advantage === 'reinforce++' ? shaped.length : n)
    )
      this.emit('log', {
        stage: c.stage,
        message: `warning: iteration ${iteration + 1}: every ${c.advantage === 'reinforce++' ? 'reward of the batch is' : "group's rewards are"} equal (zero variance): the policy gradient is 0`,
      });
    if (c.advantage === 'grpo') seqAdv = grpoAdvantages(shaped, n);
    else if (c.advantage === 'dr-grpo') seqAdv = grpoAdvantages(shaped, n, { scale: false });
    else if (c.advantage === 'rloo') seqAdv = rlooAdvantages(shaped, n);
    else if (c.advantage === 'reinforce++') seqAdv = reinforcePlusPlusAdvantages(shaped);
    for (let b = 0; b < B; b++) {
      const L = sb.responseLength[b];
      const lm = rollout.samples[b].lossMask;
      const mask = lm ? Float64Array.from(lm) : new Float64Array(L).fill(1);
      const kl = klTokens ? responseSlice(klTokens, sb, b) : new Float64Array(L);
      klPerResponse.push(kl.reduce((a, x) => a + x, 0));
      if (c.advantage === 'gae') {
        const rewards = sampleTokenRewards(
          rollout.samples[b],
          shaped[b],
          kl,
          c.kl.mode === 'reward' ? this.#klCoef : 0,
          mask,
        );
        const g = gae({ rewards, values: responseSlice(oldValues!, sb, b), mask, gamma: c.gamma, lambda: c.lambda });
        perRowAdv.push(g.advantages);
        perRowRet.push(g.returns);
      } else {
        perRowAdv.push(new Float64Array(L).fill(seqAdv![b]));
      }
    }
    // whitened in float64 over every response token: finite rewards of any size give finite advantages
    const advantages = scatterResponses(c.whitenAdvantages ? whitenRows(perRowAdv, batchMask, sb) : perRowAdv, sb);
    const dyn = c.dynamicSampling
      ? { dynamicSamplingRounds: round.rounds, discardedGroups: round.discarded }
      : undefined;
    return {
      rollout,
      sb,
      scores,
      shaped,
      oldLogp,
      refLogp,
      oldValues,
      advantages,
      returns: perRowRet.length ? scatterResponses(perRowRet, sb) : undefined,
      klPerResponse,
      droppedSamples: drop.size,
      dyn,
      isWeights,
    };
  }

  /**
   * What the update needs of this loop: its updates go through the loop's guard
   * (TrainingRun.guardedUpdate), a skipped one recorded as the iteration's step (a 'skip' event, a
   * warning, a metrics line; maxConsecutiveSkips skipped updates in a row, policy and critic
   * updates each counting, stop the run with an error).
   */
  #updateHost(run: TrainingRun): PolicyUpdateHost {
    return {
      c: this.c,
      group: this.group,
      optimizer: this.optimizer,
      criticOptimizer: this.criticOptimizer,
      klCoef: this.#klCoef,
      forwardTemperature: this.#forwardTemperature,
      overlap: this.#overlap,
      // the loss is known here only as finite (on every rank) or not: 0 or NaN to the guard
      update: (which, iteration, lossFinite) =>
        run.guardedUpdate(
          iteration,
          lossFinite ? 0 : NaN,
          which === 'policy' ? this.optimizer : this.criticOptimizer!,
          which === 'policy' ? this.c.policy : this.c.critic!,
          { label: which, keepSkipCount: true },
        ),
      resetSkips: () => {
        run.consecutiveSkips = 0;
      },
    };
  }

  /**
   * Whether `model`'s updates overlap the gradient all-reduce with backward (options.overlapAllReduce,
   * default on, where the model allows); a 'log' event says when data parallelism falls back to the
   * plain all-reduce after backward, and why.
   */
  #overlapFor(which: 'policy' | 'critic', model: Model | undefined): boolean {
    if (!model || this.group.size === 1) return false;
    const why = overlapDeclined(this.group, model, this.c.overlapAllReduce !== false);
    if (why)
      this.emit('log', {
        stage: this.c.stage,
        message: `${which}: gradient all-reduce after backward, not overlapped (${why})`,
      });
    return !why;
  }

  async #ptxExamples(p: NonNullable<PolicyGradientConfig['ptx']>): Promise<TokenizedExample[]> {
    const records = typeof p.data === 'string' ? await loadSftFile(p.data) : toSftRecords(p.data, 'options.ptx.data');
    return records.map((r) => tokenizeSft(this.c.tokenizer, r, { maxLength: p.seqLen }));
  }
}
