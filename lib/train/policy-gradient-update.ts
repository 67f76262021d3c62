/**
 * The update of one policy-gradient iteration (lib/train/policy-gradient.ts): epochs × minibatches
 * of the clipped policy loss (+ entropy bonus, + KL loss, + λ·NTP on SFT data) and the critic's
 * clipped value loss, one AdamW step each, guarded against non-finite losses and gradients;
 * data-parallel ranks forward their share of each minibatch's rows and sum gradients. Forwards go
 * through forwardRows (packed with packTokens); every loss is computed in the padded layout.
 */
import type { AdamW } from '../engine/adamw.js';
import type { Model } from '../engine/model.js';
import { padBatch, permutation, sliceBatch, type TokenizedExample } from '../data/index.js';
import { ntpLoss } from '../losses/index.js';
import { pgNative } from '../engine/pg.js';
import { policyTokenMask } from '../rollout/environment.js';
import {
  responseSlice,
  scatterResponses,
  sequenceBatch,
  type Sequence,
  type SequenceBatch,
} from '../rollout/sequences.js';
import { DEFAULT_BUCKET_BYTES, shardRange, type ProcessGroup } from '../distributed/index.js';
import { batchRows, gradientSum, reduceStep } from './loop.js';
import { forwardSequences, type SequenceForward, type SequenceForwardOptions } from './packed-rows.js';
import { allFinite } from './run.js';
import type { IterationData, PolicyGradientConfig } from './policy-gradient-config.js';
import { maskRows } from './policy-gradient-stats.js';

/** What the update needs of its loop. */
export interface PolicyUpdateHost {
  readonly c: PolicyGradientConfig;
  readonly group: ProcessGroup;
  readonly optimizer: AdamW;
  readonly criticOptimizer?: AdamW;
  /** the current KL coefficient */
  readonly klCoef: number;
  /** the temperature of every forward on sampled responses */
  readonly forwardTemperature: number;
  /** whether each model's gradient all-reduce overlaps its update's last backward (overlapUnsupported) */
  readonly overlap: { policy: boolean; critic: boolean };
  /**
   * The loop's guarded update (TrainingRun.guardedUpdate) of `which`: AdamW unless `lossFinite` is
   * false (on any rank) or the gradients are non-finite, gradients zeroed, a skip recorded (may
   * throw: maxConsecutiveSkips); the count of skips in a row is left to resetSkips.
   */
  update(
    which: 'policy' | 'critic',
    iteration: number,
    lossFinite: boolean,
  ): Promise<{ skipped: boolean; gradNorm: number }>;
  /** an update was applied after skipped ones: the count of skips in a row restarts */
  resetSkips(): void;
}

