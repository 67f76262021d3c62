/**
 * The sampling rounds of the policy-gradient loop (lib/train/policy-gradient.ts): which prompts an
 * iteration takes, one round of generate + score (with onInvalidReward, the reference baseline's
 * y_ref scores, reward clipping and the overlong penalty), DAPO dynamic sampling over several
 * rounds, and ChatGLM-RLHF's prompt filter. Rows of prompt p are p·n … p·n + n − 1; every round
 * draws from its own Philox streams, so a run is a function of (weights, prompts, seed) alone.
 */
import type { Model } from '../engine/model.js';
import { RlhfError, ErrorCode } from '../errors.js';
import { permutation, type PromptRecord } from '../data/index.js';
import { filterPromptsByVariance, varianceQuantile } from '../losses/index.js';
import { overlongPenalty } from '../rewards/overlong.js';
import { checkScores } from '../rewards/types.js';
import { multiTurnRollout, type EpisodeSample } from '../rollout/environment.js';
import { generateRollout, type Rollout } from '../rollout/generate.js';
import { allGatherJson, shardRange, type ProcessGroup } from '../distributed/index.js';
import type { AdvantageEstimator, PolicyGradientConfig } from './policy-gradient-config.js';
import type { TrainingRun } from './run.js';

/** estimators whose baseline is the group's other samples (a group is dropped or kept whole) */
const GROUP_BASELINES = new Set<AdvantageEstimator>(['grpo', 'dr-grpo', 'rloo']);

const STREAM_REFERENCE = 2 ** 40; // Philox streams for y_ref samples, apart from rollout streams

type Timed = <T>(phase: string, f: () => Promise<T>) => Promise<T>;

/** One iteration's sampled, scored rows (dropped ones removed) and what the rounds saw. */
export interface SampledRound {
  rollout: Rollout;
  /** dataset index of each rollout prompt */
  indices: number[];
  /** raw rewards per row */
  scores: number[];
  /** rewards after clipping and the overlong penalty */
  shaped: number[];
  /** the reference baseline r(x, y_ref) per rollout prompt (baseline 'reference') */
  ref?: number[];
  /** samples dropped for an invalid reward */
  dropped: number;
  rounds: number;
  /** dynamic sampling: zero-variance groups discarded */
  discarded: number;
  /** mean raw reward of everything sampled (dynamic sampling) */
  seenRewardMean: number;
}

export class RolloutSampler {
  /** cached reference-baseline scores r(x, y_ref) by dataset prompt index (checkpoint state) */
  refScores = new Map<number, number>();
  /** the frozen reference that samples y_ref */
  reference?: Model;
  /** the model the rounds sample from (asyncRollouts' copy of the policy); default rolloutPolicy, else the policy */
  rolloutModel?: Model;
  /** asyncRollouts: rounds read reference-baseline scores from the cache only (RoundSource fills it
   * before a round starts, while the reference is idle); a prompt without one is dropped */
  cachedReferenceOnly = false;

  /** `group`: data-parallel ranks; each samples, scores and baselines its share of a round's prompts */
  constructor(
    private readonly c: PolicyGradientConfig,
    private readonly group: ProcessGroup,
    private readonly log: (message: string) => void,
  ) {}

  /** true with PPO's reference baseline (r(x, y) − r(x, y_ref)) */
  get referenceBaseline(): boolean {
    return this.c.baseline === 'reference';
  }

  promptIndices(pool: number[], iteration: number): number[] {
    const P = this.c.promptsPerIteration,
      n = pool.length;
    return Array.from({ length: P }, (_, j) => {
      const pos = iteration * P + j;
      return pool[permutation(n, this.c.seed, Math.floor(pos / n))[pos % n]];
    });
  }

  /** Samples n responses per prompt: single-turn (generateRollout), or episodes with options.environment. */
  rollout(
    policy: Model,
    prompts: PromptRecord[],
    n: number,
    streams: { streamBase: number } | { streams: number[] },
  ): Promise<Rollout> {
    const c = this.c;
    const common = { policy, tokenizer: c.tokenizer, prompts, samplesPerPrompt: n, sampling: c.sampling, seed: c.seed };
    return c.environment
      ? multiTurnRollout({ ...common, ...streams, environment: c.environment })
      : generateRollout({ ...common, ...streams });
  }

