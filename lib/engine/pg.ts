/**
 * Policy-gradient kernels on the native engine (native/cpu/pg_losses.h): per-token KL, token
 * rewards, GAE, the PPO clipped policy / value losses, DPO / cDPO / IPO, EXO-pref and EXO-rw, each
 * with its gradient. Same semantics as the float64 references in lib/losses (kl.ts, gae.ts,
 * ppo.ts, preference.ts, exo.ts), which test/engine/pg.test.ts compares them with, except for the
 * shapes:
 *
 * - inputs are Float32Arrays, masks included (exact 0/1 floats); outputs are new Float32Arrays;
 *   scalars (losses, fractions) are numbers accumulated in float64;
 * - gae and tokenRewards take a whole (batch, seqLen) row-major batch (the references take one
 *   sequence); score is one number per row;
 * - aggregation: the losses take optional per-token `weights` (Float64Array) from aggregationWeights
 *   over a (batch, seqLen) layout whose rows are the sequences (the references take seqLengths);
 *   without weights they are token means.
 *
 * Every call is synchronous (microseconds to a millisecond). Arguments are validated here with
 * path-aware messages (`pgNative.gae: expected options.gamma to be a finite number >= 0 and <= 1,
 * received 2`); array contents other than masks are not checked: NaN or Infinity propagate.
 */
import { native, type NativePairInputs, type NativePairResult, type NativePg } from '../native.js';
import { options, rangeError, typeError } from '../validate.js';
import { AGGREGATIONS } from '../losses/common.js';

export type { NativePairResult as PgPairResult } from '../native.js';

type Reader = ReturnType<typeof options>;

/** The options of native kernel `K` (the validated call takes the same; its checks are below). */
type Options<K extends keyof NativePg> = Parameters<NativePg[K]>[0];

/** A 0/1 Float32Array mask of exactly n elements. */
function mask(fn: string, o: Reader, key: string, n: number): Float32Array {
  const m = o.f32(key, { exact: n });
  for (let i = 0; i < n; i++)
    if (m[i] !== 0 && m[i] !== 1) throw rangeError(fn, `options.${key}[${i}]`, '0 or 1', m[i]);
  return m;
}

/** batch, seqLen and n = batch·seqLen. */
function shape(o: Reader): { batch: number; seqLen: number; n: number } {
  const batch = o.int('batch', { min: 0 });
  const seqLen = o.int('seqLen', { min: 0 });
  return { batch, seqLen, n: batch * seqLen };
}

const PAIR_KEYS = ['policyChosen', 'policyRejected', 'refChosen', 'refRejected'] as const;

function pairs(o: Reader): NativePairInputs {
  const policyChosen = o.f32('policyChosen', { min: 1 });
  const n = policyChosen.length;
  return {
    policyChosen,
    policyRejected: o.f32('policyRejected', { exact: n }),
    refChosen: o.f32('refChosen', { exact: n }),
    refRejected: o.f32('refRejected', { exact: n }),
  };
}

/**
 * kl[t] and dLogp[t] = ∂kl[t]/∂logp[t] for d = logp − refLogp: k1 = d, k2 = d²/2,
 * k3 = e^(−d) − 1 + d (lib/losses/kl.ts klPerToken). Masked positions (mask optional) get 0.
 */
function klPerToken(opts: Options<'klPerToken'>) {
  const fn = 'pgNative.klPerToken';
  const o = options(fn, 'options', opts);
  o.known(['logp', 'refLogp', 'mask', 'estimator']);
  const logp = o.f32('logp');
  const refLogp = o.f32('refLogp', { exact: logp.length });
  const m = o.has('mask') ? mask(fn, o, 'mask', logp.length) : undefined;
  const estimator = o.oneOf('estimator', ['k1', 'k2', 'k3'] as const);
  return native().pg.klPerToken({ logp, refLogp, estimator, ...(m ? { mask: m } : {}) });
}

/**
 * Per-token rewards of a (batch, seqLen) batch: r = −klCoef·kl·m, plus the (optionally clamped)
 * score[b] on row b's last valid token (lib/losses/gae.ts tokenRewards, row by row).
 * @throws RangeError when a row has no valid token
 */
