// GenerationSession with sliding-window layers: the sliding layers' pool (every layer of the Mistral
// fixture, window 5; Gemma 2's and 3's local layers, windows 5 and 4) gets back the blocks wholly
// outside the window while the sequence runs, the global layers' pool keeps every block, and every
// request's tokens and log-probs stay bitwise those of the static batch (which keeps the full
// cache and masks). Pool bytes are checked against the config, per group.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { Model } from '../../lib/engine/model.js';
import { GenerationSession } from '../../lib/engine/generation-session.js';
import { modelFixtures } from '../helpers/family-fixture.js';
import { sameGeneration, staticReference } from '../helpers/static-reference.js';

const promptOf = (len: number, salt: number) => Array.from({ length: len }, (_, i) => (i * 7 + salt * 13 + 1) % 89);

// two identical prompts (shared prefill), prompts longer and shorter than the window, greedy and sampled
const requests = [
  { prompt: promptOf(19, 1), maxNewTokens: 24, seed: 5, stream: 0 },
  { prompt: promptOf(19, 1), maxNewTokens: 17, seed: 5, stream: 1 },
  { prompt: promptOf(3, 2), maxNewTokens: 30, seed: 6, stream: 2, temperature: 0.7 },
  { prompt: promptOf(33, 3), maxNewTokens: 12, temperature: 0 },
];

async function check(t: Test, fixture: string) {
  const m = await Model.load(join(modelFixtures, fixture));
  t.teardown(() => m.dispose());
  const W = m.config.slidingWindow;
  t.ok(W > 0 && W < 12, `${fixture}: window ${W}, shorter than every generation`);
  const refs = [];
  for (const r of requests) refs.push(await staticReference(m, r));
  for (const o of [
    { blockSize: 1, tokenBudget: 512 },
    { blockSize: 2, tokenBudget: 7 },
    { blockSize: 4, tokenBudget: 64 },
    { blockSize: 16, tokenBudget: 512 },
  ]) {
    const label = `${fixture} ${JSON.stringify(o)}`;
    const s = new GenerationSession(m, { ...o, numBlocks: 200 });
    const ids = requests.map(({ prompt, ...q }) => s.addRequest(prompt, { ...q, stopTokens: [] }));
    const got = [];
    let bytesSeen = 0;
    while (!s.idle) {
      await s.step();
      got.push(...s.collect());
      const st = s.stats;
      const inUse = st.groups.reduce((a, g) => a + g.blocksInUse * g.blockBytes, 0);
      if (st.kvBytesInUse !== inUse) t.fail(`${fixture}: kvBytesInUse ${st.kvBytesInUse} != ${inUse}`);
      bytesSeen = Math.max(bytesSeen, inUse);
    }
    let same = 0;
    for (const [k, id] of ids.entries()) {
      const g = got.find((x) => x.id === id)!;
      if (sameGeneration(g, refs[k])) same++;
    }
    t.equal(same, requests.length, `${label}: every request bitwise the static batch`);
    const st = s.stats;
    t.equal(st.blocksInUse, 0, `${label}: every block back`);
    const c = m.config;
    const slides = (l: number) => c.slidingLayers.length === 0 || c.slidingLayers[l] !== 0;
    const localLayers = Array.from({ length: c.layers }, (_, l) => l).filter(slides).length;
    const layerBlock = 2 * o.blockSize * c.kvHeads * c.headDim * 4;
    t.same(
      st.groups.map((g) => [g.window, g.layers]),
      [...(localLayers < c.layers ? [[0, c.layers - localLayers]] : []), [W, localLayers]],
      `${label}: the groups`,
    );
    // without release, the four sequences hold ceil((prompt + new − 1) / blockSize) blocks each at the end
    const full = requests.reduce((a, r) => a + Math.ceil((r.prompt.length + r.maxNewTokens - 1) / o.blockSize), 0);
    for (const g of st.groups) {
      t.equal(g.blocksInUse, 0, `${label} window ${g.window}: every block back`);
      t.equal(g.blockBytes, g.layers * layerBlock, `${label} window ${g.window}: block bytes`);
      t.equal(g.poolBytes, (200 + (g.window > 0 ? 1 : 0)) * g.blockBytes, `${label}: the pool (+ a zero block)`);
      if (g.window === 0) {
        t.equal(g.windowReleased, 0, `${label}: the global layers keep every block`);
        // a sequence ends holding every block of its positions
        const longest = Math.max(
          ...requests.map((r) => Math.ceil((r.prompt.length + r.maxNewTokens - 1) / o.blockSize)),
        );
        t.ok(g.peakBlocksInUse >= longest, `${label}: global peak ${g.peakBlocksInUse} >= ${longest}`);
        continue;
      }
      // decoding, a sequence holds the blocks of its last W positions, one it is writing and one
      // copied on write: ceil((W − 1) / blockSize) + 2; a prompt's blocks are released only at
      // the end of the step that prefilled them
      const prompts = [19, 3, 33].reduce((a, n) => a + Math.ceil(n / o.blockSize), 0);
      const bound = prompts + requests.length * (Math.ceil((W - 1) / o.blockSize) + 2);
      t.ok(g.windowReleased > 0, `${label}: ${g.windowReleased} blocks released`);
      t.ok(g.peakBlocksInUse <= bound, `${label}: peak ${g.peakBlocksInUse} blocks within the window's bound ${bound}`);
      t.ok(g.peakBlocksInUse < full, `${label}: peak ${g.peakBlocksInUse} < ${full} blocks of the full cache`);
    }
    t.equal(
      st.windowReleased,
      st.groups.reduce((a, g) => a + g.windowReleased, 0),
      `${label}: windowReleased`,
    );
    t.equal(
      st.poolBytes,
      st.groups.reduce((a, g) => a + g.poolBytes, 0),
      `${label}: poolBytes`,
    );
    t.equal(st.blockBytes, c.layers * layerBlock, `${label}: blockBytes: every layer`);
    const peakBound = st.groups.reduce((a, g) => a + g.peakBlocksInUse * g.blockBytes, 0);
    t.ok(
      st.peakKvBytes >= bytesSeen && st.peakKvBytes <= peakBound,
      `${label}: peakKvBytes ${st.peakKvBytes} in [${bytesSeen} seen, ${peakBound}]`,
    );
    s.dispose();
  }
}

