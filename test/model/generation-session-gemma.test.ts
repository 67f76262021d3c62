// GenerationSession on Gemma 2 (local and global layers alternating, window 5) and Gemma 3 (two
// local layers, then a global one, window 4): the local layers' pool keeps only the window's blocks
// while the global pool keeps every block. Checked here: n samples of one prompt longer than the
// window at several block sizes and budgets are bitwise the static batch (which keeps the full
// cache) and forward(); the local pool's peak stays within a bound computed from the positions; a
// prefix-cache hit needs only the window's blocks of the local pool; cancelling frees both pools;
// the same memory admits more sequences than one pool of every layer would.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { Model } from '../../lib/engine/model.js';
import { GenerationSession } from '../../lib/engine/generation-session.js';
import { bitwiseEqual } from '../helpers/tolerance.js';
import { modelFixtures } from '../helpers/family-fixture.js';
import { sameGeneration, sameInts, staticReference } from '../helpers/static-reference.js';

const promptOf = (len: number, salt: number) => Array.from({ length: len }, (_, i) => (i * 7 + salt * 13 + 1) % 89);
const fixtures = ['gemma2-tiny', 'gemma3-tiny'];

async function load(t: Test, name: string) {
  const m = await Model.load(join(modelFixtures, name));
  t.teardown(() => m.dispose());
  return m;
}

// n samples of one 23-token prompt, different lengths and temperatures
const P = 23;
const samples = [
  { maxNewTokens: 20, seed: 4, stream: 0, temperature: 1 },
  { maxNewTokens: 14, seed: 4, stream: 1, temperature: 1 },
  { maxNewTokens: 20, seed: 4, stream: 2, temperature: 1 },
  { maxNewTokens: 9, seed: 4, stream: 3, temperature: 1 },
];

for (const name of fixtures)
  t.test(`${name}: n samples of a prompt longer than the window, bitwise the static batch and forward()`, async (t) => {
    const m = await load(t, name);
    const W = m.config.slidingWindow;
    const prompt = promptOf(P, 1);
    t.ok(W > 0 && W < P, `window ${W} shorter than the prompt`);
    const refs = await m.generate({
      prompts: samples.map(() => prompt),
      maxNewTokens: 20,
      seed: 4,
      streams: samples.map((q) => q.stream),
      stopTokens: [],
      staticBatch: true,
    });
    // forward()'s log-probs of each sample's full sequence (the static batch's tokens)
    for (const [k, r] of refs.entries()) {
      const seq = [...prompt, ...r.tokens.slice(0, samples[k].maxNewTokens)];
      const targets = new Int32Array(seq.length).fill(-1);
      for (let i = P - 1; i < seq.length - 1; i++) targets[i] = seq[i + 1];
      const f = await m.forward({
        tokens: Int32Array.from(seq),
        targets,
        batch: 1,
        seqLen: seq.length,
        saveForBackward: false,
      });
      t.ok(
        bitwiseEqual(f.logprobs.slice(P - 1, seq.length - 1), r.logprobs.slice(0, samples[k].maxNewTokens)),
        `sample ${k}: the static batch == forward()`,
      );
    }
    for (const o of [
      { blockSize: 1, tokenBudget: 512 },
      { blockSize: 3, tokenBudget: 5 },
      { blockSize: 4, tokenBudget: 64 },
      { blockSize: 16, tokenBudget: 512 },
    ]) {
      const label = `${name} ${JSON.stringify(o)}`;
      const s = new GenerationSession(m, { ...o, numBlocks: 100 });
      const ids = samples.map((q) => s.addRequest(prompt, { ...q, stopTokens: [] }));
      const got = await s.runUntilIdle();
      let same = 0;
      for (const [k, id] of ids.entries()) {
        const g = got.find((x) => x.id === id)!;
        const n = samples[k].maxNewTokens;
        same += +(
          sameInts(g.tokens, refs[k].tokens.slice(0, n)) && bitwiseEqual(g.logprobs, refs[k].logprobs.slice(0, n))
        );
      }
      t.equal(same, samples.length, `${label}: every sample bitwise the static batch (so forward())`);
      const st = s.stats;
      t.equal(st.prefillTokens, P, `${label}: the prompt prefilled once`);
      const [global, local] = st.groups;
      t.equal(global.window, 0);
      t.equal(local.window, W);
      t.equal(global.windowReleased, 0, `${label}: the global pool keeps every block`);
      t.ok(local.windowReleased > 0, `${label}: the local pool released ${local.windowReleased} blocks`);
      // the prefill holds at most the prompt's blocks; then each sample holds the blocks of the W
      // positions its next query reads (the one it writes included): at most ceil((W − 1)/bs) + 1
      const bs = o.blockSize;
      const bound = Math.max(Math.ceil(P / bs), samples.length * (Math.ceil((W - 1) / bs) + 1));
      t.ok(local.peakBlocksInUse <= bound, `${label}: local peak ${local.peakBlocksInUse} <= ${bound}`);
      const longest = Math.ceil((P + 20 - 1) / bs);
      t.ok(global.peakBlocksInUse >= longest, `${label}: global peak ${global.peakBlocksInUse} >= ${longest}`);
      for (const g of st.groups) t.equal(g.blocksInUse, 0, `${label} window ${g.window}: every block back`);
      s.dispose();
    }
  });