function tokenRewards(opts: Options<'tokenRewards'>) {
  const fn = 'pgNative.tokenRewards';
  const o = options(fn, 'options', opts);
  o.known(['score', 'kl', 'klCoef', 'mask', 'batch', 'seqLen', 'clipScore']);
  const { batch, seqLen, n } = shape(o);
  const score = o.f32('score', { exact: batch });
  const kl = o.f32('kl', { exact: n });
  const m = mask(fn, o, 'mask', n);
  for (let b = 0; b < batch; b++) {
    let any = false;
    for (let t = 0; t < seqLen && !any; t++) any = m[b * seqLen + t] === 1;
    if (!any) throw rangeError(fn, `options.mask row ${b}`, 'a row with at least one 1', 'no 1');
  }
  const klCoef = o.number('klCoef', { min: 0 });
  const clipScore = o.has('clipScore') ? o.number('clipScore', { gt: 0 }) : undefined;
  return native().pg.tokenRewards({
    score,
    kl,
    klCoef,
    mask: m,
    batch,
    seqLen,
    ...(clipScore !== undefined ? { clipScore } : {}),
  });
}

/**
 * GAE per row of a (batch, seqLen) batch, masked positions not being time steps (lib/losses/gae.ts
 * gae, row by row): advantages and returns = advantages + values, 0 where masked.
 */
function gae(opts: Options<'gae'>) {
  const fn = 'pgNative.gae';
  const o = options(fn, 'options', opts);
  o.known(['rewards', 'values', 'mask', 'batch', 'seqLen', 'gamma', 'lambda']);
  const { batch, seqLen, n } = shape(o);
  const rewards = o.f32('rewards', { exact: n });
  const values = o.f32('values', { exact: n });
  const m = mask(fn, o, 'mask', n);
  const gamma = o.number('gamma', { min: 0, max: 1 });
  const lambda = o.number('lambda', { min: 0, max: 1 });
  return native().pg.gae({ rewards, values, mask: m, batch, seqLen, gamma, lambda });
}

/**
 * Clipped (optionally dual-clipped) PPO policy loss, token mean, and ∂loss/∂logp (exactly 0 where
 * a clip is active); lib/losses/ppo.ts ppoPolicyLoss with aggregation 'token-mean'.
 * @param clipEps ε in (0, 1); clipEpsHigh > 0 (default ε); dualClip > 1 (default off)
 */
function ppoPolicyLoss(opts: Options<'ppoPolicyLoss'>) {
  const fn = 'pgNative.ppoPolicyLoss';
  const o = options(fn, 'options', opts);
  o.known(['logp', 'oldLogp', 'advantages', 'mask', 'weights', 'clipEps', 'clipEpsHigh', 'dualClip']);
  const inputs = policyInputs(fn, o, o.f32('logp').length);
  const dualClip = o.has('dualClip') ? o.number('dualClip', { gt: 1 }) : undefined;
  return native().pg.ppoPolicyLoss({ ...inputs, ...(dualClip !== undefined ? { dualClip } : {}) });
}

/**
 * The inputs both policy losses take: logp, oldLogp, advantages and the 0/1 mask of n elements,
 * optional weights, clipEps ε in (0, 1) and clipEpsHigh > 0 (default ε).
 */
function policyInputs(fn: string, o: Reader, n: number) {
  const logp = o.f32('logp', { exact: n });
  const oldLogp = o.f32('oldLogp', { exact: n });
  const advantages = o.f32('advantages', { exact: n });
  const m = mask(fn, o, 'mask', n);
  const w = weights(fn, o, n);
  const clipEps = o.number('clipEps', { gt: 0, lt: 1 });
  const clipEpsHigh = o.number('clipEpsHigh', { gt: 0 }, clipEps);
  return { logp, oldLogp, advantages, mask: m, clipEps, clipEpsHigh, ...(w ? { weights: w } : {}) };
}

/** Optional per-token weights: a Float64Array of n finite numbers >= 0. */
function weights(fn: string, o: Reader, n: number): Float64Array | undefined {
  if (!o.has('weights')) return undefined;
  const w = o.obj.weights;
  if (!(w instanceof Float64Array)) throw typeError(fn, 'options.weights', 'a Float64Array', w);
  if (w.length !== n) throw rangeError(fn, 'options.weights.length', `${n}`, w.length);
  for (let i = 0; i < n; i++)
    if (!(w[i] >= 0 && w[i] < Infinity)) throw rangeError(fn, `options.weights[${i}]`, 'a finite number >= 0', w[i]);
  return w;
}