t.test('Mistral (every layer slides): blocks outside the window are released, results bitwise unchanged', (t) =>
  check(t, 'mistral-tiny'),
);
t.test('Gemma 2 and 3: the local layers release, the global layers keep every block, results unchanged', async (t) => {
  await check(t, 'gemma2-tiny');
  await check(t, 'gemma3-tiny');
});

t.test('a prefix-cache hit on blocks the window released reads them back intact', async (t) => {
  const m = await Model.load(join(modelFixtures, 'mistral-tiny'));
  t.teardown(() => m.dispose());
  const s = new GenerationSession(m, { numBlocks: 64, blockSize: 4 });
  const p = promptOf(26, 4);
  s.addRequest(p, { maxNewTokens: 10, seed: 1, stopTokens: [] });
  await s.runUntilIdle();
  t.ok(s.stats.windowReleased > 0 && s.stats.blocksCached >= 6, 'prompt blocks released into the prefix cache');
  const q = [...p.slice(0, 24), 11, 12];
  const id = s.addRequest(q, { maxNewTokens: 9, seed: 2, stream: 3, stopTokens: [] });
  const before = s.stats.prefillTokens;
  const [g] = await s.runUntilIdle();
  t.equal(s.stats.prefillTokens - before, 2, 'the 24 shared positions come from the cache');
  const ref = await staticReference(m, { prompt: q, maxNewTokens: 9, seed: 2, stream: 3 });
  t.equal(g.id, id);
  t.ok(sameGeneration(g, ref), 'bitwise the static batch');
  s.dispose();
});
