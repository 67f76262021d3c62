/**
 * AdamW with decoupled weight decay, fused in one native pass over flat fp32 buffers
 * (native/cpu/adamw.cc; the update follows torch.optim.AdamW):
 *
 *   g = grad · min(1, maxGradNorm / (‖grad‖₂ + 1e-6))        (when maxGradNorm > 0)
 *   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps)
 *
 * computed as p − (lr·√(1−β2ᵗ)/(1−β1ᵗ)) · m / (√v + eps·√(1−β2ᵗ)): the same value with one
 * division per parameter instead of two.
 * A step whose gradients hold NaN or ±Inf is skipped — parameters and moments untouched, the step
 * counter not advanced — and reported as `{skipped: true}`. State (step and moments) can be saved
 * and restored exactly, so a resumed run continues bit for bit.
 */
import { withCallerStack, RlhfError, ErrorCode } from '../errors.js';
import { native, type AdamWSegment, type AdamWStepResult, type NativeAdamW, type NativeModel } from '../native.js';
import { checkFloat32Array, checkInt, checkNumber, checkObject, options, rangeError, typeError } from '../validate.js';
import { allGatherRanges, shardRange, type ProcessGroup } from '../distributed/index.js';

export interface AdamWOptions {
  /** learning rate, >= 0 (default 1e-3) */
  lr?: number;
  /** first-moment decay in [0, 1) (default 0.9) */
  beta1?: number;
  /** second-moment decay in [0, 1) (default 0.999) */
  beta2?: number;
  /** denominator guard, > 0 (default 1e-8) */
  eps?: number;
  /** decoupled weight decay, >= 0 (default 0) */
  weightDecay?: number;
  /** clip the global gradient norm to this value; 0 or Infinity: no clipping (default 0) */
  maxGradNorm?: number;
}

/** What an optimizer updates: two flat buffers of equal length, or anything exposing them natively. */
export interface FlatParameters {
  params: Float32Array;
  grads: Float32Array;
  /** weight-decay multipliers per run of parameters; must tile [0, params.length) */
  segments?: AdamWSegment[];
}

/** Objects (such as Model) that hand the optimizer their native parameter store. */
export interface OptimizerTarget {
  readonly optimizerTarget: NativeModel;
}

export interface AdamWState {
  step: number;
  m: Float32Array;
  v: Float32Array;
  options: Required<AdamWOptions>;
}

export type { AdamWStepResult };

const OPTION_KEYS = ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'maxGradNorm'] as const;

/** Validates AdamW options, filling defaults from `base`. Every value goes to native code as a
 * float32, so a finite value that overflows float32 (lr = 1e39) is refused here, by name. */
export function checkAdamWOptions(fn: string, value: unknown, base: Required<AdamWOptions>): Required<AdamWOptions> {
  const o = options(fn, 'options', value);
  o.known(OPTION_KEYS);
  return {
    lr: o.number('lr', { min: 0, float32: true }, base.lr),
    beta1: o.number('beta1', { min: 0, lt: 1 }, base.beta1),
    beta2: o.number('beta2', { min: 0, lt: 1 }, base.beta2),
    eps: o.number('eps', { gt: 0, float32: true }, base.eps),
    weightDecay: o.number('weightDecay', { min: 0, float32: true }, base.weightDecay),
    maxGradNorm: o.number('maxGradNorm', { min: 0, allowInfinity: true, float32: true }, base.maxGradNorm),
  };
}

export const ADAMW_DEFAULTS: Required<AdamWOptions> = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  maxGradNorm: 0,
};