/**
 * Aggregation weights w (loss = Σ w_t ℓ_t) of a (batch, seqLen) mask whose rows are the sequences:
 * token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm (÷ batch·lengthNormalizer;
 * Dr. GRPO). lib/losses/common.ts aggregationWeights is the reference.
 */
function aggregationWeights(opts: Options<'aggregationWeights'>): Float64Array {
  const fn = 'pgNative.aggregationWeights';
  const o = options(fn, 'options', opts);
  o.known(['mask', 'batch', 'seqLen', 'aggregation', 'lengthNormalizer']);
  const { batch, seqLen, n } = shape(o);
  const m = mask(fn, o, 'mask', n);
  const aggregation = o.oneOf('aggregation', AGGREGATIONS, 'token-mean');
  const lengthNormalizer = aggregation === 'seq-mean-token-sum-norm' ? o.number('lengthNormalizer', { gt: 0 }) : 1;
  return native().pg.aggregationWeights({ mask: m, batch, seqLen, aggregation, lengthNormalizer }).weights;
}

/**
 * GSPO: one clipped importance ratio per row s_b = exp(mean_t (logp − oldLogp)) (lib/losses/ppo.ts
 * gspoPolicyLoss; Zheng et al. 2025). weights default: seq-mean-token-mean.
 */
function gspoPolicyLoss(opts: Options<'gspoPolicyLoss'>) {
  const fn = 'pgNative.gspoPolicyLoss';
  const o = options(fn, 'options', opts);
  o.known(['logp', 'oldLogp', 'advantages', 'mask', 'weights', 'batch', 'seqLen', 'clipEps', 'clipEpsHigh']);
  const { batch, seqLen, n } = shape(o);
  return native().pg.gspoPolicyLoss({ ...policyInputs(fn, o, n), batch, seqLen });
}

/** Entropy bonus −coef Σ w_t H_t and ∂/∂H (lib/losses/ppo.ts entropyBonus); token mean without weights. */
function entropyBonus(opts: Options<'entropyBonus'>) {
  const fn = 'pgNative.entropyBonus';
  const o = options(fn, 'options', opts);
  o.known(['entropy', 'mask', 'weights', 'coef']);
  const entropy = o.f32('entropy');
  const m = mask(fn, o, 'mask', entropy.length);
  const w = weights(fn, o, entropy.length);
  return native().pg.entropyBonus({
    entropy,
    mask: m,
    coef: o.number('coef', { min: 0 }),
    ...(w ? { weights: w } : {}),
  });
}

/** KL as a loss term coef Σ w_t k(logp − refLogp) and ∂/∂logp (lib/losses/kl.ts klLoss). */
function klLoss(opts: Options<'klLoss'>) {
  const fn = 'pgNative.klLoss';
  const o = options(fn, 'options', opts);
  o.known(['logp', 'refLogp', 'mask', 'weights', 'estimator', 'coef']);
  const logp = o.f32('logp');
  const refLogp = o.f32('refLogp', { exact: logp.length });
  const m = mask(fn, o, 'mask', logp.length);
  const w = weights(fn, o, logp.length);
  const estimator = o.oneOf('estimator', ['k1', 'k2', 'k3'] as const);
  return native().pg.klLoss({
    logp,
    refLogp,
    mask: m,
    estimator,
    coef: o.number('coef', { min: 0 }),
    ...(w ? { weights: w } : {}),
  });
}

/**
 * Clipped value loss ½·max((V − G)², (V^c − G)²), token mean, and ∂loss/∂values (lib/losses/ppo.ts
 * ppoValueLoss with aggregation 'token-mean'). Omit clipEps for the plain ½(V − G)².
 */
