// Bucket-based length balancing (docs/algorithms.md §2.2): per-bucket counts on a hand-made set, property 16 on
// a length-biased random set, seeding, custom edges, the text report, argument errors.
import t from 'tap';
import { balanceByLength, DEFAULT_BALANCE_EDGES, formatBalanceReport } from '../../lib/data/index.js';

/** A length-biased preference set: the chosen response is longer about 70% of the time. */
function biasedPairs(n: number, seed: number): Array<{ chosen: number; rejected: number }> {
  let s = seed >>> 0;
  const rand = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  return Array.from({ length: n }, () => {
    const base = Math.floor(rand() * 300);
    const diff = Math.floor(rand() ** 2 * 1200); // many small differences, some large
    if (rand() < 0.05) return { chosen: base, rejected: base };
    return rand() < 0.7 ? { chosen: base + diff, rejected: base } : { chosen: base, rejected: base + diff };
  });
}

t.test('counts per bucket on a small set by hand', async (t) => {
  const lengths = [
    { chosen: 10, rejected: 5 }, // 0: [0,50) longer
    { chosen: 12, rejected: 2 }, // 1: [0,50) longer
    { chosen: 3, rejected: 40 }, // 2: [0,50) shorter
    { chosen: 7, rejected: 7 }, // 3: equal
    { chosen: 100, rejected: 20 }, // 4: [50,100) longer
    { chosen: 0, rejected: 1000 }, // 5: [800,inf) shorter
    { chosen: 1000, rejected: 0 }, // 6: [800,inf) longer
    { chosen: 5, rejected: 55 }, // 7: [50,100) shorter (|d| = 50 is in [50,100))
  ];
  const { kept, report } = balanceByLength(lengths, { seed: 3 });
  t.same(report.edges, [...DEFAULT_BALANCE_EDGES]);
  t.same(
    report.buckets.map((b) => [
      b.range,
      b.chosenLongerBefore,
      b.chosenShorterBefore,
      b.equalBefore,
      b.chosenLongerAfter,
      b.chosenShorterAfter,
      b.equalAfter,
    ]),
    [
      [[0, 50], 2, 1, 1, 1, 1, 1],
      [[50, 100], 1, 1, 0, 1, 1, 0],
      [[100, 200], 0, 0, 0, 0, 0, 0],
      [[200, 400], 0, 0, 0, 0, 0, 0],
      [[400, 800], 0, 0, 0, 0, 0, 0],
      [[800, Infinity], 1, 1, 0, 1, 1, 0],
    ],
  );
  t.equal(kept.length, 7);
  t.same([report.keptPairs, report.totalPairs], [7, 8]);
  t.ok(
    [0, 1].filter((i) => kept.includes(i)).length === 1,
    'one of the two "chosen longer" pairs of bucket 0 is dropped',
  );
  t.same(
    kept.filter((i) => i >= 2),
    [2, 3, 4, 5, 6, 7],
  );
  t.same(
    kept,
    [...kept].sort((a, b) => a - b),
    'kept indices in original order',
  );
});

t.test(
  'property 16: after filtering each bucket has equal chosen-longer/chosen-shorter counts and a length-only classifier has accuracy 0.5',
  async (t) => {
    const lengths = biasedPairs(5000, 17);
    const longerBefore = lengths.filter((l) => l.chosen > l.rejected).length;
    const nonEqualBefore = lengths.filter((l) => l.chosen !== l.rejected).length;
    t.ok(
      longerBefore / nonEqualBefore > 0.65,
      `the raw set is biased: "longer is chosen" is right ${(longerBefore / nonEqualBefore).toFixed(3)} of the time`,
    );

    const { kept, report } = balanceByLength(lengths, { seed: 1 });
    t.equal(new Set(kept).size, kept.length, 'no index kept twice');
    for (const b of report.buckets) {
      t.equal(b.chosenLongerAfter, b.chosenShorterAfter, `bucket [${b.range[0]}, ${b.range[1]}): equal counts`);
      t.equal(
        b.chosenLongerAfter,
        Math.min(b.chosenLongerBefore, b.chosenShorterBefore),
        'the smaller side is kept whole',
      );
      t.equal(b.equalAfter, b.equalBefore, 'equal-length pairs all kept');
    }
    // recount from the kept indices themselves, bucket by bucket
    const edges = report.edges;
    for (let b = 0; b + 1 < edges.length; b++) {
      const inBucket = kept
        .map((i) => lengths[i])
        .filter((l) => Math.abs(l.chosen - l.rejected) >= edges[b] && Math.abs(l.chosen - l.rejected) < edges[b + 1]);
      t.equal(
        inBucket.filter((l) => l.chosen > l.rejected).length,
        inBucket.filter((l) => l.chosen < l.rejected).length,
        `recount bucket ${b}`,
      );
    }
    // "predict that the longer response is chosen" on the kept non-equal pairs
    const nonEqual = kept.map((i) => lengths[i]).filter((l) => l.chosen !== l.rejected);
    const correct = nonEqual.filter((l) => l.chosen > l.rejected).length;
    t.ok(nonEqual.length > 1000, `${nonEqual.length} non-equal pairs kept`);
    t.equal(correct / nonEqual.length, 0.5, 'length-only accuracy is exactly 0.5');
    t.equal(report.keptPairs, kept.length);
    t.equal(report.totalPairs, 5000);
  },
);

