// Agreement statistics against published worked examples, and the cycle finder on small graphs.
import t from 'tap';
import { cohensKappa, fleissKappa, pairwiseAgreement, stronglyConnected } from '../../lib/annotate/index.js';

t.test("Cohen's kappa: the textbook 2x2 example (20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no) is 0.4", async (t) => {
  const x = [...Array(20).fill('y'), ...Array(5).fill('y'), ...Array(10).fill('n'), ...Array(15).fill('n')];
  const y = [...Array(20).fill('y'), ...Array(5).fill('n'), ...Array(10).fill('y'), ...Array(15).fill('n')];
  t.ok(Math.abs(cohensKappa(x, y)! - 0.4) < 1e-12);
  t.equal(cohensKappa(['a', 'b'], ['a', 'b']), 1, 'perfect agreement');
  t.equal(cohensKappa(['a', 'a'], ['a', 'a']), null, 'undefined when chance agreement is 1');
  t.equal(cohensKappa([], []), null);
  t.throws(() => cohensKappa(['a'], []), RangeError);
});

t.test("Fleiss' kappa: the 10-item, 14-rater, 5-category example is 0.210", async (t) => {
  const counts = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
  ];
  t.equal(Math.round(fleissKappa(counts)! * 1000) / 1000, 0.21);
  t.ok(Math.abs(fleissKappa(counts)! - 0.20993070442195522) < 1e-9);
  t.equal(
    fleissKappa([
      [2, 0],
      [0, 2],
    ]),
    1,
  );
  t.equal(fleissKappa([[1, 0]]), null, 'items with one rater are ignored');
});

t.test('pairwise agreement and strongly connected components', async (t) => {
  t.equal(
    pairwiseAgreement([
      ['a', 'a', 'b'],
      ['a', 'a'],
    ]),
    2 / 4,
  );
  t.equal(pairwiseAgreement([['a']]), null);
  const c = stronglyConnected([
    ['x', 'y'],
    ['y', 'z'],
    ['z', 'x'],
    ['z', 'w'],
  ]);
  t.ok(c.get('x') === c.get('y') && c.get('y') === c.get('z'), 'x → y → z → x is one component');
  t.not(c.get('w'), c.get('x'), 'w is outside the cycle');
  const d = stronglyConnected([
    ['p', 'q'],
    ['q', 'r'],
    ['p', 'r'],
  ]);
  t.equal(new Set(d.values()).size, 3, 'a DAG has one component per node');
});
