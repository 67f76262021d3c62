// generateRollout: rows are group-contiguous, row r samples from stream streamBase + r, or from
// streams[r] when given — a row samples the same whatever batch (or chunk) it is in.
import t from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { generateRollout } from '../../lib/rollout/generate.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';

setThreads(1);
const tok = new ByteTokenizer();
const sampling = { maxNewTokens: 10, temperature: 1 };
const prompts = ['1+1=', 'two plus two is ', 'x'].map((prompt) => ({ prompt }));

t.test('streams: a row samples as it does at streamBase + r, in any order and chunking', async (t) => {
  const policy = await Model.create(
    tinyConfig({
      vocab: 264,
      hidden: 32,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      ffn: 64,
      maxPositions: 128,
      eosTokenId: tok.eosId,
    }),
    { seed: 7, initStd: 0.3 },
  );
  t.teardown(() => policy.dispose());
  const base = await generateRollout({
    policy,
    tokenizer: tok,
    prompts,
    samplesPerPrompt: 2,
    sampling,
    seed: 5,
    streamBase: 100,
  });
  t.same(
    base.samples.map((s) => s.promptIndex),
    [0, 0, 1, 1, 2, 2],
    'group-contiguous rows',
  );
  // prompts reversed, each row given the stream it had above, generated one row per call
  const rev = [...prompts].reverse();
  const streams = [104, 105, 102, 103, 100, 101];
  const again = await generateRollout({
    policy,
    tokenizer: tok,
    prompts: rev,
    samplesPerPrompt: 2,
    sampling,
    seed: 5,
    streams,
    batchSize: 1,
  });
  again.samples.forEach((s, r) => {
    const b = base.samples[streams[r] - 100];
    t.same(Array.from(s.responseIds), Array.from(b.responseIds), `row ${r} = base row ${streams[r] - 100}`);
    t.same(Array.from(s.logprobs), Array.from(b.logprobs));
  });
  await t.rejects(
    generateRollout({ policy, tokenizer: tok, prompts, sampling, streams: [1, 2] }),
    /options\.streams.*3 stream ids/,
  );
  await t.rejects(
    generateRollout({ policy, tokenizer: tok, prompts, sampling, streams: [1, 2, 3], streamBase: 4 }),
    /options\.streams/,
  );
});