function ppoValueLoss(opts: Options<'ppoValueLoss'>) {
  const fn = 'pgNative.ppoValueLoss';
  const o = options(fn, 'options', opts);
  o.known(['values', 'oldValues', 'returns', 'mask', 'clipEps']);
  const values = o.f32('values');
  const n = values.length;
  const oldValues = o.f32('oldValues', { exact: n });
  const returns = o.f32('returns', { exact: n });
  const m = mask(fn, o, 'mask', n);
  const clipEps = o.has('clipEps') ? o.number('clipEps', { gt: 0 }) : undefined;
  return native().pg.ppoValueLoss({
    values,
    oldValues,
    returns,
    mask: m,
    ...(clipEps !== undefined ? { clipEps } : {}),
  });
}

/**
 * DPO (labelSmoothing > 0: cDPO) or IPO over N >= 1 pairs of sequence log-probs, mean over pairs,
 * with ∂loss/∂policyChosen and ∂loss/∂policyRejected (lib/losses/preference.ts dpoLoss).
 */
function dpoLoss(
  opts: NativePairInputs & { beta: number; labelSmoothing?: number; variant?: 'dpo' | 'ipo' },
): NativePairResult {
  const fn = 'pgNative.dpoLoss';
  const o = options(fn, 'options', opts);
  o.known([...PAIR_KEYS, 'beta', 'labelSmoothing', 'variant']);
  const inputs = pairs(o);
  const beta = o.number('beta', { gt: 0 });
  const labelSmoothing = o.number('labelSmoothing', { min: 0, max: 0.5 }, 0);
  const variant = o.oneOf('variant', ['dpo', 'ipo'] as const, 'dpo');
  if (variant === 'ipo' && labelSmoothing !== 0)
    throw rangeError(fn, 'options.labelSmoothing', "0 with variant 'ipo'", labelSmoothing);
  return native().pg.dpoLoss({ ...inputs, beta, labelSmoothing, variant });
}

/**
 * EXO-pref over N >= 1 pairs ('trl' form: KL(Bern(σ(βz)) ‖ Bern(1 − ε)); 'official': + log(1 − ε)),
 * mean over pairs, with gradients and pChosen = σ(βz) (lib/losses/exo.ts exoPrefLoss).
 * @param epsilon ε in (0, 1), default 1e-3
 */
function exoPrefLoss(opts: NativePairInputs & { beta: number; epsilon?: number; form?: 'trl' | 'official' }) {
  const fn = 'pgNative.exoPrefLoss';
  const o = options(fn, 'options', opts);
  o.known([...PAIR_KEYS, 'beta', 'epsilon', 'form']);
  const inputs = pairs(o);
  const beta = o.number('beta', { gt: 0 });
  const epsilon = o.number('epsilon', { gt: 0, lt: 1 }, 1e-3);
  const form = o.oneOf('form', ['trl', 'official'] as const, 'trl');
  return native().pg.exoPrefLoss({ ...inputs, beta, epsilon, form });
}

/**
 * EXO-rw over groups of K = groupSize consecutive samples: mean over groups of KL(p ‖ q),
 * p = softmax(β_π (policy − ref)), q = softmax(rewards / β_r), with ∂loss/∂policy, p, q and the
 * per-group KL (lib/losses/exo.ts exoRwLoss).
 */
function exoRwLoss(opts: Options<'exoRwLoss'>) {
  const fn = 'pgNative.exoRwLoss';
  const o = options(fn, 'options', opts);
  o.known(['policy', 'ref', 'rewards', 'groupSize', 'betaPi', 'betaR']);
  const policy = o.f32('policy', { min: 1 });
  const n = policy.length;
  const ref = o.f32('ref', { exact: n });
  const rewards = o.f32('rewards', { exact: n });
  const groupSize = o.int('groupSize', { min: 2 });
  if (n % groupSize !== 0)
    throw rangeError(fn, 'options.policy.length', `a multiple of options.groupSize (${groupSize})`, n);
  const betaPi = o.number('betaPi', { gt: 0 });
  const betaR = o.number('betaR', { gt: 0 });
  return native().pg.exoRwLoss({ policy, ref, rewards, groupSize, betaPi, betaR });
}

/** The validated native policy-gradient kernels. */
export const pgNative = {
  klPerToken,
  tokenRewards,
  gae,
  aggregationWeights,
  ppoPolicyLoss,
  gspoPolicyLoss,
  entropyBonus,
  klLoss,
  ppoValueLoss,
  dpoLoss,
  exoPrefLoss,
  exoRwLoss,
} as const;
