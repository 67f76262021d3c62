// GenerationSession (native/model/session.h): a request's tokens and log-probs are bitwise those of
// the static batch (Model.generate({staticBatch: true}), one prompt, same seed and stream) whatever
// else runs beside it, the block size, prefix sharing, admission time and token budget; they equal
// forward()'s log-probs; Model.generate on the session equals the static batch; blocks all return
// to the pool; cancel frees blocks; identical prompts are prefilled once; bad input is named.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { GenerationSession, type SessionResult } from '../../lib/engine/generation-session.js';
import { bitwiseEqual } from '../helpers/tolerance.js';
import { modelFixtures } from '../helpers/family-fixture.js';
import { sameGeneration, sameInts, staticReference, type SoloRequest } from '../helpers/static-reference.js';

const tiny = () => tinyConfig({ vocab: 61, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 256 });

type Req = SoloRequest;

const promptOf = (len: number, salt: number) => Array.from({ length: len }, (_, i) => (i * 7 + salt * 13 + 1) % 59);

// prompts across block boundaries, a shared one, temperatures 1, 0.7 and greedy, stop tokens
const requests: Req[] = [
  { prompt: promptOf(21, 1), maxNewTokens: 12, seed: 5, stream: 0, stopTokens: [3] },
  { prompt: promptOf(21, 1), maxNewTokens: 9, seed: 5, stream: 1, stopTokens: [3] },
  { prompt: promptOf(21, 1), maxNewTokens: 12, seed: 5, stream: 2, stopTokens: [3], temperature: 0.7 },
  { prompt: promptOf(16, 2), maxNewTokens: 10, seed: 7, stream: 3, stopTokens: [], topK: 8 },
  { prompt: promptOf(1, 3), maxNewTokens: 14, seed: 7, stream: 4, stopTokens: [] },
  { prompt: promptOf(40, 4), maxNewTokens: 6, temperature: 0, stopTokens: [] },
  { prompt: promptOf(16, 2), maxNewTokens: 10, seed: 7, stream: 5, stopTokens: [], topK: 8 },
];

function add(s: GenerationSession, r: Req): number {
  const { prompt, ...o } = r;
  return s.addRequest(prompt, { stopTokens: [], ...o });
}

async function sameAsReference(t: Test, m: Model, got: SessionResult[], ids: number[], label: string) {
  const byId = new Map(got.map((g) => [g.id, g]));
  let ok = 0;
  for (let i = 0; i < ids.length; i++) {
    const g = byId.get(ids[i])!;
    const ref = await staticReference(m, requests[i % requests.length]);
    if (sameInts(g.tokens, ref.tokens) && bitwiseEqual(g.logprobs, ref.logprobs) && g.finishReason === ref.finishReason)
      ok++;
    else t.fail(`${label}: request ${i} differs from the static batch`);
  }
  t.equal(ok, ids.length, `${label}: ${ok}/${ids.length} requests bitwise equal to the static batch`);
}

t.test('session == static batch, whatever the block size, budget, sharing, admission time', async (t) => {
  const m = await Model.create(tiny(), { seed: 3, initStd: 0.3 });
  const settings = [
    { blockSize: 16, tokenBudget: 512, numBlocks: 64 },
    { blockSize: 1, tokenBudget: 7, numBlocks: 400 },
    { blockSize: 4, tokenBudget: 3, numBlocks: 120, prefixCache: false },
    { blockSize: 5, tokenBudget: 64, numBlocks: 40, maxRunning: 2 },
    { blockSize: 64, tokenBudget: 1, numBlocks: 14 },
  ];
  for (const o of settings) {
    const label = JSON.stringify(o);
    const s = new GenerationSession(m, o);
    // half the requests now, the rest after two steps (admission time differs)
    const ids = requests.slice(0, 3).map((r) => add(s, r));
    await s.step();
    await s.step();
    ids.push(...requests.slice(3).map((r) => add(s, r)));
    const got = await s.runUntilIdle();
    await sameAsReference(t, m, got, ids, label);
    const st = s.stats;
    t.equal(st.blocksInUse, 0, `${label}: every block back in the pool`);
    t.ok(st.peakBlocksInUse <= o.numBlocks, `${label}: peak ${st.peakBlocksInUse} within the pool`);
    s.dispose();
  }
  // alone: one request per session
  const alone: SessionResult[] = [];
  const ids: number[] = [];
  for (const r of requests) {
    const s = new GenerationSession(m, { numBlocks: 20, blockSize: 8 });
    const id = add(s, r);
    const [g] = await s.runUntilIdle();
    alone.push({ ...g, id: ids.length });
    ids.push(ids.length);
    t.equal(id, 0);
    s.dispose();
  }
  await sameAsReference(t, m, alone, ids, 'one request per session');
});

