// The serving scheduler on a GenerationSession: concurrent requests are decoded in the same
// session steps, each with its own sampling parameters, and each gets exactly (bit for bit) what it
// gets alone — which is also Model.generate's static batch for the same seed and stream.
import t from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { Scheduler, type ChoiceResult, type SamplingParams } from '../../lib/serve/index.js';
import { tinyCheckpoint } from './helpers.js';

setThreads(1);
const ck = await tinyCheckpoint();
const { model, tokenizer } = ck;
t.teardown(() => {
  model.dispose();
  ck.cleanup();
});

const params = (o: Partial<SamplingParams>): SamplingParams => ({
  maxTokens: 24,
  temperature: 1,
  topP: 1,
  topK: 0,
  seed: 0,
  stop: [],
  logprobs: true,
  ...o,
});
const a = {
  ids: Int32Array.from(tokenizer.encode('first prompt', { addSpecialTokens: true })),
  p: params({ temperature: 0.8, topK: 20, seed: 7 }),
};
const b = {
  ids: Int32Array.from(tokenizer.encode('another, longer prompt', { addSpecialTokens: true })),
  p: params({ temperature: 1.2, topP: 0.9, seed: 8, maxTokens: 30 }),
};

const flat = (rs: ChoiceResult[]) =>
  rs.map((r) => ({ ids: r.tokens.map((x) => x.id), lps: r.tokens.map((x) => x.logprob), finish: r.finishReason }));

t.test('two concurrent requests share steps and each equals its solo result bit for bit', async (t) => {
  const solo = [];
  const soloSteps = [];
  for (const r of [a, b]) {
    const s = new Scheduler(model, tokenizer);
    t.equal(s.mode, 'session');
    solo.push(flat(await s.submit(r.ids, 2, r.p).done));
    soloSteps.push(s.stats.batches);
    await s.close();
  }
  t.ok(solo[0][0].ids.length >= 4 && solo[1][0].ids.length >= 4, 'long enough generations to share steps');

  const s = new Scheduler(model, tokenizer);
  const stepsOf: Array<Set<number>> = [new Set(), new Set()];
  const jobs = [a, b].map((r, k) => s.submit(r.ids, 2, r.p, () => stepsOf[k].add(s.stats.batches)));
  const together = [flat(await jobs[0].done), flat(await jobs[1].done)];
  await s.close();
  t.same(together[0], solo[0], 'request A: the same tokens and log-probs as alone');
  t.same(together[1], solo[1], 'request B: the same tokens and log-probs as alone');
  const shared = [...stepsOf[0]].filter((x) => stepsOf[1].has(x)).length;
  t.ok(shared >= 3, `both requests received tokens in ${shared} of the same steps`);
  t.equal(s.stats.maxRowsInBatch, 4, 'one step decoded all four rows (2 requests × n = 2)');
  t.ok(
    s.stats.batches < soloSteps[0] + soloSteps[1],
    `fewer steps together (${s.stats.batches}) than one after the other (${soloSteps[0]} + ${soloSteps[1]})`,
  );

  // the independent reference: the static batch of Model.generate, choice j = Philox stream j
  for (const [k, r] of [a, b].entries()) {
    const ref = await model.generate({
      prompts: [r.ids, r.ids],
      maxNewTokens: r.p.maxTokens,
      temperature: r.p.temperature,
      topP: r.p.topP,
      topK: r.p.topK,
      seed: r.p.seed,
      streams: [0, 1],
      stopTokens: tokenizer.stopIds,
      staticBatch: true,
    });
    ref.forEach((g, j) => {
      const n = g.finishReason === 'stop' ? g.tokens.length - 1 : g.tokens.length;
      t.same(together[k][j].ids, Array.from(g.tokens.subarray(0, n)), `request ${k} choice ${j}: generate's tokens`);
      t.same(
        together[k][j].lps,
        Array.from(g.logprobs.subarray(0, n)),
        `request ${k} choice ${j}: generate's log-probs`,
      );
      t.equal(together[k][j].finish, g.finishReason);
    });
  }
});