/** One iteration's update (see the module comment); the means of its metrics over minibatches. */
export async function policyUpdate(
  h: PolicyUpdateHost,
  d: IterationData,
  iteration: number,
  ptx: TokenizedExample[] | undefined,
  timed: <T>(p: string, f: () => Promise<T>) => Promise<T>,
): Promise<Record<string, number>> {
  const c = h.c,
    B = d.sb.batch,
    g = h.group,
    dp = g.size > 1;
  // the buckets of both gradient-sum paths (the same on every rank: see gradientSum)
  const bucket = { bucketBytes: c.allReduceBucketBytes ?? DEFAULT_BUCKET_BYTES };
  const acc: Record<string, number[]> = {};
  const add = (k: string, v: number) => (acc[k] ??= []).push(v);
  const tokensIn = (m: Float32Array) => m.reduce((s, x) => s + (x > 0 ? 1 : 0), 0);
  const times = (v: number | undefined, n: number) => (n ? (v ?? 0) * n : 0);
  let maskedMinibatches = 0;
  const policyWarm = iteration >= c.criticWarmupIterations;
  for (let e = 0; e < c.epochs; e++) {
    const order = permutation(B, c.seed, iteration * c.epochs + e);
    for (let m0 = 0, mb = 0; m0 < B; m0 += c.miniBatchSize, mb++) {
      let applied = 0,
        skips = 0;
      const rows = Array.from(order.subarray(m0, m0 + c.miniBatchSize));
      const seqs = rows.map((r) => d.rollout.samples[r]);
      const sb = sequenceBatch(seqs, c.tokenizer.padId);
      const pick = (x: Float32Array | undefined) =>
        x
          ? scatterResponses(
              rows.map((r) => responseSlice(x, d.sb, r)),
              sb,
            )
          : undefined;
      const mask = policyTokenMask(
        sb,
        rows.map((r) => d.rollout.samples[r]),
      );
      // maskTruncated: rows cut by the length limit take no part in the policy loss
      const policyMask = c.maskTruncated
        ? maskRows(
            mask,
            sb,
            rows.map((r) => d.rollout.samples[r].finishReason === 'length'),
          )
        : mask;
      // data parallelism: this rank forwards rows [r0, r1) of the minibatch (same layout); the
      // aggregation weights and token counts are the whole minibatch's, gradients summed over ranks
      const [r0, r1] = shardRange(sb.batch, g.rank, g.size),
        T = sb.seqLen;
      const mine = <A extends Float32Array | Float64Array>(x: A): A => (dp ? (x.subarray(r0 * T, r1 * T) as A) : x);
      if (policyWarm && !policyMask.some((x) => x > 0))
        maskedMinibatches++; // every row truncated: no policy step
      else if (policyWarm) {
        // diagnostics of this rank's rows (token means), and its policy and PTX target tokens
        const stats: Record<string, number> = {};
        let tokens = 0,
          ptxTokens = 0;
        // the last backward of the update: PTX's when it runs, else the policy loss's
        const ptxOn = !!ptx && c.ptx!.coef > 0;
        const sum = gradientSum(g, c.policy, dp && h.overlap.policy, c.allReduceBucketBytes);
        // the policy loss on this rank's rows of the minibatch (none: nothing to do)
        const policyRows = async (): Promise<boolean> => {
          const adv = mine(pick(d.advantages)!);
          if (!adv.every(Number.isFinite)) return false; // e.g. a reward that overflows fp32
          const f = await forwardRows(c, c.policy, sb, seqs, r0, r1, {
            temperature: h.forwardTemperature,
            entropy: true,
          }); // entropy is always logged
          if (!f.logprobs.every(Number.isFinite)) return false;
          const pMask = mine(policyMask);
          tokens = tokensIn(pMask);
          const oldLogp = mine(pick(d.oldLogp)!);
          if (e === 0 && mb === 0) {
            // before any update the policy is π_old: a non-zero value means the trainer's π is not the sampler's
            let diff = 0;
            for (let i = 0; i < oldLogp.length; i++)
              if (pMask[i] > 0) diff = Math.max(diff, Math.abs(f.logprobs[i] - oldLogp[i]));
            stats.rolloutLogprobDiffMax = diff;
          }
          // one sequence per row: the aggregation weights of the policy loss, entropy bonus and KL loss
          const weights = mine(
            pgNative.aggregationWeights({
              mask: policyMask,
              batch: sb.batch,
              seqLen: T,
              aggregation: c.aggregation,
              lengthNormalizer: c.sampling.maxNewTokens,
            }),
          );
          if (d.isWeights) {
            const isw = mine(pick(d.isWeights)!);
            for (let i = 0; i < weights.length; i++) weights[i] *= isw[i];
          }
          const pl =
            c.lossMode === 'gspo'
              ? pgNative.gspoPolicyLoss({
                  logp: f.logprobs,
                  oldLogp,
                  advantages: adv,
                  mask: pMask,
                  weights,
                  batch: r1 - r0,
                  seqLen: T,
                  clipEps: c.clipEps,
                  clipEpsHigh: c.clipEpsHigh,
                })
              : pgNative.ppoPolicyLoss({
                  logp: f.logprobs,
                  oldLogp,
                  advantages: adv,
                  mask: pMask,
                  weights,
                  clipEps: c.clipEps,
                  clipEpsHigh: c.clipEpsHigh,
                  dualClip: c.dualClip,
                });
          const dLogp = pl.dLogp;
          let loss = pl.loss;
          const eb = pgNative.entropyBonus({ entropy: f.entropy!, mask: pMask, weights, coef: c.entropyCoef });
          loss += eb.loss;
          if (c.kl.mode === 'loss' && h.klCoef > 0 && d.refLogp) {
            const kl = pgNative.klLoss({
              logp: f.logprobs,
              refLogp: mine(pick(d.refLogp)!),
              mask: pMask,
              weights,
              coef: h.klCoef,
              estimator: c.kl.estimator,
            });
            loss += kl.loss;
            for (let i = 0; i < dLogp.length; i++) dLogp[i] += kl.dLogp[i];
          }
          stats.policyLoss = pl.loss;
          stats.clipFraction = pl.clipFraction;
          stats.approxKl = pl.approxKl;
          stats.entropy = eb.meanEntropy;
          if (!allFinite(loss)) return false;
          await f.backward(
            c.entropyCoef > 0 ? { dLogprobs: dLogp, dEntropy: eb.dEntropy } : { dLogprobs: dLogp },
            ptxOn ? undefined : sum.last,
          );
          return true;
        };
        // λ·NTP on this rank's share of the minibatch's PTX batch
        const ptxRows = async (ex: TokenizedExample[]): Promise<boolean> => {
          const full = padBatch(ptxBatch(c, ex, iteration, e, mb), { padId: c.tokenizer.padId });
          const batch = dp ? sliceBatch(full, ...shardRange(full.batch, g.rank, g.size)) : full;
          if (dp && !batch.numTargets) return true; // no PTX target in this rank's share
          const pf = await c.policy.forward(batchRows(batch, 0, batch.batch));
          const ptxMask = batch.targets.map((t) => (t >= 0 ? 1 : 0));
          if (!pf.logprobs.every(Number.isFinite)) return false;
          const nl = ntpLoss({ logp: pf.logprobs, mask: ptxMask });
          stats.ptxLoss = nl.loss;
          ptxTokens = batch.numTargets;
          if (!allFinite(nl.loss)) return false;
          // the NTP loss is a mean over this rank's targets; the minibatch's is over all of them
          const scale = dp ? (c.ptx!.coef * batch.numTargets) / full.numTargets : c.ptx!.coef;
          const grads = { dLogprobs: Float32Array.from(nl.dLogp, (x) => x * scale) };
          await (sum.last ? sum.last(grads) : c.policy.backward(grads));
          return true;
        };
        const ok = await timed(
          'policy',
          async () => (r1 === r0 || (await policyRows())) && (!ptxOn || (await ptxRows(ptx!))),
        );
        let apply = ok;
        if (dp) {
          // timed with the policy's backward: the gradient sum is there when overlapped
          const s = await timed('policy', () =>
            reduceStep(
              g,
              sum.reduced ? undefined : c.policy,
              {
                bad: ok ? 0 : 1,
                tokens,
                policyLoss: stats.policyLoss ?? 0, // a sum under the minibatch's weights already
                clipFraction: times(stats.clipFraction, tokens),
                approxKl: times(stats.approxKl, tokens),
                entropy: times(stats.entropy, tokens),
                ...(ptx && c.ptx!.coef > 0 ? { ptxLoss: times(stats.ptxLoss, ptxTokens), ptxTokens } : {}),
              },
              bucket,
            ),
          );
          apply = s.bad === 0;
          if (e === 0 && mb === 0)
            add('rolloutLogprobDiffMax', g.allReduceMax(Float32Array.of(stats.rolloutLogprobDiffMax ?? 0))[0]);
          if (apply) {
            add('policyLoss', s.policyLoss);
            for (const k of ['clipFraction', 'approxKl', 'entropy']) add(k, s[k] / s.tokens);
            if (s.ptxTokens) add('ptxLoss', s.ptxLoss / s.ptxTokens);
          }
        } else for (const [k, v] of Object.entries(stats)) add(k, v);
        const r = await timed('optimizer', () => h.update('policy', iteration, apply));
        if (apply) add('gradNorm', r.gradNorm);
        if (r.skipped) skips++;
        else applied++;
      }
      if (c.critic) {
        const stats: Record<string, number> = {};
        let tokens = 0;
        const sum = gradientSum(g, c.critic, dp && h.overlap.critic, c.allReduceBucketBytes);
        const ok = await timed('critic', async () => {
          if (r1 === r0) return true;
          const returns = mine(pick(d.returns)!);
          if (!returns.every(Number.isFinite)) return false;
          const f = await forwardRows(c, c.critic!, sb, seqs, r0, r1, { values: true }, false);
          if (!f.values!.every(Number.isFinite)) return false;
          const cMask = mine(mask);
          const vl = pgNative.ppoValueLoss({
            values: f.values!,
            oldValues: mine(pick(d.oldValues)!),
            returns,
            mask: cMask,
            clipEps: c.valueClipEps,
          });
          stats.valueLoss = vl.loss;
          stats.valueClipFraction = vl.clipFraction;
          if (!allFinite(vl.loss)) return false;
          tokens = tokensIn(cMask);
          // a token mean over this rank's tokens; the minibatch's is over all of its tokens
          const share = tokens / tokensIn(mask);
          await f.backward({ dValues: dp ? vl.dValues.map((x) => x * share) : vl.dValues }, sum.last);
          return true;
        });
        let apply = ok;
        if (dp) {
          const s = await timed('critic', () =>
            reduceStep(
              g,
              sum.reduced ? undefined : c.critic!,
              {
                bad: ok ? 0 : 1,
                tokens,
                valueLoss: times(stats.valueLoss, tokens),
                valueClipFraction: times(stats.valueClipFraction, tokens),
              },
              bucket,
            ),
          );
          apply = s.bad === 0;
          if (apply) for (const k of ['valueLoss', 'valueClipFraction']) add(k, s[k] / s.tokens);
        } else for (const [k, v] of Object.entries(stats)) add(k, v);
        const r = await timed('optimizer', () => h.update('critic', iteration, apply));
        if (apply) add('criticGradNorm', r.gradNorm);
        if (r.skipped) skips++;
        else applied++;
      }
      // a minibatch whose every update was applied ends a run of skipped ones
      if (applied > 0 && skips === 0) h.resetSkips();
    }
  }
  const means = Object.fromEntries(Object.entries(acc).map(([k, v]) => [k, v.reduce((a, b) => a + b, 0) / v.length]));
  return c.maskTruncated ? { ...means, maskedMinibatches } : means;
}

