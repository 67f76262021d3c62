// bestOfN (rejection sampling): the highest-scoring of n samples per prompt under a rule reward,
// its score and the spread, as SFT records (in memory and as JSONL that loadSftFile reads).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSftFile } from '../../lib/data/index.js';
import { setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { rewardFunction } from '../../lib/rewards/types.js';
import { generateRollout } from '../../lib/rollout/generate.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { bestOfN } from '../../lib/train/rejection.js';

const tok = new ByteTokenizer();
// one kernel thread: tap runs two test files at once on two cores, and two-thread pools per
// process oversubscribe them (several times slower); results are deterministic per thread count
setThreads(1);
const config = () =>
  tinyConfig({
    vocab: 264,
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    maxPositions: 128,
    eosTokenId: tok.eosId,
  });
/** rule reward: how many response bytes are below 128 (plus a tiny tie-breaker on the first byte) */
const reward = rewardFunction(
  'rule',
  (r) => [...r.responseIds].filter((x) => x < 128).length + r.responseIds[0] / 1000,
);

t.test('picks the highest-scoring of n samples; SFT records; JSONL', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-bon-'));
  try {
    const policy = await Model.create(config(), { seed: 41 });
    const prompts = ['1+1=', '2+2=', [{ role: 'user', content: 'hi' }]].map((prompt) => ({ prompt }));
    const sampling = { maxNewTokens: 8, temperature: 1 };
    const out = await bestOfN({
      policy,
      tokenizer: tok,
      prompts,
      reward,
      n: 6,
      sampling,
      seed: 9,
      writeTo: join(dir, 'best.jsonl'),
    });
    const roll = await generateRollout({ policy, tokenizer: tok, prompts, samplesPerPrompt: 6, sampling, seed: 9 });
    const scores = await reward.score(
      roll.samples.map((s) => ({ prompt: '', response: s.text, promptIds: s.promptIds, responseIds: s.responseIds })),
    );
    t.equal(out.records.length, 3);
    out.records.forEach((r, p) => {
      const mine = scores.slice(6 * p, 6 * p + 6);
      const best = mine.indexOf(Math.max(...mine));
      t.equal(r.completion, roll.samples[6 * p + best].text, `prompt ${p}: the argmax sample`);
      t.equal(r.score, Math.max(...mine));
      t.equal(r.spread, Math.max(...mine) - Math.min(...mine));
      t.ok(
        mine.every((s) => s <= r.score),
        `prompt ${p}: best ${r.score.toFixed(3)} of [${mine.map((s) => s.toFixed(3)).join(', ')}]`,
      );
    });
    t.same(out.sft[0], { kind: 'completion', prompt: '1+1=', completion: out.records[0].completion });
    t.equal(out.sft[2].kind, 'messages', 'a message prompt gives a conversation record');
    const loaded = await loadSftFile(join(dir, 'best.jsonl'));
    t.same(loaded, out.sft, 'the JSONL reads back as the same SFT records');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('errors', async (t) => {
  const policy = await Model.create(config(), { seed: 41 });
  await t.rejects(bestOfN({ policy, tokenizer: tok, prompts: ['x'], reward, n: 0, sampling: { maxNewTokens: 4 } }), {
    name: 'RangeError',
    message: /options\.n/,
  });
  await t.rejects(
    bestOfN({
      policy,
      tokenizer: tok,
      prompts: ['x'],
      reward,
      n: 2,
      sampling: { maxNewTokens: 4 },
      write: 'x',
    } as never),
    { message: /did you mean options\.writeTo/ },
  );
  const bad = rewardFunction('bad', () => NaN);
  await t.rejects(
    bestOfN({ policy, tokenizer: tok, prompts: ['x'], reward: bad, n: 2, sampling: { maxNewTokens: 4 } }),
    { message: /reward source "bad"/ },
  );
});
