// permutation(n, seed, epoch): a permutation, a pure function of its arguments (pinned values, so a
// change of algorithm that would break exact resume is caught), different per epoch and seed,
// and uniform over the n! orders (checked for n = 4).
import t from 'tap';
import { permutation } from '../../lib/data/index.js';

const isPermutation = (p: Int32Array) => {
  const seen = new Uint8Array(p.length);
  for (const v of p) {
    if (v < 0 || v >= p.length || seen[v]) return false;
    seen[v] = 1;
  }
  return true;
};

t.test('is a permutation of [0, n)', async (t) => {
  for (const n of [0, 1, 2, 3, 10, 1000, 100_003]) {
    const p = permutation(n, 7, 1);
    t.ok(p instanceof Int32Array && p.length === n && isPermutation(p), `n = ${n}`);
  }
});

t.test('deterministic, pinned values', async (t) => {
  t.same(Array.from(permutation(10, 0, 0)), [6, 7, 9, 2, 5, 1, 8, 4, 3, 0]);
  t.same(Array.from(permutation(10, 42, 3)), [6, 4, 1, 8, 5, 2, 7, 3, 0, 9]);
  t.same(Array.from(permutation(10, 2 ** 40 + 5, 0)), [4, 3, 0, 6, 9, 2, 1, 7, 5, 8], 'the high bits of a seed count');
  t.same(Array.from(permutation(10, 5, 0)), [1, 5, 8, 9, 7, 2, 4, 3, 6, 0]);
  t.same(permutation(5000, 123, 9), permutation(5000, 123, 9));
});

t.test('different per epoch and per seed', async (t) => {
  const key = (p: Int32Array) => Array.from(p).join(',');
  const epochs = new Set(Array.from({ length: 20 }, (_, e) => key(permutation(1000, 1, e))));
  t.equal(epochs.size, 20, '20 epochs, 20 orders');
  const seeds = new Set(Array.from({ length: 20 }, (_, s) => key(permutation(1000, s, 0))));
  t.equal(seeds.size, 20, '20 seeds, 20 orders');
  t.not(key(permutation(1000, 1, 2)), key(permutation(1000, 2, 1)), 'seed and epoch are not interchangeable');
});

t.test('uniform over the 24 orders of 4 items', async (t) => {
  const counts = new Map<string, number>();
  const N = 24_000;
  for (let e = 0; e < N; e++) {
    const k = Array.from(permutation(4, 99, e)).join('');
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  t.equal(counts.size, 24);
  // each count ~ Binomial(24000, 1/24): mean 1000, sd ~31; ±160 is > 5 sd
  const worst = Math.max(...[...counts.values()].map((c) => Math.abs(c - 1000)));
  t.ok(worst < 160, `max deviation from 1000: ${worst}`);
});

t.test('argument errors', async (t) => {
  t.throws(() => permutation(-1, 0, 0), {
    name: 'RangeError',
    message: 'permutation: expected n to be an integer >= 0 and <= 2147483647, received -1',
  });
  t.throws(() => permutation(3, 1.5, 0), { name: 'TypeError', message: /expected seed to be an integer >= 0/ });
  t.throws(() => permutation(3, 0, -1), {
    name: 'RangeError',
    message: /expected epoch to be an integer >= 0 and <= 4294967295, received -1/,
  });
});