/** Rows [r0, r1) of the padded batch `sb` of `seqs` through `model`, packed with options.packTokens (lib/train/packed-rows.ts). */
export function forwardRows(
  c: PolicyGradientConfig,
  model: Model,
  sb: SequenceBatch,
  seqs: readonly Sequence[],
  r0: number,
  r1: number,
  forward: SequenceForwardOptions,
  targets = true,
): Promise<SequenceForward> {
  return forwardSequences(model, sb, seqs, r0, r1, {
    packTokens: c.packTokens,
    padId: c.tokenizer.padId,
    targets,
    forward,
  });
}

/** The PTX micro-batch for (iteration, epoch, minibatch): a deterministic walk over the SFT set. */
export function ptxBatch(
  c: PolicyGradientConfig,
  ex: TokenizedExample[],
  iteration: number,
  epoch: number,
  mb: number,
): TokenizedExample[] {
  const k = c.ptx!.batchSize,
    perIt = c.epochs * Math.ceil((c.promptsPerIteration * c.samplesPerPrompt) / c.miniBatchSize);
  const start =
    (iteration * perIt + epoch * Math.ceil((c.promptsPerIteration * c.samplesPerPrompt) / c.miniBatchSize) + mb) * k;
  return Array.from({ length: k }, (_, j) => {
    const pos = start + j;
    return ex[permutation(ex.length, c.seed + 1, Math.floor(pos / ex.length))[pos % ex.length]];
  });
}