  /** The reward source's score of each sample (the last assistant turn for episodes) plus its environment reward. */
  async score(rollout: Rollout): Promise<number[]> {
    const requests = rollout.samples.map((s) => ({
      prompt: rollout.prompts[s.promptIndex].prompt,
      response: s.text,
      promptIds: s.promptIds,
      responseIds: s.responseIds,
      record: rollout.prompts[s.promptIndex],
    }));
    const scores = checkScores(this.c.reward, await this.c.reward.score(requests), requests.length, {
      allowNonFinite: true,
    });
    return scores.map((x, r) => x + (rollout.samples[r].envReward ?? 0));
  }

  /**
   * Applies onInvalidReward to scores of rows whose (dataset prompt index, sample index) `where`
   * gives: 'error' throws on the first non-finite score; 'skip' warns and returns the rows to drop.
   */
  invalidRewards(
    scores: number[],
    where: (r: number) => { prompt: number; sample: number },
    what: string,
  ): Set<number> {
    const bad = new Set<number>();
    scores.forEach((s, r) => {
      if (Number.isFinite(s)) return;
      const w = where(r);
      const name = `reward source "${this.c.reward.name}" returned ${s} for ${what} (prompt ${w.prompt}, sample ${w.sample})`;
      if (this.c.onInvalidReward === 'error')
        throw new RlhfError(
          ErrorCode.OUT_OF_RANGE,
          `${this.c.stage}: ${name}; onInvalidReward: 'skip' (--on-invalid-reward skip) drops such samples`,
        );
      this.log(`warning: ${name}: sample dropped`);
      bad.add(r);
    });
    return bad;
  }

  /** Reference-baseline scores r(x, y_ref) for prompts not seen before (one y_ref per prompt). */
  async referenceScores(prompts: PromptRecord[], indices: number[]): Promise<number[]> {
    const missing = [...new Set(indices.filter((i) => !this.refScores.has(i)))];
    if (missing.length > 0) {
      // one batch; y_ref of prompt i draws from stream STREAM_REFERENCE + i whatever else is in it
      const r = await this.rollout(
        this.reference!,
        missing.map((i) => prompts[i]),
        1,
        {
          streams: missing.map((i) => STREAM_REFERENCE + i),
        },
      );
      const scores = await this.score(r);
      this.invalidRewards(scores, (k) => ({ prompt: missing[k], sample: 0 }), 'the reference response y_ref');
      scores.forEach((s, k) => Number.isFinite(s) && this.refScores.set(missing[k], s)); // an invalid one is drawn again next time
    }
    return indices.map((i) => this.refScores.get(i) ?? NaN);
  }

  /** The iteration's rows: one round, or with dynamic sampling as many as it takes (at most maxRounds). */
  iterationRound(
    prompts: PromptRecord[],
    pool: number[],
    indices: number[],
    iteration: number,
    timed: Timed,
  ): Promise<SampledRound> {
    const c = this.c;
    return c.dynamicSampling
      ? this.dynamicSample(prompts, pool, indices, iteration, timed)
      : this.sampleRound(prompts, indices, iteration * c.promptsPerIteration * c.samplesPerPrompt, iteration, timed);
  }

