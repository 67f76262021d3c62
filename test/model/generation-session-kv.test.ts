// GenerationSession with a bf16 KV pool (kvDtype: 'bf16'): half the KV bytes (stats), the
// session's invariances hold among bf16 sessions (bitwise alone or batched, any block size), and
// log-probs stay within a stated tolerance of forward()'s, which keeps k/v in f32 (forward has no
// bf16 k/v rounding, so there is no same-rounding reference to compare bitwise against).
import t from 'tap';
import { join } from 'node:path';
import { Model } from '../../lib/engine/model.js';
import { GenerationSession, type SessionResult } from '../../lib/engine/generation-session.js';
import { sameGeneration } from '../helpers/static-reference.js';
import { modelFixtures } from '../helpers/family-fixture.js';

const promptOf = (len: number, salt: number) => Array.from({ length: len }, (_, i) => (i * 7 + salt * 13 + 1) % 89);
const requests = [
  { prompt: promptOf(12, 1), maxNewTokens: 20, seed: 3, stream: 0 },
  { prompt: promptOf(12, 1), maxNewTokens: 14, seed: 3, stream: 1, temperature: 0.8 },
  { prompt: promptOf(30, 2), maxNewTokens: 16, temperature: 0 },
  { prompt: [2], maxNewTokens: 25, seed: 4, stream: 2 },
];

async function run(m: Model, kvDtype: 'f32' | 'bf16', blockSize: number, together = true) {
  const results: SessionResult[] = [];
  let peak = 0;
  let stats;
  const batches = together ? [requests] : requests.map((r) => [r]);
  for (const batch of batches) {
    const s = new GenerationSession(m, { numBlocks: 64, blockSize, kvDtype });
    const ids = batch.map(({ prompt, ...o }) => s.addRequest(prompt, { ...o, stopTokens: [] }));
    const got = await s.runUntilIdle();
    results.push(...ids.map((id) => got.find((g) => g.id === id)!));
    peak = Math.max(peak, s.stats.peakKvBytes);
    stats = s.stats;
    s.dispose();
  }
  return { results, peak, stats: stats! };
}

// |log π_bf16 − log π_f32| per token, the k/v rounding (relative 2^-9) carried through the layers
// of these random fixtures (measured: max 3.3e-2 llama, 2.8e-2 mistral, 1.7e-2 gemma2), and its mean
const LOGPROB_TOL = 5e-2;
const LOGPROB_MEAN_TOL = 1e-2;

for (const name of ['llama-tiny', 'mistral-tiny', 'gemma2-tiny']) {
  t.test(
    `${name}: bf16 KV halves the bytes and stays within ${LOGPROB_TOL} of forward() (mean ${LOGPROB_MEAN_TOL})`,
    async (t) => {
      const m = await Model.load(join(modelFixtures, name));
      t.teardown(() => m.dispose());
      const f32 = await run(m, 'f32', 4);
      const bf = await run(m, 'bf16', 4);
      t.equal(bf.stats.blockBytes * 2, f32.stats.blockBytes, 'a bf16 block takes half the bytes');
      t.equal(bf.stats.poolBytes * 2, f32.stats.poolBytes, 'the pool too');
      t.equal(bf.peak * 2, f32.peak, `peak KV ${bf.peak} vs ${f32.peak} bytes`);

      // bf16 among itself: bitwise the same alone, batched, and at another block size
      for (const other of [await run(m, 'bf16', 4, false), await run(m, 'bf16', 16)]) {
        let same = 0;
        other.results.forEach((g, i) => {
          same += +sameGeneration(g, bf.results[i]);
        });
        t.equal(same, requests.length, 'bf16 sessions agree bit for bit across batching and block size');
      }

      // Model.generate({kvDtype: 'bf16'}) runs the same bf16 session
      let viaGenerate = 0;
      for (const [r, req] of requests.entries()) {
        const [g] = await m.generate({
          prompts: [req.prompt],
          maxNewTokens: req.maxNewTokens,
          temperature: req.temperature ?? 1,
          seed: req.seed ?? 0,
          streams: [req.stream ?? 0],
          stopTokens: [],
          kvDtype: 'bf16',
        });
        viaGenerate += +sameGeneration(g, bf.results[r]);
      }
      t.equal(viaGenerate, requests.length, "Model.generate({kvDtype: 'bf16'}) gives the bf16 session's results");

      let worst = 0;
      let differs = 0;
      let sum = 0;
      let count = 0;
      for (const [r, req] of requests.entries()) {
        const g = bf.results[r];
        const seq = [...req.prompt, ...g.tokens];
        const T = seq.length;
        const targets = new Int32Array(T).fill(-1);
        for (let i = req.prompt.length - 1; i < T - 1; i++) targets[i] = seq[i + 1];
        const f = await m.forward({
          tokens: Int32Array.from(seq),
          targets,
          batch: 1,
          seqLen: T,
          saveForBackward: false,
          temperature: req.temperature || 1, // greedy log-probs are at T = 1
        });
        const ref = f.logprobs.slice(req.prompt.length - 1, T - 1);
        ref.forEach((x, k) => {
          worst = Math.max(worst, Math.abs(x - g.logprobs[k]));
          differs += +(x !== g.logprobs[k]);
          sum += Math.abs(x - g.logprobs[k]);
          count++;
        });
      }
      t.ok(worst <= LOGPROB_TOL, `max |log-prob − forward()| = ${worst.toExponential(2)} <= ${LOGPROB_TOL}`);
      const mean = sum / count;
      t.ok(mean <= LOGPROB_MEAN_TOL, `mean |log-prob − forward()| = ${mean.toExponential(2)} <= ${LOGPROB_MEAN_TOL}`);
      t.ok(differs > 0, `the rounding shows (${differs} log-probs differ from f32)`);
    },
  );
}

t.test('kvDtype is validated', async (t) => {
  const m = await Model.load(join(modelFixtures, 'llama-tiny'));
  t.teardown(() => m.dispose());
  t.throws(() => new GenerationSession(m, { numBlocks: 4, kvDtype: 'f16' as never }), /options\.kvDtype/);
  t.throws(() => m.generate({ prompts: [[1]], maxNewTokens: 2, kvDtype: 'f16' as never }), /options\.kvDtype/);
  await t.rejects(
    m.generate({ prompts: [[1]], maxNewTokens: 2, kvDtype: 'bf16', staticBatch: true }),
    /the static batch keeps an f32 KV cache/,
  );
});
