// The study statistics (lib/study/stats.ts): the two-level bootstrap interval against closed forms
// — one group of normal values gives mean ± 1.96·s/√n; many one-item groups the same over groups;
// constant data a zero-width interval; a fixed shift moves the interval by exactly that shift —
// plus reproducibility, Pearson correlation and slope against direct formulas, and bad input.
import t from 'tap';
import { rng } from '../../lib/demo/task.js';
import { hierarchicalBootstrap, mean, meanOfMeans, pearson, quantile, slope } from '../../lib/study/stats.js';

/** Standard normal draws (Box–Muller) from a seeded uniform. */
function normals(n: number, seed: number, mu = 0, sd = 1): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => mu + sd * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()));
}
const sd = (x: number[]) => Math.sqrt(x.reduce((a, v) => a + (v - mean(x)) ** 2, 0) / (x.length - 1));

t.test('one group: the percentile interval matches mean ± 1.96 s/√n', async (t) => {
  const x = normals(2000, 1, 3, 2);
  const e = hierarchicalBootstrap([x], undefined, { resamples: 4000 });
  const half = (1.96 * sd(x)) / Math.sqrt(x.length);
  t.ok(Math.abs(e.mean - mean(x)) < 1e-12, 'the estimate is the sample mean');
  t.ok(Math.abs(e.ci[0] - (mean(x) - half)) < 0.1 * half, `lower ${e.ci[0]} vs ${mean(x) - half}`);
  t.ok(Math.abs(e.ci[1] - (mean(x) + half)) < 0.1 * half, `upper ${e.ci[1]} vs ${mean(x) + half}`);
});

t.test('many one-item groups: the seed level is resampled', async (t) => {
  const x = normals(1500, 2, -1, 0.5);
  const e = hierarchicalBootstrap(
    x.map((v) => [v]),
    undefined,
    { resamples: 4000 },
  );
  const half = (1.96 * sd(x)) / Math.sqrt(x.length);
  t.ok(Math.abs(e.ci[1] - e.ci[0] - 2 * half) < 0.1 * 2 * half, `width ${e.ci[1] - e.ci[0]} vs ${2 * half}`);
});

t.test('two levels: between-seed spread widens the interval beyond the within-seed one', async (t) => {
  // 8 seeds whose means differ by much more than their prompts' noise: the width follows the seeds
  const offsets = normals(8, 3, 0, 1);
  const groups = offsets.map((o, s) => normals(100, 10 + s, o, 0.1));
  const e = hierarchicalBootstrap(groups, undefined, { resamples: 4000 });
  const seedMeans = groups.map(mean);
  const halfSeeds = (1.96 * sd(seedMeans)) / Math.sqrt(8);
  t.ok(e.ci[1] - e.ci[0] > 1.4 * halfSeeds, 'wider than a 1.4 half-width of the seed means');
  t.ok(e.ci[1] - e.ci[0] < 2.6 * halfSeeds, 'and not much wider than the normal interval');
  t.ok(e.ci[0] < meanOfMeans(groups) && meanOfMeans(groups) < e.ci[1]);
});

t.test('constant data, shifts, reproducibility', async (t) => {
  t.same(
    hierarchicalBootstrap([
      [2, 2, 2],
      [2, 2],
    ]).ci,
    [2, 2],
    'zero width',
  );
  const x = [normals(50, 4), normals(60, 5)];
  const a = hierarchicalBootstrap(x, undefined, { seed: 7 });
  const b = hierarchicalBootstrap(
    x.map((g) => g.map((v) => v + 10)),
    undefined,
    { seed: 7 },
  );
  t.ok(Math.abs(b.ci[0] - a.ci[0] - 10) < 1e-9 && Math.abs(b.ci[1] - a.ci[1] - 10) < 1e-9, 'shift moves the interval');
  t.same(hierarchicalBootstrap(x, undefined, { seed: 7 }), a, 'same seed, same interval');
  t.not(hierarchicalBootstrap(x, undefined, { seed: 8 }).ci[0], a.ci[0], 'another seed, another draw');
  const custom = hierarchicalBootstrap(x, (g) => Math.max(...g.flat()), { seed: 1 });
  t.equal(custom.mean, Math.max(...x.flat()), 'a custom statistic on the observed data');
});

t.test('pearson, slope, quantile against direct formulas', async (t) => {
  t.equal(pearson([1, 2, 3, 4], [2, 4, 6, 8]), 1);
  t.equal(pearson([1, 2, 3, 4], [8, 6, 4, 2]), -1);
  t.ok(Number.isNaN(pearson([1, 1, 1], [1, 2, 3])), 'constant series: NaN');
  const x = normals(200, 6),
    y = x.map((v, i) => 2 * v + normals(200, 7)[i]);
  // corr = cov/(sx sy) computed the textbook way
  const mx = mean(x),
    my = mean(y);
  const cov = x.reduce((a, v, i) => a + (v - mx) * (y[i] - my), 0) / 199;
  t.ok(Math.abs(pearson(x, y) - cov / (sd(x) * sd(y))) < 1e-12);
  t.ok(Math.abs(slope([0, 1, 2, 3], [1, 3, 5, 7]) - 2) < 1e-12);
  t.equal(quantile([0, 10], 0.25), 2.5);
});

t.test('bad input names the parameter', async (t) => {
  t.throws(() => hierarchicalBootstrap([]), TypeError);
  t.throws(() => hierarchicalBootstrap([[1], []]), /groups/);
  t.throws(() => hierarchicalBootstrap([[1]], undefined, { resamples: 2 }), /options\.resamples/);
  t.throws(() => hierarchicalBootstrap([[1]], undefined, { level: 1 }), /options\.level/);
});