  /**
   * One round of sampling: generate for the prompts `indices` (dataset indices) from streamBase,
   * score, apply onInvalidReward (and the reference baseline's scores for PPO), clip and add the
   * overlong penalty. Rows of dropped samples are gone from the returned rollout.
   */
  async sampleRound(
    prompts: PromptRecord[],
    indices: number[],
    streamBase: number,
    iteration: number,
    timed: Timed,
  ): Promise<SampledRound> {
    const c = this.c,
      n = c.samplesPerPrompt;
    // data parallelism: this rank samples, scores and baselines its share of the prompts (whole
    // groups) from the streams one process gives them; then every rank holds the whole round
    const [p0, p1] = shardRange(indices.length, this.group.rank, this.group.size);
    const mine = indices.slice(p0, p1);
    let rollout: Rollout = { prompts: [], samplesPerPrompt: n, samples: [] };
    if (mine.length)
      rollout = await timed('generate', () =>
        this.rollout(
          this.rolloutModel ?? c.rolloutPolicy ?? c.policy,
          mine.map((i) => prompts[i]),
          n,
          { streamBase: streamBase + p0 * n },
        ),
      );
    let scores = mine.length ? await timed('score', () => this.score(rollout)) : [];
    if (c.onInvalidReward === 'error')
      // before the baseline: a bad response score is the error reported (on the rank that sampled it)
      this.invalidRewards(
        scores,
        (r) => ({ prompt: mine[rollout.samples[r].promptIndex], sample: r % n }),
        'a response',
      );
    let ref: number[] | undefined;
    if (c.baseline === 'reference')
      ref = this.cachedReferenceOnly
        ? mine.map((i) => this.refScores.get(i) ?? NaN)
        : await timed('baseline', () => this.referenceScores(prompts, mine)); // y_ref sampled and scored
    if (this.group.size > 1) ({ rollout, scores, ref } = this.gatherRound(prompts, indices, p0, rollout, scores, ref));
    const where = (r: number) => ({ prompt: indices[rollout.samples[r].promptIndex], sample: r % n });
    const drop = this.invalidRewards(scores, where, 'a response');
    if (ref) rollout.samples.forEach((s, r) => Number.isFinite(ref![s.promptIndex]) || drop.add(r));
    if (drop.size) {
      // group baselines need every sample of a group: drop the group
      if (GROUP_BASELINES.has(c.advantage))
        for (const r of [...drop]) for (let j = 0; j < n; j++) drop.add(r - (r % n) + j);
      const keep = (_: unknown, r: number) => !drop.has(r);
      rollout = { ...rollout, samples: rollout.samples.filter(keep) };
      scores = scores.filter(keep);
    }
    let shaped = scores.slice();
    if (c.rewardClip !== undefined) shaped = shaped.map((s) => Math.max(-c.rewardClip!, Math.min(c.rewardClip!, s)));
    if (c.overlong)
      shaped = shaped.map((s, r) => s + overlongPenalty(rollout.samples[r].responseIds.length, c.overlong!));
    void iteration;
    return { rollout, indices, scores, shaped, ref, dropped: drop.size, rounds: 1, discarded: 0, seenRewardMean: 0 };
  }

  /** Data parallelism: every rank's share of a sampling round (prompts indices[p0…]), joined in prompt order. */
  private gatherRound(
    prompts: PromptRecord[],
    indices: number[],
    p0: number,
    rollout: Rollout,
    scores: number[],
    ref: number[] | undefined,
  ): { rollout: Rollout; scores: number[]; ref?: number[] } {
    const b64 = (x: ArrayBufferView) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64');
    const bytes = (x: string) => Uint8Array.from(Buffer.from(x, 'base64')).buffer; // a fresh, aligned buffer
    const parts = allGatherJson(this.group, {
      p0,
      samples: rollout.samples.map((s) => ({
        ...s,
        promptIds: b64(s.promptIds),
        responseIds: b64(s.responseIds),
        logprobs: b64(s.logprobs),
        lossMask: s.lossMask && b64(s.lossMask), // multi-turn episodes: environment tokens 0
        turnRewards: (s as EpisodeSample).turnRewards && b64((s as EpisodeSample).turnRewards!),
      })),
      // float64 bytes: NaN and ±Infinity scores (onInvalidReward) survive the trip
      scores: b64(Float64Array.from(scores)),
      ref: ref && b64(Float64Array.from(ref)),
    });
    const samples = parts.flatMap((p) =>
      p.samples.map((s) => ({
        ...s,
        promptIndex: s.promptIndex + p.p0,
        promptIds: new Int32Array(bytes(s.promptIds)),
        responseIds: new Int32Array(bytes(s.responseIds)),
        logprobs: new Float32Array(bytes(s.logprobs)),
        lossMask: s.lossMask === undefined ? undefined : new Uint8Array(bytes(s.lossMask)),
        turnRewards: s.turnRewards === undefined ? undefined : new Float64Array(bytes(s.turnRewards)),
      })),
    );
    const all = (key: 'scores' | 'ref') => parts.flatMap((p) => Array.from(new Float64Array(bytes(p[key]!))));
    const refAll = ref && all('ref');
    refAll?.forEach((x, k) => Number.isFinite(x) && this.refScores.set(indices[k], x)); // every rank's cache the same
    return {
      rollout: { prompts: indices.map((i) => prompts[i]), samplesPerPrompt: rollout.samplesPerPrompt, samples },
      scores: all('scores'),
      ref: refAll,
    };
  }

