// Validation helpers: the one message shape, TypeError vs RangeError, unknown-key suggestions.
import t from 'tap';
import { checkInt, checkNumber, closest, FLOAT32_MAX, options, show } from '../../lib/validate.js';
import { readLoopOptions } from '../../lib/train/preference-common.js';

t.test('message shape and error classes', async (t) => {
  t.throws(() => checkNumber('f', 'options.lr', 'x', { gt: 0 }), {
    name: 'TypeError',
    message: 'f: expected options.lr to be a finite number > 0, received "x"',
  });
  t.throws(() => checkNumber('f', 'options.lr', 1.5, { min: 0, max: 1 }), {
    name: 'RangeError',
    message: 'f: expected options.lr to be a finite number >= 0 and <= 1, received 1.5',
  });
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
  t.throws(() => o.number('topP', { gt: 0, max: 1 }), {
    message: 'g: expected opts.topP to be a finite number > 0 and <= 1, received 2',
  });
  t.throws(() => options('g', 'opts', { topp: 1 }).known(['topP', 'topK']), {
    name: 'TypeError',
    message: 'g: unknown option opts.topp (did you mean opts.topP?)',
  });
  t.throws(() => options('g', 'opts', 5), {
    name: 'TypeError',
    message: 'g: expected opts to be an object, received 5',
  });
  t.equal(closest('learningrate', ['lr', 'learningRate']), 'learningRate');
  t.equal(closest('zzzzzz', ['lr']), undefined);
});

t.test('float32: finite JS numbers that overflow float32 are refused by name', async (t) => {
  t.equal(checkNumber('f', 'x', FLOAT32_MAX, { float32: true }), FLOAT32_MAX);
  t.equal(checkNumber('f', 'x', -3e38, { float32: true }), -3e38);
  t.throws(() => checkNumber('f', 'options.lr', 1e39, { min: 0, float32: true }), {
    name: 'RangeError',
    message:
      'f: expected options.lr to be a finite number >= 0 that fits in a float32 (magnitude <= 3.4028234663852886e+38), received 1e+39',
  });
  t.throws(() => checkNumber('f', 'x', -1e39, { float32: true }), { name: 'RangeError' });
  t.equal(checkNumber('f', 'x', 1e39), 1e39, 'without float32 a finite double passes');
  // every trainer's loop options (SFT, reward, process reward, preference) go through these checks
  for (const key of ['lr', 'weightDecay', 'maxGradNorm'])
    t.throws(
      () => readLoopOptions('RewardTrainer', options('RewardTrainer', 'options', { [key]: 1e39 }), { lr: 1e-5 }),
      { name: 'RangeError', message: new RegExp(`RewardTrainer: expected options\\.${key} .*fits in a float32`) },
    );
});
