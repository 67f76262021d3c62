// DAPO's soft overlong punishment (lib/rewards/overlong.ts) against its closed form.
import t from 'tap';
import { overlongPenalty } from '../../lib/rewards/overlong.js';

t.test('zero, a linear ramp over the buffer, then the full penalty', async (t) => {
  const o = { maxLength: 20, buffer: 8, penalty: 2 };
  for (let L = 0; L <= 12; L++) t.equal(overlongPenalty(L, o), 0, `L=${L} <= maxLength - buffer`);
  for (let L = 13; L <= 20; L++)
    t.ok(Math.abs(overlongPenalty(L, o) - ((12 - L) / 8) * 2) < 1e-15, `L=${L}: (12 - L)/8 · 2`);
  t.equal(overlongPenalty(20, o), -2, 'full at maxLength');
  t.equal(overlongPenalty(21, o), -2, 'and beyond');
  t.equal(overlongPenalty(20, { maxLength: 20, buffer: 20 }), -1, 'penalty defaults to 1');
  t.throws(() => overlongPenalty(3, { maxLength: 10, buffer: 11 }), /options\.buffer/);
  t.throws(() => overlongPenalty(-1, { maxLength: 10, buffer: 2 }), /overlongPenalty: expected length/);
});