  /**
   * DAPO dynamic sampling (Yu et al. 2025, eq. 11: 0 < |{o_i | is_equivalent(a, o_i)}| < G): groups
   * whose rewards all agree carry no gradient under a group baseline, so they are dropped and more
   * prompts are sampled (fresh ones, beyond every regular iteration's) until promptsPerIteration
   * groups with varying rewards are in hand or maxRounds rounds are spent; extra groups are cut.
   */
  async dynamicSample(
    prompts: PromptRecord[],
    pool: number[],
    indices: number[],
    iteration: number,
    timed: Timed,
  ): Promise<SampledRound> {
    const c = this.c,
      n = c.samplesPerPrompt,
      P = c.promptsPerIteration,
      maxRounds = c.dynamicSampling!.maxRounds;
    const kept: Array<{ index: number; samples: Rollout['samples']; scores: number[]; shaped: number[] }> = [];
    let dropped = 0,
      rounds = 0,
      discarded = 0,
      seenSum = 0,
      seen = 0;
    for (let r = 0; r < maxRounds && kept.length < P; r++, rounds++) {
      const pos0 = r === 0 ? iteration * P : (c.iterations + iteration * (maxRounds - 1) + r - 1) * P; // disjoint prompt positions and streams
      const idx = r === 0 ? indices : this.promptIndices(pool, pos0 / P);
      const round = await this.sampleRound(prompts, idx, pos0 * n, iteration, timed);
      dropped += round.dropped;
      for (const x of round.scores) ((seenSum += x), seen++);
      for (let g = 0; g < round.rollout.samples.length; g += n) {
        const shaped = round.shaped.slice(g, g + n);
        if (shaped.every((x) => x === shaped[0])) {
          discarded++;
          continue;
        }
        if (kept.length < P)
          kept.push({
            index: idx[round.rollout.samples[g].promptIndex],
            samples: round.rollout.samples.slice(g, g + n),
            scores: round.scores.slice(g, g + n),
            shaped,
          });
      }
    }
    if (kept.length < P)
      this.log(
        `warning: iteration ${iteration + 1}: dynamic sampling found ${kept.length} of ${P} groups with varying rewards in ${rounds} rounds`,
      );
    const rollout: Rollout = {
      prompts: kept.map((k) => prompts[k.index]),
      samplesPerPrompt: n,
      samples: kept.flatMap((k, p) => k.samples.map((s) => ({ ...s, promptIndex: p }))),
    };
    return {
      rollout,
      indices: kept.map((k) => k.index),
      scores: kept.flatMap((k) => k.scores),
      shaped: kept.flatMap((k) => k.shaped),
      ref: undefined,
      dropped,
      rounds,
      discarded,
      seenRewardMean: seen ? seenSum / seen : 0,
    };
  }

  /** ChatGLM-RLHF prompt selection (docs/algorithms.md §2.3, property 19): drop prompts whose sampled scores barely vary. */
  async filterPrompts(
    prompts: PromptRecord[],
    f: { samples: number; quantile: number },
    run: TrainingRun,
  ): Promise<number[]> {
    const r = await this.rollout(this.c.policy, prompts, f.samples, { streamBase: 2 * STREAM_REFERENCE });
    const scores = await this.score(r);
    const bad = new Set(
      [
        ...this.invalidRewards(
          scores,
          (k) => ({ prompt: Math.floor(k / f.samples), sample: k % f.samples }),
          'a prompt-filter response',
        ),
      ].map((k) => Math.floor(k / f.samples)),
    );
    const valid = scores.map((s, k) => (bad.has(Math.floor(k / f.samples)) ? 0 : s)); // a prompt with an invalid score is not kept
    const variances = filterPromptsByVariance(valid, f.samples, 0).variances.filter((_, p) => !bad.has(p));
    if (!variances.length)
      throw new RlhfError(
        ErrorCode.OUT_OF_RANGE,
        `${this.c.stage}: the prompt filter got an invalid reward for every prompt`,
      );
    const tau = varianceQuantile(variances, f.quantile);
    const kept = filterPromptsByVariance(valid, f.samples, tau).kept.filter((p) => !bad.has(p));
    run.log(
      `prompt filter: kept ${kept.length} of ${prompts.length} prompts (score variance >= ${tau.toPrecision(3)}, the ${f.quantile} quantile over ${f.samples} samples each)`,
    );
    if (!kept.length) throw new RlhfError(ErrorCode.FORMAT, `${this.c.stage}: the prompt filter kept no prompt`);
    return kept;
  }
}

