// AdamW: bitwise against the float32 TS reference over many steps, skip on NaN/Inf, clipping,
// weight-decay segments, save/restore continuing bit-exactly, busy and disposed errors, options.
import t from 'tap';
import { AdamW, adamwStepReference, ADAMW_DEFAULTS } from '../../lib/engine/adamw.js';
import { forEachDevice } from '../helpers/devices.js';
import { Rng } from '../helpers/random.js';
import { assertClose, bitwiseEqual } from '../helpers/tolerance.js';

t.test('matches the float32 reference bit for bit over 30 steps (no clipping)', (t) =>
  forEachDevice(t, async (t) => {
    const rng = new Rng(3);
    const n = 70001;
    const params = rng.normalF32(n),
      grads = new Float32Array(n);
    const segments = [
      { offset: 0, length: 1000, weightDecayScale: 1 },
      { offset: 1000, length: 1, weightDecayScale: 0 },
      { offset: 1001, length: n - 1001, weightDecayScale: 1 },
    ];
    const opts = { lr: 2e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 0 };
    const opt = new AdamW({ params, grads, segments }, opts);
    const p = Float32Array.from(params),
      m = new Float32Array(n),
      v = new Float32Array(n);
    for (let step = 1; step <= 30; step++) {
      grads.set(rng.normalF32(n, 0.01));
      const r = await opt.step();
      const ref = adamwStepReference(p, grads, m, v, step, opts, segments);
      t.equal(r.skipped, false);
      if (Math.abs(r.gradNorm - ref.gradNorm) > 1e-9 * ref.gradNorm)
        t.fail(`grad norm ${r.gradNorm} vs ${ref.gradNorm}`);
    }
    t.ok(bitwiseEqual(params, p), 'parameters identical to the reference');
    const s = await opt.saveState();
    t.ok(bitwiseEqual(s.m, m) && bitwiseEqual(s.v, v), 'moments identical to the reference');
    t.equal(s.step, 30);
    opt.dispose();
  }),
);

t.test('clipping: gradients scaled to maxGradNorm', async (t) => {
  const rng = new Rng(4);
  const n = 5000;
  const params = rng.normalF32(n),
    grads = rng.normalF32(n, 1);
  const opts = { ...ADAMW_DEFAULTS, lr: 1e-2, maxGradNorm: 1 };
  const opt = new AdamW({ params, grads }, opts);
  const p = Float32Array.from(params),
    m = new Float32Array(n),
    v = new Float32Array(n);
  const r = await opt.step();
  adamwStepReference(p, grads, m, v, 1, opts); // updates p (and m, v) in place
  t.ok(r.gradNorm > 50, `norm before clipping is reported (${r.gradNorm.toFixed(2)})`);
  // the clip coefficient depends on the norm's last bits (summation order), so compare with tolerance
  assertClose(t, params, p, { atol: 1e-6, rtol: 1e-5 }, 'clipped update');
  const { m: mm } = await opt.saveState();
  let norm = 0;
  for (let i = 0; i < n; i++) norm += (mm[i] / 0.1) ** 2; // m = 0.1·g_clipped after one step
  t.ok(Math.abs(Math.sqrt(norm) - 1) < 1e-4, `clipped gradient norm ${Math.sqrt(norm)} ≈ 1`);
});

t.test('non-finite gradients: step skipped, nothing changed, counter not advanced', async (t) => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    const rng = new Rng(5);
    const params = rng.normalF32(1000),
      grads = rng.normalF32(1000);
    const opt = new AdamW({ params, grads }, { lr: 0.1 });
    await opt.step();
    const before = Float32Array.from(params);
    const state = await opt.saveState();
    grads[123] = bad;
    const r = await opt.step();
    t.equal(r.skipped, true, `skipped on ${bad}`);
    t.equal(r.step, 1);
    t.ok(bitwiseEqual(params, before), 'parameters untouched');
    const after = await opt.saveState();
    t.ok(bitwiseEqual(after.m, state.m) && bitwiseEqual(after.v, state.v), 'moments untouched');
  }
});

