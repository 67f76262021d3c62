// Liveness and error classes: an optimizer whose model was disposed refuses with ERR_RLHF_DISPOSED
// instead of writing freed memory; a typed array transferred away while a native step runs does
// not crash the process (its memory is pinned); coded native errors (busy, out of memory, invalid
// state) are RlhfError instances; backward runs once per forward. The crash scenarios run in a
// child process (test/fixtures/children/liveness.ts) so a crash is seen as a signal.
import t, { type Test } from 'tap';
import { AdamW } from '../../lib/engine/adamw.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { ErrorCode, RlhfError } from '../../lib/errors.js';
import { runTsChild } from '../helpers/child.js';

const CHILD = 'test/fixtures/children/liveness.ts';
const tiny = () => tinyConfig({ vocab: 61, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64 });

function child(t: Test, scenario: string): Record<string, unknown> {
  const r = runTsChild(CHILD, [scenario], ['--expose-gc']);
  t.equal(r.signal, null, `${scenario}: no signal (a crash would be SIGSEGV/SIGABRT); stderr: ${r.stderr.slice(-400)}`);
  t.equal(r.status, 0, `${scenario}: exit code 0`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    t.fail(`${scenario}: no report line, stdout ${JSON.stringify(r.stdout.slice(-400))}`);
    return {};
  }
}

t.test('AdamW.step() after model.dispose(): ERR_RLHF_DISPOSED, no write to freed memory (child process)', async (t) => {
  const r = child(t, 'stepAfterModelDispose');
  t.match(r, {
    ok: false,
    name: 'RlhfError',
    code: 'ERR_RLHF_DISPOSED',
    instance: true,
    message: /AdamW\.step\(\): the model it updates was disposed/,
  });
});

t.test(
  'transferring a user AdamW target away during a pending step + forced GC: no crash (child process)',
  async (t) => {
    const r = child(t, 'transferDuringStep');
    t.match(
      r,
      {
        ok: false,
        name: 'TypeError',
        message: /AdamW\.step\(\): the target's params\/grads arrays were detached \(transferred\)/,
      },
      'the next step is refused by name',
    );
  },
);

t.test('coded native errors arrive as RlhfError with .code', async (t) => {
  const m = await Model.create(tiny(), { seed: 1 });
  const tokens = new Int32Array(8).fill(1);
  const p = m.forward({ tokens, batch: 1, seqLen: 8 });
  const busy = await m.forward({ tokens, batch: 1, seqLen: 8 }).catch((e: unknown) => e);
  await p;
  t.ok(busy instanceof RlhfError, 'busy model: instanceof RlhfError');
  t.equal((busy as RlhfError).code, ErrorCode.BUSY);
  const params = new Float32Array(1 << 16),
    grads = new Float32Array(1 << 16);
  const opt = new AdamW({ params, grads });
  const first = opt.step();
  const optBusy = await opt.step().catch((e: unknown) => e);
  await first;
  t.ok(optBusy instanceof RlhfError && optBusy.code === ErrorCode.BUSY, 'busy optimizer: RlhfError ERR_RLHF_BUSY');
  opt.dispose();
  const oom = await Model.create(
    tinyConfig({ vocab: 2 ** 30, hidden: 2 ** 16, layers: 1, heads: 64, kvHeads: 64, ffn: 8, maxPositions: 8 }),
  ).catch((e: unknown) => e);
  t.ok(oom instanceof RlhfError, 'out of memory: instanceof RlhfError');
  t.equal((oom as RlhfError).code, ErrorCode.OUT_OF_MEMORY);
  // argument errors stay TypeError/RangeError
  const range = await m.forward({ tokens: new Int32Array(8).fill(99), batch: 1, seqLen: 8 }).catch((e: unknown) => e);
  t.ok(range instanceof RangeError && !(range instanceof RlhfError), 'a bad token id is a RangeError');
  m.dispose();
});

t.test('backward runs once per forward: a second one is ERR_RLHF_INVALID_STATE until a new forward', async (t) => {
  const m = await Model.create(tiny(), { seed: 2 });
  const N = 2 * 8,
    tokens = Int32Array.from({ length: N }, (_, i) => (i * 5) % 61),
    targets = tokens.map((x, i) => (i % 8 === 7 ? -1 : tokens[i + 1]));
  const d = new Float32Array(N).fill(-1 / N);
  await m.forward({ tokens, targets, batch: 2, seqLen: 8 });
  await m.backward({ dLogprobs: d });
  const g1 = await m.getGradient('model.layers.0.mlp.up_proj.weight');
  const again = await m.backward({ dLogprobs: d }).catch((e: unknown) => e);
  t.ok(again instanceof RlhfError, 'refused with an RlhfError');
  t.match(again, {
    code: ErrorCode.INVALID_STATE,
    message: /backward: already ran on the last forward's activations; run forward again/,
  });
  t.same(
    await m.getGradient('model.layers.0.mlp.up_proj.weight'),
    g1,
    'the refused call left the gradients as they were',
  );
  await m.forward({ tokens, targets, batch: 2, seqLen: 8 });
  await m.backward({ dLogprobs: d });
  const g2 = await m.getGradient('model.layers.0.mlp.up_proj.weight');
  t.ok(
    g2.every((x, i) => Math.abs(x - 2 * g1[i]) <= 1e-6 + 1e-5 * Math.abs(x)),
    'a new forward re-arms backward (gradients accumulate)',
  );
  const fresh = await Model.create(tiny(), { seed: 2 });
  await t.rejects(
    fresh.backward({ dLogprobs: d }),
    { code: ErrorCode.INVALID_STATE, message: /no saved activations/ },
    'backward before any forward',
  );
  m.dispose();
  fresh.dispose();
});

t.test('a tensor-parallel model refuses the second backward before touching any shard', async (t) => {
  const cfg = tinyConfig({ vocab: 61, hidden: 32, layers: 1, heads: 4, kvHeads: 1, ffn: 48, maxPositions: 64 });
  const m = await Model.create(cfg, { seed: 3, tensorParallel: 2 });
  const N = 8,
    tokens = Int32Array.from({ length: N }, (_, i) => i + 1),
    targets = tokens.map((x, i) => (i === N - 1 ? -1 : tokens[i + 1]));
  await m.forward({ tokens, targets, batch: 1, seqLen: N });
  await m.backward({ dLogprobs: new Float32Array(N).fill(-0.1) });
  const before = await m.getGradient('model.layers.0.self_attn.k_proj.weight');
  await t.rejects(m.backward({ dLogprobs: new Float32Array(N).fill(-0.1) }), { code: ErrorCode.INVALID_STATE });
  t.same(await m.getGradient('model.layers.0.self_attn.k_proj.weight'), before, 'replicated K/V gradients untouched');
  m.dispose();
});

t.test('AdamW over a disposed model, in process: refused before any native pointer is used', async (t) => {
  const m = await Model.create(tiny(), { seed: 4 });
  const opt = new AdamW(m);
  m.dispose();
  await t.rejects(opt.step(), { name: 'RlhfError', code: ErrorCode.DISPOSED });
  t.throws(() => new AdamW(m), { code: ErrorCode.DISPOSED });
  opt.dispose();
});
