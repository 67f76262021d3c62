// The test helpers themselves must be able to fail: a wrong gradient or a value out of tolerance
// is caught.
import t from 'tap';
import { finiteDifference } from '../helpers/gradcheck.js';
import { nmse, violations } from '../helpers/tolerance.js';

t.test('finite differences: accurate on a smooth function, detect a wrong gradient', async (t) => {
  const f = (x: Float64Array) => Math.sin(x[0]) * x[1] * x[1];
  const x = Float64Array.from([0.3, -1.7]);
  t.ok(Math.abs(finiteDifference(f, x, 0, 1e-6) - Math.cos(0.3) * 1.7 * 1.7) < 1e-8);
  t.ok(Math.abs(finiteDifference(f, x, 1, 1e-6) - 2 * Math.sin(0.3) * -1.7) < 1e-8);
  const wrong = Math.cos(0.3) * 1.7; // missing a factor
  t.ok(Math.abs(finiteDifference(f, x, 0, 1e-6) - wrong) > 1e-3, 'a wrong analytic gradient would fail');
  t.same(Array.from(x), [0.3, -1.7], 'x restored');
});

t.test('tolerance helpers flag violations and NaN', async (t) => {
  t.equal(violations([1, 2.1], [1, 2], { atol: 0.01, rtol: 0 }).length, 1);
  t.equal(violations([NaN], [1], { atol: 1, rtol: 1 }).length, 1);
  t.equal(violations([1.001], [1], { atol: 0, rtol: 0.01 }).length, 0);
  t.ok(Math.abs(nmse([1.1, 2], [1, 2]) - 0.01 / 5) < 1e-12);
});
