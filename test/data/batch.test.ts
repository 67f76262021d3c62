// padBatch and packExamples: targets, lengths, positions and segments checked on tiny hand-written
// examples, plus a randomized check that packing never predicts across a document boundary.
import t from 'tap';
import { PAD_SEGMENT, packExamples, padBatch, type TokenizedExample } from '../../lib/data/index.js';

const ex = (ids: number[], mask: number[]): TokenizedExample => ({
  ids: Int32Array.from(ids),
  lossMask: Uint8Array.from(mask),
});
const arr = (a: ArrayLike<number> | undefined) => Array.from(a ?? []);

t.test('padBatch: targets and lengths by hand', async (t) => {
  const a = ex([1, 2, 3], [0, 1, 1]);
  const b = ex([4, 5], [0, 1]);
  const c = ex([6, 7, 8, 9], [0, 0, 1, 1]);
  const p = padBatch([a, b, c], { padId: 99 });
  t.same([p.batch, p.seqLen], [3, 4], 'seqLen defaults to the longest example');
  t.same(arr(p.tokens), [1, 2, 3, 99, /**/ 4, 5, 99, 99, /**/ 6, 7, 8, 9]);
  t.same(arr(p.targets), [2, 3, -1, -1, /**/ 5, -1, -1, -1, /**/ -1, 8, 9, -1]);
  t.same(arr(p.lengths), [3, 2, 4]);
  t.equal(p.numTargets, 5);
  t.equal(p.positions, undefined);
  t.equal(p.segments, undefined);
  t.ok(p.tokens instanceof Int32Array && p.targets instanceof Int32Array && p.lengths instanceof Int32Array);

  const wide = padBatch([b], { padId: 0, seqLen: 4 });
  t.same(
    [arr(wide.tokens), arr(wide.targets), arr(wide.lengths), wide.numTargets],
    [[4, 5, 0, 0], [5, -1, -1, -1], [2], 1],
  );
  const gap = padBatch([ex([1, 2, 3, 4], [0, 1, 0, 1])], { padId: 0 });
  t.same(arr(gap.targets), [2, -1, 4, -1], 'a 0 in the mask leaves a gap');
});

t.test('padBatch: errors', async (t) => {
  const a = ex([1, 2, 3], [0, 1, 1]);
  t.throws(() => padBatch([a, a, ex([1, 2, 3, 4, 5], [0, 1, 1, 1, 1])], { padId: 0, seqLen: 4 }), {
    name: 'RangeError',
    message: 'padBatch: expected examples[2].ids.length to be <= seqLen (4), received 5',
  });
  t.throws(() => padBatch([], { padId: 0 }), {
    name: 'RangeError',
    message: 'padBatch: expected examples.length to be >= 1, received 0',
  });
  t.throws(() => padBatch([a, ex([], [])], { padId: 0 }), {
    name: 'RangeError',
    message: 'padBatch: expected examples[1].ids.length to be >= 1, received 0',
  });
  t.throws(() => padBatch([ex([1, 2], [0])], { padId: 0 }), {
    name: 'RangeError',
    message: 'padBatch: expected examples[0].lossMask.length to be ids.length (2), received 1',
  });
  t.throws(() => padBatch([{ ids: [1, 2], lossMask: new Uint8Array(2) } as never], { padId: 0 }), {
    name: 'TypeError',
    message: 'padBatch: expected examples[0].ids to be an Int32Array, received array(2)',
  });
  t.throws(() => padBatch([a], {} as never), {
    name: 'TypeError',
    message: 'padBatch: expected options.padId to be an integer >= 0, received undefined',
  });
});