for (const name of fixtures)
  t.test(`${name}: a prefix-cache hit takes the global blocks and only the window's local ones`, async (t) => {
    const m = await load(t, name);
    const bs = 4;
    // the local pool holds one sequence's worst case (8 blocks: the 26-token prompt in one chunk)
    const s = new GenerationSession(m, { numBlocks: 64, windowBlocks: 8, blockSize: bs });
    const p = promptOf(26, 4);
    s.addRequest(p, { maxNewTokens: 3, seed: 1, stopTokens: [] });
    await s.runUntilIdle();
    t.equal(s.stats.groups[1].blocksCached, 6, 'the 6 full prompt blocks of the local pool cached');
    // a short request evicts the least recently released local block: the prompt's first one
    s.addRequest(promptOf(8, 7), { maxNewTokens: 2, seed: 1, stopTokens: [] });
    await s.runUntilIdle();
    // 8 local blocks: the prompt's 6 less the evicted one, and the short prompt's 2 full blocks
    t.equal(s.stats.groups[1].blocksCached, 7, "one of the prompt's local blocks evicted");
    t.ok(s.stats.groups[0].blocksCached >= 8, 'the global pool still holds every prompt block');
    // 24 shared positions: the global layers need blocks 0..5, the local ones only block 5
    const q = [...p.slice(0, 24), 11, 12];
    const before = s.stats.prefillTokens;
    const id = s.addRequest(q, { maxNewTokens: 9, seed: 2, stream: 3, stopTokens: [] });
    const [g] = await s.runUntilIdle();
    t.equal(s.stats.prefillTokens - before, 2, 'the 24 shared positions come from the cache');
    const ref = await staticReference(m, { prompt: q, maxNewTokens: 9, seed: 2, stream: 3 });
    t.equal(g.id, id);
    t.ok(sameGeneration(g, ref), 'bitwise the static batch');
    for (const gr of s.stats.groups) t.equal(gr.blocksInUse, 0, `window ${gr.window}: every block back`);
    s.dispose();
  });

for (const name of fixtures)
  t.test(`${name}: cancelling frees the blocks of both pools; a cancelled leader hands over its prefill`, async (t) => {
    const m = await load(t, name);
    const s = new GenerationSession(m, { numBlocks: 64, blockSize: 4, tokenBudget: 8 });
    const p = promptOf(30, 5);
    const lead = s.addRequest(p, { maxNewTokens: 12, seed: 1, stream: 0, stopTokens: [] });
    const f1 = s.addRequest(p, { maxNewTokens: 12, seed: 1, stream: 1, stopTokens: [] });
    const other = s.addRequest(promptOf(9, 2), { maxNewTokens: 40, seed: 1, stream: 2, stopTokens: [] });
    await s.step();
    await s.step();
    t.ok(
      s.stats.groups.every((g) => g.blocksInUse > 0),
      'both pools hold blocks',
    );
    t.equal(s.cancel(lead), true);
    for (let i = 0; i < 6; i++) await s.step();
    t.ok(s.stats.groups[1].windowReleased > 0, 'the local pool released blocks');
    t.equal(s.cancel(other), true);
    const out = await s.runUntilIdle();
    const ref = await staticReference(m, { prompt: p, maxNewTokens: 12, seed: 1, stream: 1 });
    const g = out.find((x) => x.id === f1)!;
    t.ok(sameGeneration(g, ref), 'the follower is unchanged');
    t.equal(out.find((x) => x.id === other)!.finishReason, 'cancelled');
    for (const gr of s.stats.groups) t.equal(gr.blocksInUse, 0, `window ${gr.window}: every block back`);
    // cancelling mid-decode returns both pools' blocks at once
    const s2 = new GenerationSession(m, { numBlocks: 64, blockSize: 4, prefixCache: false });
    const x = s2.addRequest(p, { maxNewTokens: 50, stopTokens: [] });
    for (let i = 0; i < 4; i++) await s2.step();
    t.ok(s2.stats.groups.every((gr) => gr.blocksInUse > 0));
    s2.cancel(x);
    t.same(
      s2.stats.groups.map((gr) => gr.blocksInUse),
      [0, 0],
      'cancel returned every block of both pools',
    );
    s.dispose();
    s2.dispose();
  });

t.test('gemma3: the same KV memory admits more sequences split by window than as one pool', async (t) => {
  const m = await load(t, 'gemma3-tiny');
  const bs = 4;
  const addAll = (s: GenerationSession) => {
    for (let i = 0; i < 8; i++) s.addRequest(promptOf(3, i), { maxNewTokens: 30, seed: i, stopTokens: [] });
  };
  // every pool the same size: 30 blocks of every layer's k/v
  const one = new GenerationSession(m, { numBlocks: 30, blockSize: bs });
  addAll(one);
  await one.step();
  // the same bytes, the sliding pool (2 of the 3 layers) 10 blocks + its zero block, the rest global
  const global = 30 * 3 - (10 + 1) * 2;
  const split = new GenerationSession(m, { numBlocks: global, windowBlocks: 10, blockSize: bs });
  addAll(split);
  await split.step();
  t.ok(split.stats.poolBytes <= one.stats.poolBytes, `${split.stats.poolBytes} <= ${one.stats.poolBytes} bytes`);
  // per sequence: 9 global blocks (36 positions, + 1 copied on write); 2 local (4-position window)
  t.equal(one.stats.running, 3, 'one-size pools: 3 sequences (9 blocks each of 30)');
  t.equal(split.stats.running, 5, 'split: 5 sequences (2 local blocks each of 10)');
  one.dispose();
  split.dispose();
});
