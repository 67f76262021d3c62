// The KV pool estimate (lib/engine/kv-memory.ts, estimateTrainingMemory's `rollout`) against the
// session: a GenerationSession of the estimated block counts (numBlocks for the global layers,
// windowBlocks for the sliding ones) reports the estimated pool bytes, per group, admits every
// sequence at once (the pools hold all their worst cases) and, one block fewer in either pool,
// makes one wait (the count is exact, not just enough).
import t from 'tap';
import { join } from 'node:path';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { GenerationSession } from '../../lib/engine/generation-session.js';
import { estimateKvPool, kvWindowBlocksPerSequence, type KvPoolOptions } from '../../lib/engine/kv-memory.js';
import { estimateTrainingMemory } from '../../lib/engine/memory.js';
import { modelFixtures } from '../helpers/family-fixture.js';

const cases: KvPoolOptions[] = [
  { sequences: 6, promptLen: 21, maxNewTokens: 9 },
  { sequences: 3, promptLen: 7, maxNewTokens: 30, blockSize: 4, kvDtype: 'bf16' },
  { sequences: 5, promptLen: 1, maxNewTokens: 12, blockSize: 5 },
];

async function admitted(
  m: Model,
  est: ReturnType<typeof estimateKvPool>,
  c: KvPoolOptions,
  numBlocks: number,
  windowBlocks?: number,
) {
  const s = new GenerationSession(m, {
    numBlocks,
    windowBlocks,
    blockSize: c.blockSize ?? 16,
    kvDtype: c.kvDtype ?? 'f32',
    prefixCache: false,
  });
  for (let i = 0; i < c.sequences; i++) {
    // distinct prompts: no sharing, every sequence its own worst case
    const prompt = Array.from({ length: c.promptLen }, (_, k) => (k * 5 + i * 11 + 1) % 50);
    s.addRequest(prompt, { maxNewTokens: c.maxNewTokens, seed: i, stopTokens: [] });
  }
  await s.step();
  const st = s.stats;
  await s.runUntilIdle();
  for (const [i, g] of s.stats.groups.entries())
    t.ok(
      g.peakBlocksInUse <= est.groups[i].blocks,
      `peak ${g.peakBlocksInUse} of ${est.groups[i].blocks} estimated blocks`,
    );
  s.dispose();
  return st;
}

for (const [name, load] of [
  [
    'tiny llama',
    () =>
      Model.create(tinyConfig({ vocab: 61, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 256 }), {
        seed: 1,
      }),
  ],
  ['mistral fixture (every layer slides: one zero block more)', () => Model.load(join(modelFixtures, 'mistral-tiny'))],
  ['gemma2 fixture (a local and a global layer)', () => Model.load(join(modelFixtures, 'gemma2-tiny'))],
  ['gemma3 fixture (two local layers, a global one)', () => Model.load(join(modelFixtures, 'gemma3-tiny'))],
] as const)
  t.test(`${name}: the estimate is the session's pool`, async (t) => {
    const m = await load();
    t.teardown(() => m.dispose());
    for (const c of cases) {
      const est = estimateKvPool(m.config, c);
      const label = JSON.stringify(c);
      const mixed = est.groups.length > 1; // windowBlocks for the sliding pool; else numBlocks sizes the one pool
      const st = await admitted(m, est, c, est.blocks, mixed ? est.windowBlocks : undefined);
      t.equal(st.poolBytes, est.bytes, `${label}: pool bytes ${est.bytes}`);
      t.same(
        st.groups.map((g) => [g.window, g.layers, g.blocksTotal, g.blockBytes, g.poolBytes]),
        est.groups.map((g) => [g.window, g.layers, g.blocks, g.blockBytes, g.bytes]),
        `${label}: per group`,
      );
      t.equal(st.blockBytes, est.blockBytes, `${label}: block bytes`);
      t.equal(st.waiting, 0, `${label}: all ${c.sequences} sequences admitted at once`);
      const short = await admitted(m, est, c, est.blocks - 1, mixed ? est.windowBlocks : undefined);
      t.equal(short.waiting, 1, `${label}: one block fewer, one sequence waits`);
      if (mixed) {
        const shortWindow = await admitted(m, est, c, est.blocks, est.windowBlocks - 1);
        t.equal(shortWindow.waiting, 1, `${label}: one sliding block fewer, one sequence waits`);
      }
      t.equal(
        estimateTrainingMemory(m.config, { batch: 2, seqLen: 8, rollout: c }).kvPool,
        est.bytes,
        `${label}: estimateTrainingMemory's kvPool`,
      );
    }
    t.equal(estimateTrainingMemory(m.config, { batch: 2, seqLen: 8 }).kvPool, 0, 'no rollout, no pool');
  });

// The sliding layers' worst case against every schedule the session can run: a prefill chunk
// [c, c + T) (T up to min(promptLen, tokenBudget)) holds the blocks from the one with position
// c − W + 1 to the one with c + T − 1 (earlier ones were released at the end of the previous step);
// a decode of position c those from c − W + 1 to c. The estimate is never below the largest of
// these, and at most one block above it.
t.test('kvWindowBlocksPerSequence bounds every prefill chunk and decode step', (t) => {
  const live = (from: number, to: number, bs: number) => Math.floor(to / bs) - Math.floor(Math.max(0, from) / bs) + 1;
  let exact = 0,
    cases = 0;
  for (let P = 1; P <= 24; P++)
    for (const M of [1, 2, 9])
      for (const bs of [1, 2, 3, 4, 16])
        for (const W of [1, 2, 5, 9])
          for (const budget of [1, 3, 512]) {
            let worst = 0;
            for (let c = 0; c < P; c++)
              for (let T = 1; T <= Math.min(budget, P - c); T++)
                worst = Math.max(worst, live(c - W + 1, c + T - 1, bs));
            for (let c = P; c < P + M - 1; c++) worst = Math.max(worst, live(c - W + 1, c, bs));
            const est = kvWindowBlocksPerSequence(P, M, bs, W, budget);
            if (est < worst || est > worst + 1)
              t.fail(`P ${P} M ${M} bs ${bs} W ${W} budget ${budget}: ${est} for a worst case of ${worst}`);
            exact += +(est === worst);
            cases++;
          }
  t.ok(exact > 0.8 * cases, `${exact} of ${cases} cases exact, the rest one block above`);
  t.end();
});

t.test('bad options are named', async (t) => {
  const c = tinyConfig({ vocab: 61, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 256 });
  t.throws(() => estimateKvPool(c, { sequences: 0, promptLen: 3, maxNewTokens: 2 }), /options\.sequences/);
  t.throws(
    () => estimateKvPool(c, { sequences: 1, promptLen: 3, maxNewTokens: 2, kvDtype: 'f8' as never }),
    /options\.kvDtype/,
  );
  t.throws(
    () => estimateTrainingMemory(c, { batch: 1, seqLen: 4, rollout: { sequences: 1, promptLen: 0, maxNewTokens: 1 } }),
    /options\.promptLen/,
  );
});