t.test(
  "progress() hands out each running request's new tokens once; with collect() they make the result",
  async (t) => {
    const m = await Model.create(tiny(), { seed: 3, initStd: 0.3 });
    t.teardown(() => m.dispose());
    const s = new GenerationSession(m, { numBlocks: 64, blockSize: 4, tokenBudget: 9 });
    const ids = requests.map((r) => add(s, r));
    const streamed = new Map<number, { tokens: number[]; logprobs: number[] }>(
      ids.map((id) => [id, { tokens: [], logprobs: [] }]),
    );
    const done: SessionResult[] = [];
    let reports = 0;
    while (!s.idle) {
      await s.step();
      const running = s.stats.running;
      const p = s.progress();
      t.ok(p.length <= running, 'only running requests report');
      for (const u of p) {
        reports++;
        t.ok(u.tokens.length >= 1 && u.tokens.length === u.logprobs.length, 'new tokens only, one log-prob each');
        streamed.get(u.id)!.tokens.push(...u.tokens);
        streamed.get(u.id)!.logprobs.push(...u.logprobs);
      }
      t.same(s.progress(), [], 'a second call right after reports nothing');
      done.push(...s.collect());
    }
    t.ok(reports > requests.length, `${reports} progress reports`);
    let prefixes = 0;
    for (const g of done) {
      const seen = streamed.get(g.id)!;
      if (
        seen.tokens.length < g.tokens.length &&
        sameInts(Int32Array.from(seen.tokens), g.tokens.subarray(0, seen.tokens.length)) &&
        bitwiseEqual(Float32Array.from(seen.logprobs), g.logprobs.subarray(0, seen.logprobs.length))
      )
        prefixes++;
    }
    t.equal(prefixes, requests.length, 'every streamed sequence is a strict prefix of the collected result');
    await sameAsReference(t, m, done, ids, 'streamed session');
    s.dispose();
  },
);

t.test('identical prompts are prefilled once; a common prefix is reused from the prefix cache', async (t) => {
  const m = await Model.create(tiny(), { seed: 4, initStd: 0.3 });
  const s = new GenerationSession(m, { numBlocks: 64, blockSize: 8 });
  const p = promptOf(21, 9);
  for (let k = 0; k < 4; k++) s.addRequest(p, { maxNewTokens: 5, seed: 1, stream: k, stopTokens: [] });
  await s.runUntilIdle();
  t.equal(s.stats.prefillTokens, 21, '4 samples of a 21-token prompt: 21 prompt positions computed');
  t.equal(s.stats.sharedTokens, 3 * 21);
  // a later prompt sharing the first 16 tokens (2 full blocks) reuses them from the prefix cache
  const q = [...p.slice(0, 16), 5, 6, 7];
  const before = s.stats.prefillTokens;
  const id = s.addRequest(q, { maxNewTokens: 6, seed: 2, stream: 9, stopTokens: [] });
  const [g] = await s.runUntilIdle();
  t.equal(s.stats.prefillTokens - before, 3, 'only the 3 new prompt positions computed');
  const ref = await staticReference(m, { prompt: q, maxNewTokens: 6, seed: 2, stream: 9 });
  t.equal(g.id, id);
  t.ok(sameGeneration(g, ref), 'prefix-cache hit: bitwise the static batch');
  t.equal(s.stats.blocksInUse, 0);
  t.ok(s.stats.blocksCached >= 2, 'full prompt blocks stay cached after the requests end');
  // a pool too small to keep them: cached blocks are evicted, results unchanged
  const small = new GenerationSession(m, { numBlocks: 6, blockSize: 8 });
  const a = small.addRequest(p, { maxNewTokens: 5, seed: 1, stream: 0, stopTokens: [] });
  const b = small.addRequest(promptOf(30, 3), { maxNewTokens: 8, seed: 1, stream: 1, stopTokens: [] });
  const out = await small.runUntilIdle();
  const [ra, rb] = await m.generate({
    prompts: [p, promptOf(30, 3)],
    maxNewTokens: 8,
    seed: 1,
    streams: [0, 1],
    stopTokens: [],
    staticBatch: true,
  });
  const ga = out.find((x) => x.id === a)!,
    gb = out.find((x) => x.id === b)!;
  t.ok(sameInts(ga.tokens, ra.tokens.slice(0, 5)) && sameInts(gb.tokens, rb.tokens), 'small pool: same tokens');
  t.ok(bitwiseEqual(gb.logprobs, rb.logprobs), 'small pool: same log-probs');
});

