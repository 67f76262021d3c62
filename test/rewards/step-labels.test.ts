// monteCarloStepLabels (docs/algorithms.md §4 PRM labels from rollouts): a step's label is the fraction of
// sampled continuations from it that reach a correct answer; reproducible whatever the batching.
import t from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { monteCarloStepLabels } from '../../lib/rewards/step-labels.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';

setThreads(1);
const tok = new ByteTokenizer();

t.test('labels from continuations: a prefix rule, a completion rule, soft vs hard, batching', async (t) => {
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
    { seed: 4, initStd: 0.3 },
  );
  t.teardown(() => policy.dispose());
  const records = [
    { prompt: 'q1:', steps: ['ok', 'ok', 'BAD', 'ok'] },
    { prompt: 'q2:', steps: ['fine', 'BAD'] },
  ];
  const seen: string[] = [];
  // correct iff no step so far is BAD: labels fall to 0 at the first BAD step and stay there
  const prefixRule = await monteCarloStepLabels({
    policy,
    tokenizer: tok,
    records,
    rollouts: 3,
    maxNewTokens: 6,
    isCorrect: (_, response) => (seen.push(response), !response.includes('BAD')),
  });
  t.same(
    prefixRule.map((r) => r.labels),
    [
      [1, 1, 0, 0],
      [1, 0],
    ],
  );
  t.same(prefixRule[0].steps, records[0].steps);
  t.equal(seen.length, 3 * 6, 'rollouts per step');
  t.ok(
    seen.some((s) => s.startsWith('ok\nok\nBAD\n')),
    'a continuation follows prompt ++ steps 0..i, each with its separator',
  );

  // correct iff the continuation ends on a lowercase letter: soft labels in steps of 1/k
  const rule = (_: unknown, response: string) => /[a-z]$/.test(response);
  const k = 8;
  const soft = await monteCarloStepLabels({
    policy,
    tokenizer: tok,
    records,
    rollouts: k,
    maxNewTokens: 4,
    seed: 3,
    isCorrect: rule,
  });
  const labels = soft.flatMap((r) => r.labels);
  t.ok(
    labels.every((l) => Number.isInteger(l * k) && l >= 0 && l <= 1),
    `soft labels are multiples of 1/${k}: ${labels}`,
  );
  const again = await monteCarloStepLabels({
    policy,
    tokenizer: tok,
    records,
    rollouts: k,
    maxNewTokens: 4,
    seed: 3,
    isCorrect: rule,
    batchSize: 5,
  });
  t.same(again, soft, 'the same labels in batches of 5 (per-job Philox streams)');
  const hard = await monteCarloStepLabels({
    policy,
    tokenizer: tok,
    records,
    rollouts: k,
    maxNewTokens: 4,
    seed: 3,
    isCorrect: rule,
    mode: 'hard',
  });
  t.same(
    hard.flatMap((r) => r.labels),
    labels.map((l) => Number(l > 0)),
    'hard = any continuation correct',
  );
  const other = await monteCarloStepLabels({
    policy,
    tokenizer: tok,
    records,
    rollouts: k,
    maxNewTokens: 4,
    seed: 4,
    isCorrect: rule,
  });
  t.notSame(
    other.flatMap((r) => r.labels),
    labels,
    'another seed samples other continuations',
  );

  await t.rejects(
    monteCarloStepLabels({ policy, tokenizer: tok, records, isCorrect: () => 2 }),
    /options\.isCorrect.*\[0, 1\]/,
  );
  await t.rejects(
    monteCarloStepLabels({ policy, tokenizer: tok, records: [{ prompt: 'q', steps: [] }], isCorrect: () => true }),
    /options\.records\[0\]\.steps/,
  );
  await t.rejects(
    monteCarloStepLabels({ policy, tokenizer: tok, records, isCorrect: () => true, rollout: 2 } as never),
    /did you mean options\.rollouts/,
  );
});
