/**
 * Statistics of `rlhf study`: the mean over seeds and prompts and its 95% confidence interval by a
 * two-level (hierarchical) percentile bootstrap — seeds are resampled with replacement, then the
 * prompts (or pairs) within each resampled seed — so the interval carries both the run-to-run
 * variation (initialisation, sampling) and the prompt-to-prompt variation. Seeded: the same input
 * and seed give the same interval.
 */
import { rng } from '../demo/task.js';
import { checkInt, checkNumber, typeError } from '../validate.js';

export interface Estimate {
  /** the statistic on the data as observed (for the default statistic: the mean of the per-seed means) */
  mean: number;
  /** percentile bootstrap interval at `level` (default 95%) */
  ci: [number, number];
}

export interface BootstrapOptions {
  /** bootstrap resamples (default 2000) */
  resamples?: number;
  /** default 0.95 */
  level?: number;
  /** resampling seed (default 0) */
  seed?: number;
}

/** Mean of the per-group means: every seed weighs the same however many prompts it has. */
export function meanOfMeans(groups: number[][]): number {
  let s = 0;
  for (const g of groups) s += g.reduce((a, b) => a + b, 0) / g.length;
  return s / groups.length;
}

/** The q-quantile (0..1) of sorted values, linear interpolation between order statistics. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const pos = (sorted.length - 1) * q,
    lo = Math.floor(pos),
    hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * Two-level percentile bootstrap of `statistic` over `groups` (groups[seed][item]).
 * `statistic` receives resampled groups (same shape) and returns a number; default meanOfMeans.
 * With one group only the items are resampled (the seed level cannot vary).
 */
export function hierarchicalBootstrap<T>(
  groups: T[][],
  statistic: (groups: T[][]) => number = meanOfMeans as unknown as (groups: T[][]) => number,
  opts: BootstrapOptions = {},
): Estimate {
  const fn = 'hierarchicalBootstrap';
  if (!Array.isArray(groups) || groups.length === 0 || groups.some((g) => !Array.isArray(g) || g.length === 0))
    throw typeError(fn, 'groups', 'a non-empty array of non-empty arrays', groups);
  const resamples = opts.resamples ?? 2000;
  checkInt(fn, 'options.resamples', resamples, { min: 10 });
  const level = opts.level ?? 0.95;
  checkNumber(fn, 'options.level', level, { gt: 0, lt: 1 });
  const r = rng(0x5eed ^ (opts.seed ?? 0));
  const pick = (n: number) => Math.min(n - 1, Math.floor(r() * n));
  const stats = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    const seeds = groups.length === 1 ? [groups[0]] : groups.map(() => groups[pick(groups.length)]);
    stats[b] = statistic(seeds.map((g) => g.map(() => g[pick(g.length)])));
  }
  stats.sort();
  const a = (1 - level) / 2;
  return { mean: statistic(groups), ci: [quantile(stats, a), quantile(stats, 1 - a)] };
}

/** Pearson correlation of two equal-length series (NaN when either is constant). */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = x.length;
  let mx = 0,
    my = 0;
  for (let i = 0; i < n; i++) ((mx += x[i]), (my += y[i]));
  ((mx /= n), (my /= n));
  let sxy = 0,
    sxx = 0,
    syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx,
      dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : NaN;
}

/** Least-squares slope of y on x (0 when x is constant). */
export function slope(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = x.length;
  let mx = 0,
    my = 0;
  for (let i = 0; i < n; i++) ((mx += x[i]), (my += y[i]));
  ((mx /= n), (my /= n));
  let sxy = 0,
    sxx = 0;
  for (let i = 0; i < n; i++) ((sxy += (x[i] - mx) * (y[i] - my)), (sxx += (x[i] - mx) ** 2));
  return sxx > 0 ? sxy / sxx : 0;
}

export const mean = (x: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s / x.length;
};
