// One message shape for argument errors on both sides of the N-API boundary:
//   "<fn>: expected <path> to be <expectation>, received <value>"
// lib/validate.ts writes it in TS; native/napi/args.cc writes it in C++ with its own rendering of
// the received value. The two renderings are independent implementations; here they must agree on
// every kind of value, and calls that fail on either side must produce the same shape.
import t from 'tap';
import { native } from '../../lib/native.js';
import { show } from '../../lib/validate.js';
import { AdamW } from '../../lib/engine/adamw.js';
import { setThreads } from '../../lib/engine/device.js';

const SHAPE = /^([\w.]+): expected (.+?) to be (.+), received (.+)$/s;

function messageOf(f: () => unknown): { name: string; message: string } {
  try {
    f();
  } catch (e) {
    return { name: (e as Error).name, message: (e as Error).message };
  }
  throw new Error('expected the call to throw');
}

t.test('native renders a received value exactly as lib/validate.ts show() does', async (t) => {
  const values: unknown[] = [
    undefined,
    null,
    'x',
    'quote " and \\ backslash',
    'é'.repeat(70),
    '😀'.repeat(40),
    'a'.repeat(61),
    '',
    true,
    false,
    1.5,
    -0,
    1e21,
    NaN,
    Infinity,
    -Infinity,
    12345678901234567890n,
    new Float64Array(2),
    new Int32Array(0),
    new Uint8Array(7),
    [],
    [1, 2, 3],
    () => 1,
    {},
    new Map(),
    new Date(0),
    /re/,
  ];
  for (const v of values) {
    // setThreads' native check: a non-number is a TypeError naming `n`
    const { message } = messageOf(() => (native() as unknown as { setThreads(v: unknown): void }).setThreads(v));
    const m = SHAPE.exec(message);
    if (typeof v === 'number') {
      // numbers pass the type check; the range check still renders them
      t.match(message, /^setThreads: expected n to be an integer in \[1, 1024\], received /, String(v));
    } else {
      t.ok(m, `shape for ${show(v)}: ${message}`);
      t.equal(m?.[1], 'setThreads');
      t.equal(m?.[2], 'n');
      t.equal(m?.[3], 'a number');
    }
    t.equal(m?.[4], show(v), `received ${show(v)}`);
  }
});

t.test('the same bad argument reads the same through TS and straight into the addon', async (t) => {
  const ts = messageOf(() => setThreads(0));
  const nat = messageOf(() => (native() as unknown as { setThreads(v: unknown): void }).setThreads(0));
  for (const m of [ts, nat]) {
    t.equal(m.name, 'RangeError');
    t.match(m.message, SHAPE);
    t.match(m.message, /^setThreads: expected n to be /);
    t.match(m.message, /, received 0$/);
  }

  // an optimizer target with mismatched lengths, through the TS constructor and the raw binding
  const target = { params: new Float32Array(4), grads: new Float32Array(3) };
  const fromTs = messageOf(() => new AdamW(target as never, { lr: 1e-3 }));
  t.match(fromTs.message, SHAPE, fromTs.message);
  const raw = native() as unknown as { NativeAdamW: new (t: unknown, o: unknown) => unknown };
  const fromNative = messageOf(() => new raw.NativeAdamW(target, { lr: 1e-3 }));
  t.equal(fromNative.name, 'RangeError');
  t.equal(
    fromNative.message,
    'AdamW: expected target.grads to be a Float32Array as long as target.params (4), received Float32Array(3)',
  );
});

t.test('every native binding check reports in the shape', async (t) => {
  const n = native() as unknown as Record<string, unknown> & {
    pg: Record<string, (o: unknown) => unknown>;
    gemm(o: unknown): unknown;
  };
  const f = (k: number) => new Float32Array(k);
  const cases: [string, () => unknown, string][] = [
    ['gemm without c', () => n.gemm({ m: 2, n: 2, k: 2, a: f(4), b: f(4) }), 'TypeError'],
    ['gemm with a short c', () => n.gemm({ m: 2, n: 2, k: 2, a: f(4), b: f(4), c: f(1) }), 'RangeError'],
    ['gemm with m = 1.5', () => n.gemm({ m: 1.5, n: 2, k: 2, a: f(4), b: f(4), c: f(4) }), 'TypeError'],
    ['gemm with m = -1', () => n.gemm({ m: -1, n: 2, k: 2, a: f(4), b: f(4), c: f(4) }), 'RangeError'],
    ['gemm with transA = 1', () => n.gemm({ m: 2, n: 2, k: 2, a: f(4), b: f(4), c: f(4), transA: 1 }), 'TypeError'],
    ['pg.gae without options', () => n.pg.gae(undefined), 'TypeError'],
    ['pg.klPerToken estimator', () => n.pg.klPerToken({ logp: f(1), refLogp: f(1), estimator: 'k9' }), 'TypeError'],
    [
      'pg.gae batch × seqLen overflow',
      () => n.pg.gae({ rewards: f(1), values: f(1), mask: f(1), batch: 2 ** 30, seqLen: 2 ** 30, gamma: 1, lambda: 1 }),
      'RangeError',
    ],
  ];
  for (const [what, call, name] of cases) {
    const m = messageOf(call);
    t.equal(m.name, name, what);
    t.match(m.message, SHAPE, `${what}: ${m.message}`);
  }
});