t.test('session log-probs equal forward(); Model.generate on the session equals the static batch', async (t) => {
  for (const name of ['mistral-tiny', 'gemma2-tiny', 'qwen3-tiny']) {
    const m = await Model.load(join(modelFixtures, name));
    const V = m.config.vocab;
    const prompts = [
      promptOf(12, 1).map((x) => x % V),
      promptOf(12, 1).map((x) => x % V),
      promptOf(30, 2).map((x) => x % V),
      [2],
    ];
    for (const temperature of [1, 0.8, 0]) {
      const opts = { prompts, maxNewTokens: 10, temperature, topP: 0.9, seed: 3, stopTokens: [] };
      const a = await m.generate(opts);
      const b = await m.generate({ ...opts, staticBatch: true });
      let same = 0;
      for (let r = 0; r < prompts.length; r++) same += +sameGeneration(a[r], b[r]);
      t.equal(same, prompts.length, `${name} T=${temperature}: generate on the session == static batch (bitwise)`);
      for (let r = 0; r < prompts.length; r++) {
        const seq = [...prompts[r], ...a[r].tokens];
        const T = seq.length;
        const targets = new Int32Array(T).fill(-1);
        for (let i = prompts[r].length - 1; i < T - 1; i++) targets[i] = seq[i + 1];
        const f = await m.forward({
          tokens: Int32Array.from(seq),
          targets,
          batch: 1,
          seqLen: T,
          saveForBackward: false,
          temperature: temperature > 0 ? temperature : 1,
        });
        t.ok(
          bitwiseEqual(f.logprobs.slice(prompts[r].length - 1, T - 1), a[r].logprobs),
          `${name} T=${temperature} row ${r}: == forward (bitwise)`,
        );
      }
    }
    m.dispose();
  }
});

t.test('cancel frees blocks; a cancelled leader hands its prefill to a follower', async (t) => {
  const m = await Model.create(tiny(), { seed: 5, initStd: 0.3 });
  const s = new GenerationSession(m, { numBlocks: 64, blockSize: 4, tokenBudget: 8 });
  const p = promptOf(30, 5);
  const lead = s.addRequest(p, { maxNewTokens: 6, seed: 1, stream: 0, stopTokens: [] });
  const f1 = s.addRequest(p, { maxNewTokens: 6, seed: 1, stream: 1, stopTokens: [] });
  const f2 = s.addRequest(p, { maxNewTokens: 6, seed: 1, stream: 2, stopTokens: [] });
  await s.step(); // admitted; 8 of the 30 prompt positions computed
  t.ok(s.stats.blocksInUse > 0);
  t.equal(s.cancel(lead), true);
  t.equal(s.cancel(lead), false, 'cancelling twice: false');
  const out = await s.runUntilIdle();
  t.equal(out.find((x) => x.id === lead)!.finishReason, 'cancelled');
  const refs = await m.generate({
    prompts: [p, p],
    maxNewTokens: 6,
    seed: 1,
    streams: [1, 2],
    stopTokens: [],
    staticBatch: true,
  });
  for (const [k, id] of [f1, f2].entries()) {
    const g = out.find((x) => x.id === id)!;
    t.ok(sameGeneration(g, refs[k]), `follower ${k}: unchanged by the cancel`);
  }
  t.equal(s.stats.prefillTokens, 30, 'the prompt was still prefilled once');
  t.equal(s.stats.blocksInUse, 0);
  // cancelling a running decode frees its blocks at once
  const s2 = new GenerationSession(m, { numBlocks: 64, blockSize: 4, prefixCache: false });
  const x = s2.addRequest(p, { maxNewTokens: 50, stopTokens: [] });
  await s2.step();
  await s2.step();
  t.ok(s2.stats.blocksInUse >= 8);
  s2.cancel(x);
  t.equal(s2.stats.blocksInUse, 0, 'cancel returned every block');
  t.equal(s2.idle, true);
});

t.test('bad arguments are named', async (t) => {
  const m = await Model.create(tiny(), { seed: 6 });
  t.throws(() => new GenerationSession(m, {} as never), /options\.numBlocks/);
  t.throws(() => new GenerationSession(m, { numBlocks: 4, blockSize: 0 }), /options\.blockSize/);
  t.throws(() => new GenerationSession(m, { numBlocks: 4, tokenBudget: 0 }), /options\.tokenBudget/);
  t.throws(() => new GenerationSession(m, { numBlocks: 4, windowBlocks: 0 }), /options\.windowBlocks/);
  t.throws(() => new GenerationSession(m, { numBlocks: 4, block: 3 } as never), /options/);
  const s = new GenerationSession(m, { numBlocks: 4, blockSize: 4 });
  t.throws(() => s.addRequest([], { maxNewTokens: 2 }), /prompt/);
  t.throws(() => s.addRequest([1], { maxNewTokens: 0 }), /options\.maxNewTokens/);
  t.throws(() => s.addRequest([1, 99], { maxNewTokens: 2 }), /prompt\[1\] = 99 is outside the vocabulary/);
  t.throws(
    () => s.addRequest(promptOf(20, 1), { maxNewTokens: 4 }),
    /needs up to \d+ KV blocks of the global layers' pool, which holds 4 \(raise numBlocks\)/,
  );
  t.throws(() => s.addRequest([1], { maxNewTokens: 300 }), /max_position_embeddings/);
  t.throws(() => s.addRequest([1], { maxNewTokens: 2, topP: 0 }), /options\.topP/);
  t.throws(() => s.cancel(-1), /id/);
  s.dispose();
  t.throws(() => s.addRequest([1], { maxNewTokens: 2 }), /disposed/);
  const s2 = new GenerationSession(m, { numBlocks: 4 });
  m.dispose();
  t.throws(() => s2.addRequest([1], { maxNewTokens: 2 }), /disposed/);
});