t.test('save/restore: N steps + restore + N steps equals 2N steps bit for bit', async (t) => {
  const rng = new Rng(6);
  const n = 10007;
  const init = rng.normalF32(n);
  const grads = Array.from({ length: 10 }, () => rng.normalF32(n, 0.1));
  const opts = { lr: 1e-3, weightDecay: 0.01, maxGradNorm: 5 };

  const straight = { params: Float32Array.from(init), grads: new Float32Array(n) };
  const a = new AdamW(straight, opts);
  for (const g of grads) (straight.grads.set(g), await a.step());

  const first = { params: Float32Array.from(init), grads: new Float32Array(n) };
  const b = new AdamW(first, opts);
  for (const g of grads.slice(0, 5)) (first.grads.set(g), await b.step());
  const saved = await b.saveState();
  const savedParams = Float32Array.from(first.params);
  b.dispose();

  const resumed = { params: savedParams, grads: new Float32Array(n) };
  const c = new AdamW(resumed, { lr: 123 }); // options come back from the state
  await c.loadState(saved);
  t.equal(c.lr, 1e-3);
  for (const g of grads.slice(5)) (resumed.grads.set(g), await c.step());
  t.ok(bitwiseEqual(resumed.params, straight.params), 'resumed run identical to the straight run');
});

t.test('learning-rate changes and one call at a time', async (t) => {
  const params = new Float32Array(8).fill(1),
    grads = new Float32Array(8).fill(1);
  const opt = new AdamW({ params, grads }, { lr: 0.5 });
  opt.lr = 0.25;
  const pending = opt.step();
  // engine-state errors reject (argument errors throw synchronously)
  await t.rejects(opt.step(), {
    code: 'ERR_RLHF_BUSY',
    message: /busy with another call; await it before calling step\(\)/,
  });
  await pending;
  t.ok(Math.abs(params[0] - (1 - 0.25)) < 1e-6, 'the new lr was used (first step moves by lr)');
  opt.dispose();
  t.throws(() => opt.step(), { code: 'ERR_RLHF_DISPOSED' });
});

t.test('option and target validation name the field', async (t) => {
  const params = new Float32Array(4),
    grads = new Float32Array(4);
  t.throws(() => new AdamW({ params, grads }, { lr: -1 }), {
    name: 'RangeError',
    message: 'AdamW: expected options.lr to be a finite number >= 0, received -1',
  });
  t.throws(() => new AdamW({ params, grads }, { beta2: 1 }), {
    name: 'RangeError',
    message: /options\.beta2 to be a finite number >= 0 and < 1/,
  });
  t.throws(() => new AdamW({ params, grads }, { eps: NaN }), { name: 'TypeError', message: /options\.eps/ });
  // finite in JS, Infinity as the float32 the kernel gets: refused here, by name
  t.throws(() => new AdamW({ params, grads }, { lr: 1e39 }), {
    name: 'RangeError',
    message:
      'AdamW: expected options.lr to be a finite number >= 0 that fits in a float32 (magnitude <= 3.4028234663852886e+38), received 1e+39',
  });
  t.throws(() => new AdamW({ params, grads }, { weightDecay: 4e38 }), {
    name: 'RangeError',
    message: /options\.weightDecay .*fits in a float32/,
  });
  t.throws(() => new AdamW({ params, grads }).setOptions({ lr: 3.5e38 }), {
    name: 'RangeError',
    message: /AdamW\.setOptions: expected options\.lr .*fits in a float32/,
  });
  t.doesNotThrow(
    () => new AdamW({ params, grads }, { lr: 3.4e38, maxGradNorm: Infinity }).dispose(),
    'the largest float32 and an explicit Infinity (no clipping) pass',
  );
  t.throws(() => new AdamW({ params, grads }, { weightDecay: Infinity }), {
    name: 'RangeError',
    message: /options\.weightDecay/,
  });
  t.throws(() => new AdamW({ params, grads }, { learningRate: 1 } as never), {
    name: 'TypeError',
    message: /unknown option options\.learningRate/,
  });
  t.throws(() => new AdamW({ params, grads: new Float32Array(3) }), {
    name: 'RangeError',
    message: /target\.grads\.length to be 4, received 3/,
  });
  t.throws(() => new AdamW({ params, grads, segments: [{ offset: 0, length: 3, weightDecayScale: 1 }] }), {
    name: 'RangeError',
    message: /target\.segments/,
  });
  const opt = new AdamW({ params, grads });
  await t.rejects(opt.loadState({ step: 1, m: new Float32Array(3), v: new Float32Array(4), options: ADAMW_DEFAULTS }), {
    name: 'RangeError',
    message: /state\.m\.length to be 4, received 3/,
  });
});