function checkTarget(fn: string, target: unknown): NativeModel | FlatParameters {
  if (target && typeof target === 'object' && 'optimizerTarget' in target)
    return (target as OptimizerTarget).optimizerTarget;
  const t = checkObject(fn, 'target', target);
  const params = checkFloat32Array(fn, 'target.params', t.params);
  checkFloat32Array(fn, 'target.grads', t.grads, { exact: params.length });
  if (t.segments !== undefined) {
    if (!Array.isArray(t.segments)) throw typeError(fn, 'target.segments', 'an array', t.segments);
    let next = 0;
    t.segments.forEach((s: unknown, i: number) => {
      const path = `target.segments[${i}]`;
      const seg = checkObject(fn, path, s);
      const offset = checkInt(fn, `${path}.offset`, seg.offset, { min: 0 });
      const length = checkInt(fn, `${path}.length`, seg.length, { min: 0 });
      checkNumber(fn, `${path}.weightDecayScale`, seg.weightDecayScale, { min: 0 });
      if (offset !== next)
        throw rangeError(fn, `${path}.offset`, `${next} (segments must tile the parameters)`, offset);
      next = offset + length;
    });
    if (next !== params.length)
      throw new RangeError(
        `${fn}: expected target.segments to be runs covering all ${params.length} parameters, received runs ending at ${next}`,
      );
  }
  return t as unknown as FlatParameters;
}

/**
 * Where the optimizer state lives. `group` with more than one rank: ZeRO stage 1 — each rank keeps
 * AdamW moments for its contiguous share of the parameters only (memory ~1/size), step() updates that
 * share (the clipping norm still over every gradient, which each rank holds after the gradient
 * all-reduce) and then all-gathers the parameters, so every rank ends with the weights one
 * unsharded step gives, bit for bit. saveState()/loadState() keep the unsharded format (moments of
 * every parameter, so a checkpoint resumes at any number of ranks); with a group they are
 * collective: every rank must call them.
 */
export interface AdamWPlacement {
  group?: ProcessGroup;
}

export class AdamW {
  #native: NativeAdamW | undefined;
  #options: Required<AdamWOptions>;
  #target: FlatParameters | OptimizerTarget;
  #group: ProcessGroup | undefined;
  #offsets: number[] | undefined;