/**
 * The sampled rounds of successive iterations. On-policy (no copy): round k is sampled when it is
 * asked for. asyncRollouts (`async`): the rounds come from `copy`; when round k is handed out the
 * copy takes the policy's current weights (those before update k) and round k + 1 starts sampling
 * from them in the background while the caller runs update k. The first round of a run (or of a
 * resumed one) comes from the copy as it is: a fresh copy of the policy, or the one restored from
 * the checkpoint. Rounds are sampled in iteration order, one at a time, so a run does not depend
 * on timing. A round's error is reported when that round is asked for. The frozen reference is
 * busy in the update (its log-probs), so a round's reference-baseline scores (y_ref sampled by the
 * reference, scored) are computed before the round starts, in the foreground.
 */
export class RoundSource {
  #pending?: {
    iteration: number;
    done: Promise<{ round?: SampledRound; error?: unknown; time: Record<string, number> }>;
  };

  constructor(
    private readonly sampler: RolloutSampler,
    private readonly prompts: PromptRecord[],
    private readonly pool: number[],
    private readonly iterations: number,
    private readonly async?: { copy: Model; policy: Model },
  ) {
    if (async) {
      sampler.rolloutModel = async.copy;
      sampler.cachedReferenceOnly = true;
    }
  }

  /** Round `iteration` (iterations are asked for in order); its sampling time is added to `time` (seconds per phase). */
  async next(iteration: number, time: Record<string, number>): Promise<SampledRound> {
    if (!this.async) return this.#round(iteration, time);
    if (this.#pending?.iteration !== iteration) {
      await this.settle();
      await this.#start(iteration, time);
    }
    const r = await this.#pending!.done;
    this.#pending = undefined;
    for (const [k, v] of Object.entries(r.time)) time[k] = (time[k] ?? 0) + v;
    if (r.error !== undefined) throw r.error;
    if (iteration + 1 < this.iterations) {
      await this.async.copy.copyWeightsFrom(this.async.policy);
      await this.#start(iteration + 1, time);
    }
    return r.round!;
  }

  /** Waits for the round in flight, if any (a checkpoint then holds the reference scores it cached). */
  async settle(): Promise<void> {
    await this.#pending?.done;
  }

  /** Waits for the round in flight and drops it. */
  async close(): Promise<void> {
    await this.settle();
    this.#pending = undefined;
  }

  /** Starts round `iteration` in the background after its reference-baseline scores (timed into `now`). */
  async #start(iteration: number, now: Record<string, number>): Promise<void> {
    if (this.sampler.referenceBaseline) {
      const s = performance.now();
      await this.sampler.referenceScores(this.prompts, this.sampler.promptIndices(this.pool, iteration));
      now.baseline = (now.baseline ?? 0) + (performance.now() - s) / 1000;
    }
    const time: Record<string, number> = {};
    this.#pending = {
      iteration,
      done: this.#round(iteration, time).then(
        (round) => ({ round, time }),
        (error: unknown) => ({ error, time }),
      ),
    };
  }

  #round(iteration: number, time: Record<string, number>): Promise<SampledRound> {
    const timed: Timed = async (phase, f) => {
      const s = performance.now();
      try {
        return await f();
      } finally {
        time[phase] = (time[phase] ?? 0) + (performance.now() - s) / 1000;
      }
    };
    const indices = this.sampler.promptIndices(this.pool, iteration);
    return this.sampler.iterationRound(this.prompts, this.pool, indices, iteration, timed);
  }
}
