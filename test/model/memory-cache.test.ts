// The cache of freed large buffers (native/core/block_cache.h) seen from a model:
// - a training step after the first maps nothing new from the OS (every block reused);
// - nativeMemoryInUse is the same after every step; the cache is counted apart (nativeMemoryCached);
// - releaseMemory / releaseCachedMemory return the cached blocks; setCacheLimit bounds them;
// - reuse changes no result: a child process with RLHF_CACHE_POISON=1 (every block handed out
//   without zeroing is filled with NaN bytes, fresh or reused) computes forward, backward (plain
//   and checkpointed, padded rows, entropy, values) and generation twice, bit-identical to this
//   process computing them with the cache off (fresh, zeroed pages every time).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { AdamW } from '../../lib/engine/adamw.js';
import {
  nativeMemoryCached,
  nativeMemoryInUse,
  nativeMemoryStats,
  releaseCachedMemory,
  setCacheLimit,
  setThreads,
} from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';

setThreads(1);

const config = tinyConfig({ vocab: 301, hidden: 128, layers: 2, heads: 4, kvHeads: 2, ffn: 200, maxPositions: 256 });
const valueConfig = tinyConfig({
  vocab: 301,
  hidden: 128,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 200,
  maxPositions: 256,
  valueHead: true,
});
const B = 8,
  T = 96,
  N = B * T;