  constructor(target: FlatParameters | OptimizerTarget, opts: AdamWOptions = {}, placement: AdamWPlacement = {}) {
    const resolvedTarget = checkTarget('AdamW', target);
    this.#options = checkAdamWOptions('AdamW', opts, ADAMW_DEFAULTS);
    const group = placement.group;
    this.#target = target;
    this.#native = new (native().NativeAdamW)(
      resolvedTarget,
      this.#options,
      group && group.size > 1 ? { index: group.rank, count: group.size } : undefined,
    );
    if (group && group.size > 1) {
      this.#group = group;
      const n = this.#native.size;
      this.#offsets = Array.from({ length: group.size + 1 }, (_, r) =>
        r === group.size ? n : shardRange(n, r, group.size)[0],
      );
    }
  }

  /** True when the state is sharded over a group (ZeRO-1; see AdamWPlacement). */
  get sharded(): boolean {
    return this.#group !== undefined;
  }

  /** The parameter range [begin, end) whose moments this optimizer holds ([0, size) unless sharded). */
  get shard(): { begin: number; end: number } {
    const h = this.#handle('shard');
    return { begin: h.shardBegin, end: h.shardEnd };
  }

  /** Number of parameters updated. */
  get size(): number {
    return this.#handle('size').size;
  }

  get options(): Readonly<Required<AdamWOptions>> {
    return { ...this.#options };
  }

  /** The learning rate of the next step (schedules set it before each step). */
  get lr(): number {
    return this.#options.lr;
  }

  set lr(value: number) {
    this.setOptions({ lr: value });
  }

  setOptions(opts: AdamWOptions): void {
    const next = checkAdamWOptions('AdamW.setOptions', opts, this.#options);
    this.#handle('setOptions').setOptions(next);
    this.#options = next;
  }

  /** One fused update. Resolves with the pre-clipping gradient norm and whether it was skipped. */
  step(): Promise<AdamWStepResult> {
    const h = this.#handle('step');
    if (!this.#group) return withCallerStack(() => h.step());
    return withCallerStack(async () => {
      const r = await h.step();
      // every rank skips or steps together (the norm is over the same all-reduced gradients)
      if (!r.skipped) await this.#group!.allGatherParameters(this.#target, this.#offsets!);
      return r;
    });
  }

  /** A copy of the optimizer state (moments, step, options) for checkpoints. */
  async saveState(): Promise<AdamWState> {
    const h = this.#handle('saveState');
    const s = await withCallerStack(() => h.getState());
    if (this.#group)
      return {
        step: s.step,
        m: allGatherRanges(this.#group, s.m, this.#offsets!),
        v: allGatherRanges(this.#group, s.v, this.#offsets!),
        options: { ...this.#options },
      };
    return { step: s.step, m: s.m, v: s.v, options: { ...this.#options } };
  }

  /** Restores a state from saveState(); the next step continues exactly where it left off. */
  async loadState(state: AdamWState): Promise<void> {
    const h = this.#handle('loadState');
    const fn = 'AdamW.loadState';
    const s = checkObject(fn, 'state', state);
    const step = checkInt(fn, 'state.step', s.step, { min: 0 });
    const m = checkFloat32Array(fn, 'state.m', s.m, { exact: h.size });
    const v = checkFloat32Array(fn, 'state.v', s.v, { exact: h.size });
    const opts = s.options === undefined ? this.#options : checkAdamWOptions(fn, s.options, this.#options);
    const [begin, end] = [h.shardBegin, h.shardEnd];
    await withCallerStack(() => h.setState({ step, m: m.subarray(begin, end), v: v.subarray(begin, end) }));
    this.setOptions(opts);
  }

  /** Frees the moment buffers. Further calls throw ERR_RLHF_DISPOSED. */
  dispose(): void {
    this.#native?.dispose();
    this.#native = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #handle(call: string): NativeAdamW {
    if (!this.#native) throw new RlhfError(ErrorCode.DISPOSED, `AdamW.${call}: optimizer was disposed`);
    return this.#native;
  }
}

/**
 * The same update in plain TS float32 arithmetic (Math.fround after every operation, matching
 * the native kernel's operation order): the reference tests compare with. Mutates p, m, v.
 */
export function adamwStepReference(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  step: number,
  opts: Required<AdamWOptions>,
  segments?: AdamWSegment[],
): { gradNorm: number; skipped: boolean } {
  const f = Math.fround;
  let sumsq = 0;
  for (let i = 0; i < g.length; i++) sumsq += g[i] * g[i];
  const gradNorm = Math.sqrt(sumsq);
  if (!Number.isFinite(gradNorm)) return { gradNorm, skipped: true };
  let clip = 1;
  if (opts.maxGradNorm > 0 && Number.isFinite(opts.maxGradNorm)) {
    const c = Math.fround(opts.maxGradNorm) / (gradNorm + 1e-6);
    clip = c < 1 ? f(c) : 1;
  }
  const b1 = f(opts.beta1),
    b2 = f(opts.beta2);
  const omb1 = f(1 - b1),
    omb2 = f(1 - b2);
  const bc2Sqrt = Math.sqrt(1 - Math.pow(b2, step));
  const stepSize = f((f(opts.lr) * bc2Sqrt) / (1 - Math.pow(b1, step)));
  const epsScaled = f(f(opts.eps) * bc2Sqrt);
  const lrWd = f(f(opts.lr) * f(opts.weightDecay));
  const decayAt = new Float32Array(p.length).fill(f(1 - lrWd));
  for (const s of segments ?? []) decayAt.fill(f(1 - f(lrWd * f(s.weightDecayScale))), s.offset, s.offset + s.length);
  for (let i = 0; i < p.length; i++) {
    const gi = f(g[i] * clip);
    const mi = f(f(b1 * m[i]) + f(omb1 * gi));
    const vi = f(f(b2 * v[i]) + f(omb2 * f(gi * gi)));
    const denom = f(f(Math.sqrt(vi)) + epsScaled);
    p[i] = f(f(p[i] * decayAt[i]) - f(stepSize * f(mi / denom)));
    m[i] = mi;
    v[i] = vi;
  }
  return { gradNorm, skipped: false };
}
