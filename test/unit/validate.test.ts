// Validation helpers: the one message shape, TypeError vs RangeError, unknown-key suggestions.
import t from 'tap';
import { checkInt, checkNumber, closest, options, show } from '../../lib/validate.js';

t.test('message shape and error classes', async (t) => {
  t.throws(() => checkNumber('f', 'options.lr', 'x', { gt: 0 }), { name: 'TypeError', message: 'f: expected options.lr to be a finite number > 0, received "x"' });
  t.throws(() => checkNumber('f', 'options.lr', 1.5, { min: 0, max: 1 }), { name: 'RangeError', message: 'f: expected options.lr to be a finite number >= 0 and <= 1, received 1.5' });
  t.throws(() => checkNumber('f', 'x', Infinity), { name: 'RangeError' });
  t.equal(checkNumber('f', 'x', Infinity, { allowInfinity: true }), Infinity);
  t.throws(() => checkInt('f', 'n', 2.5), { name: 'TypeError', message: /an integer, received 2\.5/ });
  t.equal(show(new Float32Array(3)), 'Float32Array(3)');
  t.equal(show(undefined), 'undefined');
});

t.test('options reader: defaults, paths, unknown keys', async (t) => {
  const o = options('g', 'opts', { a: 1, topP: 2 });
  t.equal(o.number('a', { min: 0 }), 1);
  t.equal(o.number('b', {}, 7), 7);
  t.throws(() => o.number('topP', { gt: 0, max: 1 }), { message: 'g: expected opts.topP to be a finite number > 0 and <= 1, received 2' });
  t.throws(() => options('g', 'opts', { topp: 1 }).known(['topP', 'topK']), { name: 'TypeError', message: 'g: unknown option opts.topp (did you mean opts.topP?)' });
  t.throws(() => options('g', 'opts', 5), { name: 'TypeError', message: 'g: expected opts to be an object, received 5' });
  t.equal(closest('learningrate', ['lr', 'learningRate']), 'learningRate');
  t.equal(closest('zzzzzz', ['lr']), undefined);
});