function batch(seed: number) {
  let s = seed;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  const tokens = Int32Array.from({ length: N }, () => next() % 301);
  const lengths = Array.from({ length: B }, (_, b) => (b % 3 === 0 ? T : 1 + (next() % T))); // right padding
  const targets = tokens.map((_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
  const dLogprobs = Float32Array.from({ length: N }, () => (next() % 1000) / 1000 - 0.5);
  return { tokens, targets, lengths, dLogprobs };
}

/** Everything a model computes in one pass, hashed: outputs, gradients, generated tokens. */
async function fingerprint(): Promise<string> {
  const h = createHash('sha256');
  const add = (a: Float32Array | Int32Array) => h.update(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
  for (const ckpt of [false, true]) {
    const m = await Model.create(config, { seed: 3 });
    m.gradientCheckpointing = ckpt;
    const x = batch(7);
    const f = await m.forward({
      tokens: x.tokens,
      targets: x.targets,
      batch: B,
      seqLen: T,
      lengths: x.lengths,
      entropy: true,
    });
    (add(f.logprobs), add(f.entropy!));
    await m.backward({ dLogprobs: x.dLogprobs, dEntropy: x.dLogprobs });
    for (const p of m.parameters()) add(await m.getGradient(p.name));
    const g = await m.generate({
      prompts: Array.from({ length: 16 }, (_, i) => [1 + i, 2 + i, 3]),
      maxNewTokens: 60,
      seed: 5,
      temperature: 1,
    });
    for (const r of g) (add(r.tokens), add(r.logprobs));
    m.dispose();
  }
  const v = await Model.create(valueConfig, { seed: 4 });
  const x = batch(9);
  const f = await v.forward({ tokens: x.tokens, batch: B, seqLen: T, lengths: x.lengths, values: true });
  add(f.values!);
  await v.backward({ dValues: x.dLogprobs });
  for (const p of v.parameters()) add(await v.getGradient(p.name));
  v.dispose();
  return h.digest('hex');
}

async function steadyChild(): Promise<object> {
  const m = await Model.create(config, { seed: 1 });
  const opt = new AdamW(m, { lr: 1e-3 });
  const x = batch(1);
  const step = async () => {
    await m.forward({ tokens: x.tokens, targets: x.targets, batch: B, seqLen: T });
    await m.backward({ dLogprobs: x.dLogprobs });
    await opt.step();
    await m.zeroGrad();
  };
  await step();
  await step();
  const s0 = nativeMemoryStats();
  const inUse: number[] = [];
  const settled = async () => {
    // the outputs of forward that JS dropped, freed
    for (let i = 0; i < 3; i++) ((globalThis as { gc?: () => void }).gc?.(), await new Promise((r) => setImmediate(r)));
    return nativeMemoryInUse();
  };
  for (let i = 0; i < 3; i++) (await step(), inUse.push(await settled()));
  const s1 = nativeMemoryStats(),
    cached = nativeMemoryCached();
  m.releaseActivations();
  const afterReleaseActivations = { cached: nativeMemoryCached(), inUse: nativeMemoryInUse() };
  m.releaseMemory();
  const st = nativeMemoryStats();
  const afterReleaseMemory = { cached: nativeMemoryCached(), mapped: st.mappedBytes, unmaps: st.unmaps };
  opt.dispose();
  m.dispose();
  const releasedAtEnd = releaseCachedMemory();
  return {
    s0,
    s1,
    inUse,
    cached,
    afterReleaseActivations,
    afterReleaseMemory,
    releasedAtEnd,
    cachedAtEnd: nativeMemoryCached(),
  };
}

if (process.argv.includes('--steady-child')) {
  process.stdout.write(JSON.stringify(await steadyChild()) + '\n');
} else if (process.argv.includes('--fingerprint-child')) {
  const first = await fingerprint();
  const second = await fingerprint(); // now from reused (poisoned) blocks
  process.stdout.write(JSON.stringify({ first, second, hits: nativeMemoryStats().hits }) + '\n');
} else {
  t.test('a steady training step maps nothing new; accounting stays exact', async (t) => {
    // in a child with one libuv thread: every step runs on the same thread, whose kernel
    // workspaces are grown by the first step (another thread's first step would grow its own)
    const r = spawnSync(
      process.execPath,
      [...process.execArgv, '--expose-gc', fileURLToPath(import.meta.url), '--steady-child'],
      {
        encoding: 'utf8',
        env: { ...process.env, UV_THREADPOOL_SIZE: '1', RLHF_THREADS: '1' },
      },
    );
    t.equal(r.status, 0, r.stderr);
    const c = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    t.ok(c.s0.misses > 0, `activations of this size come from the cache's blocks (${c.s0.misses} mapped)`);
    t.equal(c.s1.maps, c.s0.maps, 'no new mapping in steps 3 to 5');
    t.equal(c.s1.unmaps, c.s0.unmaps, 'nothing returned to the OS either');
    t.ok(c.s1.hits > c.s0.hits, `blocks reused (${c.s1.hits - c.s0.hits} hits)`);
    t.same(c.inUse, [c.inUse[0], c.inUse[0], c.inUse[0]], 'nativeMemoryInUse the same after every step');
    t.equal(c.cached, c.s1.cachedBytes);
    t.ok(c.afterReleaseActivations.cached > c.s1.cachedBytes, 'released activations go to the cache');
    t.ok(c.afterReleaseActivations.inUse < c.inUse[2], 'and out of nativeMemoryInUse');
    t.equal(c.afterReleaseMemory.cached, 0, 'model.releaseMemory() empties the cache');
    t.equal(
      c.afterReleaseMemory.mapped,
      c.s1.mappedBytes - c.afterReleaseActivations.cached,
      'the OS got back exactly what was cached',
    );
    t.ok(c.afterReleaseMemory.unmaps > c.s1.unmaps, 'and unmaps its blocks');
    t.ok(c.releasedAtEnd > 0, 'releaseCachedMemory returns the bytes it freed');
    t.equal(c.cachedAtEnd, 0);
  });

  t.test('the cache limit is honoured', async (t) => {
    setCacheLimit(0);
    const m = await Model.create(config, { seed: 1 });
    const x = batch(2);
    await m.forward({ tokens: x.tokens, targets: x.targets, batch: B, seqLen: T });
    m.releaseActivations();
    t.equal(nativeMemoryCached(), 0, 'limit 0: nothing kept');
    setCacheLimit(10 << 20);
    await m.forward({ tokens: x.tokens, targets: x.targets, batch: B, seqLen: T });
    await m.backward({ dLogprobs: x.dLogprobs });
    m.releaseActivations();
    t.ok(nativeMemoryCached() <= 10 << 20 && nativeMemoryCached() > 0, `at most 10 MiB kept (${nativeMemoryCached()})`);
    t.equal(nativeMemoryStats().limitBytes, 10 << 20);
    m.dispose();
    setCacheLimit(1 << 30);
    releaseCachedMemory();
  });

  t.test('setCacheLimit validates its argument', async (t) => {
    t.throws(() => setCacheLimit(-1), { name: 'RangeError', message: /setCacheLimit: expected bytes/ });
    t.throws(() => setCacheLimit(1.5), {
      name: 'TypeError',
      message: /setCacheLimit: expected bytes to be an integer/,
    });
    t.throws(() => setCacheLimit('1' as unknown as number), { name: 'TypeError' });
  });

  t.test('reuse of dirty blocks changes no result (RLHF_CACHE_POISON child vs fresh pages)', async (t) => {
    setCacheLimit(0); // every block fresh from the OS: zeroed pages, the old behaviour
    const fresh = await fingerprint();
    setCacheLimit(1 << 30);
    const r = spawnSync(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), '--fingerprint-child'],
      {
        encoding: 'utf8',
        env: { ...process.env, RLHF_CACHE_POISON: '1', RLHF_THREADS: '1' },
      },
    );
    t.equal(r.status, 0, r.stderr);
    const child = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    t.ok(child.hits > 0, `the child reused blocks (${child.hits} hits)`);
    t.equal(child.first, fresh, 'NaN-filled fresh blocks: same bits');
    t.equal(child.second, fresh, 'reused blocks: same bits');
  });
}