t.test('a cancelled request frees its KV blocks; a stop string ends the session request', async (t) => {
  const s = new Scheduler(model, tokenizer);
  t.teardown(() => s.close());
  let updates = 0;
  const long = s.submit(a.ids, 1, params({ maxTokens: 200, seed: 1 }), () => {
    if (++updates === 3) long.cancel();
  });
  const [r] = await long.done;
  t.equal(r.finishReason, 'cancelled');
  t.ok(s.stats.generatedTokens < 20, `generation stopped early (${s.stats.generatedTokens} tokens)`);
  t.equal(s.kvStats!.blocksInUse, 0, 'no block is held after the cancellation');
  t.equal(s.kvStats!.running + s.kvStats!.waiting, 0, 'the session has nothing left to run');

  // a stop string that cuts the text: the row ends and its session request is cancelled at once
  const ref = flat(await s.submit(b.ids, 1, params({ maxTokens: 40, seed: 3, temperature: 0 })).done)[0];
  const text = tokenizer.decode(ref.ids);
  t.ok(text.length >= 6, `a long enough greedy text (${JSON.stringify(text)})`);
  const stop = text.slice(3, 5);
  const before = s.stats.generatedTokens;
  const [cut] = await s.submit(b.ids, 1, params({ maxTokens: 40, seed: 3, temperature: 0, stop: [stop] })).done;
  t.equal(cut.text, text.slice(0, text.indexOf(stop)));
  t.equal(cut.finishReason, 'stop');
  t.ok(s.stats.generatedTokens - before < ref.ids.length, 'generation ended at the stop string');
  t.equal(s.kvStats!.blocksInUse, 0, 'no block is held after the stop string');
});

t.test('a model the session refuses (tensor-parallel) is served in generate chunks', async (t) => {
  const tp = await Model.create(model.config, { seed: 3, initStd: 0.3, tensorParallel: 2 });
  t.teardown(() => tp.dispose());
  const s = new Scheduler(tp, tokenizer, { chunkTokens: 5 });
  t.teardown(() => s.close());
  t.equal(s.mode, 'chunked');
  t.equal(s.kvStats, undefined, 'no KV pool');
  const [greedy] = await s.submit(a.ids, 1, params({ temperature: 0, maxTokens: 17 })).done;
  const [ref] = await tp.generate({
    prompts: [a.ids],
    maxNewTokens: 17,
    temperature: 0,
    stopTokens: tokenizer.stopIds,
  });
  const n = ref.finishReason === 'stop' ? ref.tokens.length - 1 : ref.tokens.length;
  t.same(
    greedy.tokens.map((x) => x.id),
    Array.from(ref.tokens.subarray(0, n)),
    'greedy: the tokens of one generate call',
  );
  t.ok(s.stats.batches >= Math.ceil(greedy.completionTokens / 5), `${s.stats.batches} chunks of 5 tokens`);
});

t.test("kvDtype 'bf16': half the KV bytes per block, Model.generate({kvDtype: 'bf16'})'s tokens", async (t) => {
  const f32 = new Scheduler(model, tokenizer);
  const bf = new Scheduler(model, tokenizer, { kvDtype: 'bf16' });
  t.teardown(async () => {
    await f32.close();
    await bf.close();
  });
  t.equal(bf.kvStats!.blockBytes * 2, f32.kvStats!.blockBytes);
  const [r] = await bf.submit(a.ids, 1, a.p).done;
  const [ref] = await model.generate({
    prompts: [a.ids],
    maxNewTokens: a.p.maxTokens,
    temperature: a.p.temperature,
    topK: a.p.topK,
    seed: a.p.seed,
    streams: [0],
    stopTokens: tokenizer.stopIds,
    kvDtype: 'bf16',
  });
  const n = ref.finishReason === 'stop' ? ref.tokens.length - 1 : ref.tokens.length;
  t.same(
    r.tokens.map((x) => x.id),
    Array.from(ref.tokens.subarray(0, n)),
  );
  t.same(
    r.tokens.map((x) => x.logprob),
    Array.from(ref.logprobs.subarray(0, n)),
  );
});