t.test('seeded: same seed same subset, other seeds other subsets', async (t) => {
  const lengths = biasedPairs(2000, 5);
  const a = balanceByLength(lengths, { seed: 7 }).kept;
  t.same(balanceByLength(lengths, { seed: 7 }).kept, a);
  t.same(balanceByLength(lengths).kept, balanceByLength(lengths, { seed: 0 }).kept, 'default seed 0');
  const b = balanceByLength(lengths, { seed: 8 }).kept;
  t.equal(b.length, a.length, 'the counts do not depend on the seed');
  t.not(b.join(','), a.join(','), 'the chosen subset does');
});

t.test('custom edges', async (t) => {
  const lengths = [
    { chosen: 3, rejected: 1 },
    { chosen: 1, rejected: 3 },
    { chosen: 9, rejected: 1 },
    { chosen: 20, rejected: 1 },
  ];
  const { kept, report } = balanceByLength(lengths, { edges: [0, 5, Infinity] });
  t.same(
    report.buckets.map((b) => b.range),
    [
      [0, 5],
      [5, Infinity],
    ],
  );
  t.same(kept, [0, 1], 'the second bucket has only "chosen longer" pairs: all dropped');
  t.same(balanceByLength([]).kept, []);
});

t.test('formatBalanceReport: an aligned table', async (t) => {
  const { report } = balanceByLength(
    [
      { chosen: 10, rejected: 5 },
      { chosen: 12, rejected: 2 },
      { chosen: 3, rejected: 40 },
      { chosen: 7, rejected: 7 },
      { chosen: 1000, rejected: 0 },
    ],
    { edges: [0, 50, Infinity] },
  );
  t.equal(
    formatBalanceReport(report),
    [
      '|d| bucket  longer  shorter  equal  ->  longer  shorter  equal',
      '[0, 50)          2        1      1  ->       1        1      1',
      '[50, inf)        1        0      0  ->       0        0      0',
      'kept 3 of 5 pairs (60.0%)',
    ].join('\n'),
  );
  t.equal(formatBalanceReport(balanceByLength([]).report).split('\n').at(-1), 'kept 0 of 0 pairs (0.0%)');
});

t.test('argument errors', async (t) => {
  t.throws(() => balanceByLength([{ chosen: -1, rejected: 2 }]), {
    name: 'RangeError',
    message: 'balanceByLength: expected lengths[0].chosen to be a finite number >= 0, received -1',
  });
  t.throws(() => balanceByLength([{ chosen: 1 } as never]), {
    name: 'TypeError',
    message: 'balanceByLength: expected lengths[0].rejected to be a finite number >= 0, received undefined',
  });
  t.throws(() => balanceByLength([], { edges: [0, 50, 100] }), {
    name: 'RangeError',
    message:
      'balanceByLength: expected options.edges to be an increasing list of numbers starting at 0 and ending at Infinity, received "[0, 50, 100]"',
  });
  t.throws(() => balanceByLength([], { edges: [0, 50, 50, Infinity] }), { name: 'RangeError' });
  t.throws(() => balanceByLength([], { edges: [5, Infinity] }), { name: 'RangeError' });
  t.throws(() => balanceByLength([], { seed: -1 }), { name: 'RangeError' });
  t.throws(() => balanceByLength([], { edge: [0, Infinity] } as never), {
    name: 'TypeError',
    message: /unknown option options.edge \(did you mean options.edges\?\)/,
  });
});