t.test('packExamples: rows, positions, segments, targets by hand', async (t) => {
  const examples = [
    ex([10, 11, 12], [0, 1, 1]),
    ex([20, 21], [0, 1]),
    ex([30, 31, 32, 33], [0, 0, 1, 1]),
    ex([40, 41, 42, 43, 44, 45], [0, 1, 1, 1, 1, 1]), // longer than seqLen: cut to 5
  ];
  const { batches, stats } = packExamples(examples, { seqLen: 5, padId: 0, rowsPerBatch: 2 });
  t.same(stats, { examples: 4, truncated: 1, rows: 3, fill: 14 / 15 });
  t.equal(batches.length, 2);
  const [b0, b1] = batches;
  t.same([b0.batch, b0.seqLen, b1.batch, b1.seqLen], [2, 5, 1, 5], 'the last batch holds the remaining row');
  t.same(arr(b0.tokens), [10, 11, 12, 20, 21, /**/ 30, 31, 32, 33, 0]);
  t.same(arr(b0.targets), [11, 12, -1, 21, -1, /**/ -1, 32, 33, -1, -1], 'no target from document 0 into document 1');
  t.same(arr(b0.positions), [0, 1, 2, 0, 1, /**/ 0, 1, 2, 3, 0]);
  t.same(arr(b0.segments), [0, 0, 0, 1, 1, /**/ 0, 0, 0, 0, PAD_SEGMENT]);
  t.same(arr(b0.lengths), [5, 4]);
  t.equal(b0.numTargets, 5);
  t.same(arr(b1.tokens), [40, 41, 42, 43, 44]);
  t.same(arr(b1.targets), [41, 42, 43, 44, -1]);
  t.same(arr(b1.positions), [0, 1, 2, 3, 4]);
  t.same(arr(b1.segments), [0, 0, 0, 0, 0]);
  t.same(arr(b1.lengths), [5]);
  t.equal(b1.numTargets, 4);
  t.equal(PAD_SEGMENT, -1);

  t.same(packExamples([], { seqLen: 4, padId: 0, rowsPerBatch: 1 }), {
    batches: [],
    stats: { examples: 0, truncated: 0, rows: 0, fill: 0 },
  });
  t.throws(() => packExamples([examples[0]], { seqLen: 0, padId: 0, rowsPerBatch: 1 }), {
    name: 'RangeError',
    message: 'packExamples: expected options.seqLen to be an integer >= 1, received 0',
  });
  t.throws(() => packExamples([examples[0]], { seqLen: 4, padId: 0, rowsPerBatch: 1, seqlen: 3 } as never), {
    name: 'TypeError',
    message: /unknown option options.seqlen \(did you mean options.seqLen\?\)/,
  });
});

t.test('packExamples: randomized invariants', async (t) => {
  let s = 12345;
  const rand = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const examples: TokenizedExample[] = [];
  for (let i = 0; i < 300; i++) {
    const n = 1 + rand(40);
    examples.push(
      ex(
        Array.from({ length: n }, () => 1 + rand(500)),
        Array.from({ length: n }, (_, j) => (j > 0 && rand(3) > 0 ? 1 : 0)),
      ),
    );
  }
  const seqLen = 32;
  const { batches, stats } = packExamples(examples, { seqLen, padId: 0, rowsPerBatch: 4 });
  let doc = 0,
    tokens = 0,
    targets = 0,
    rows = 0,
    problems = 0;
  for (const b of batches) {
    for (let r = 0; r < b.batch; r++, rows++) {
      const at = r * seqLen;
      const len = b.lengths[r];
      tokens += len;
      for (let i = 0; i < seqLen; i++) {
        const k = at + i;
        if (i >= len) {
          if (b.segments![k] !== PAD_SEGMENT || b.targets[k] !== -1 || b.tokens[k] !== 0) problems++;
          continue;
        }
        if (b.positions![k] === 0) {
          // a new document starts: it is the next example, in order, possibly truncated
          const e = examples[doc++];
          const n = Math.min(e.ids.length, seqLen);
          for (let j = 0; j < n; j++) {
            if (b.tokens[k + j] !== e.ids[j] || b.positions![k + j] !== j || b.segments![k + j] !== b.segments![k])
              problems++;
            const want = j + 1 < n && e.lossMask[j + 1] ? e.ids[j + 1] : -1;
            if (b.targets[k + j] !== want) problems++;
          }
          if (i > 0 && b.segments![k] === b.segments![k - 1]) problems++; // a fresh segment id per document
        }
        if (b.targets[k] !== -1) {
          targets++;
          if (i + 1 >= len || b.segments![k + 1] !== b.segments![k] || b.targets[k] !== b.tokens[k + 1]) problems++;
        }
      }
    }
    t.equal(b.numTargets, arr(b.targets).filter((x) => x !== -1).length);
  }
  t.equal(problems, 0, 'every document placed whole and in order; no target crosses a boundary');
  t.equal(doc, examples.length, 'every example packed');
  t.equal(rows, stats.rows);
  t.equal(stats.truncated, examples.filter((e) => e.ids.length > seqLen).length);
  t.equal(stats.fill, tokens / (rows * seqLen));
  t.ok(targets > 0);
  t.ok(stats.fill > 0.6, `greedy fill ${stats.fill.toFixed(3)}`);
});
