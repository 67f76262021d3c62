// The longreward study's task (lib/study/longdoc.ts): the documents hold what they claim to hold,
// the gold four-dimension scores of hand-written answers against values worked out by hand, the
// gold judge through the real LongReward pipeline (retrieval, statement extraction, fact
// extraction) against the gold function computed directly, and the pairs the pipeline builds.
import t from 'tap';
import { buildPairs, LexicalEmbedder, LongReward } from '../../lib/rewards/longreward/index.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { LongDocGoldJudge } from '../../lib/study/longdoc-judge.js';
import {
  factSentence,
  goldLongScore,
  longDocDemonstration,
  makeLongDocTasks,
  parseQuestion,
  usualValue,
  type LongDocTask,
} from '../../lib/study/longdoc.js';
import { rng } from '../../lib/demo/task.js';

const OPTS = { chars: 2000, entitiesPerDoc: 4, usualRate: 0.7 };
const tasks = makeLongDocTasks(3, 12, OPTS);

const valueOf = (task: LongDocTask, attribute: string) =>
  task.facts.find((f) => f.entity === task.entity && f.attribute === attribute)!.value;
const ideal = (task: LongDocTask) =>
  task.asked.map((a) => factSentence({ entity: task.entity, attribute: a, value: valueOf(task, a) })).join(' ');
const wrongValue = (task: LongDocTask, a: string) => (valueOf(task, a) === 'red' ? 'blue' : 'red');

t.test('documents: length, planted facts, question', async (t) => {
  for (const task of tasks) {
    t.ok(task.document.length >= OPTS.chars, `document of ${task.document.length} characters`);
    t.equal(task.facts.length, 12);
    for (const f of task.facts) t.equal(task.document.split(factSentence(f)).length, 2, 'each fact stated once');
    t.same(parseQuestion(task.question), { entity: task.entity, asked: task.asked });
    t.equal(task.messages[0].content, `${task.document}\n\n${task.question}`);
    t.equal(new Set(task.asked).size, 2);
  }
  // the usual value is stated about usualRate of the time (0.7; 12 × 12 facts)
  const all = makeLongDocTasks(9, 12, OPTS).flatMap((x) => x.facts);
  const usual = all.filter((f) => f.value === usualValue(f.entity, f.attribute)).length / all.length;
  t.ok(usual > 0.55 && usual < 0.85, `usual values ${usual}`);
  t.same(makeLongDocTasks(3, 12, OPTS), tasks, 'same seed, same tasks');
  t.notSame(makeLongDocTasks(4, 12, OPTS)[0].document, tasks[0].document);
});

t.test('gold scores of hand-written answers', async (t) => {
  const task = tasks[0];
  const [a0, a1] = task.asked;
  const e = task.entity;
  t.same(goldLongScore(task, ideal(task)), {
    helpfulness: 10,
    logicality: 10,
    faithfulness: 10,
    completeness: 10,
    total: 40,
  });
  // one wrong value: half the statements supported, half the facts given
  const oneWrong = `${e}'s ${a0} is ${valueOf(task, a0)}. ${e}'s ${a1} is ${wrongValue(task, a1)}.`;
  t.same(goldLongScore(task, oneWrong), {
    helpfulness: 10,
    logicality: 10,
    faithfulness: 5,
    completeness: 5,
    total: 30,
  });
  // an invented attribute: 2 of 3 statements supported, one off-topic sentence (−2)
  const s = goldLongScore(task, `${ideal(task)} ${e}'s mood is calm.`);
  t.equal(s.faithfulness, 20 / 3);
  t.equal(s.helpfulness, 8);
  t.equal(s.completeness, 10);
  // filler and a contradiction
  const c = goldLongScore(task, `Here is what I found. ${ideal(task)} ${e}'s ${a0} is ${wrongValue(task, a0)}.`);
  t.equal(c.logicality, 5, 'one contradicting pair');
  t.equal(c.helpfulness, 8, 'the filler sentence');
  t.equal(c.faithfulness, 20 / 3);
  t.equal(goldLongScore(task, `${ideal(task)} ${ideal(task)}`).logicality, 4, 'two repeated sentences');
  // nothing stated: faithful by convention, unhelpful and incomplete
  t.same(goldLongScore(task, ''), { helpfulness: 0, logicality: 10, faithfulness: 10, completeness: 0, total: 20 });
  // another entity's true fact is supported by the document but answers nothing
  const other = task.facts.find((f) => f.entity !== e)!;
  const o = goldLongScore(task, factSentence(other));
  t.equal(o.faithfulness, 10);
  t.equal(o.completeness, 0);
  t.equal(o.helpfulness, 0);
});

t.test('demonstrations carry their flaws at their rates', async (t) => {
  const r = rng(5);
  const many = makeLongDocTasks(11, 300, { ...OPTS, chars: 100 });
  const flawless = many.map((x) => longDocDemonstration(x, r, { wrongRate: 0, extraRate: 0, fillerRate: 0 }));
  t.ok(
    flawless.every((d, i) => goldLongScore(many[i], d).total === 40),
    'no flaws: every demonstration ideal',
  );
  const flawed = many.map((x) =>
    goldLongScore(x, longDocDemonstration(x, r, { wrongRate: 0, extraRate: 1, fillerRate: 0 })),
  );
  t.ok(
    flawed.every((s) => s.faithfulness === 20 / 3 && s.completeness === 10),
    'an invented extra each time',
  );
  const wrong = many.map((x) =>
    goldLongScore(x, longDocDemonstration(x, r, { wrongRate: 0.5, extraRate: 0, fillerRate: 0 })),
  );
  const meanComp = wrong.reduce((a, s) => a + s.completeness, 0) / wrong.length;
  t.ok(Math.abs(meanComp - 5) < 0.6, `completeness ${meanComp} at wrongRate 0.5`);
});

t.test('the gold judge through the LongReward pipeline agrees with the gold function', async (t) => {
  const judge = new LongDocGoldJudge();
  const scorer = new LongReward({ judge, embedder: new LexicalEmbedder(256), tokenizer: new ByteTokenizer() });
  for (const task of tasks.slice(0, 6)) {
    const e = task.entity;
    const answers = [
      ideal(task),
      `${e}'s ${task.asked[0]} is ${wrongValue(task, task.asked[0])}. ${e}'s ${task.asked[1]} is ${valueOf(task, task.asked[1])}.`,
      `${ideal(task)} ${e}'s tool is saw.`,
      'Let me look at the document.',
    ];
    for (const answer of answers) {
      const got = await scorer.score({ context: task.document, question: task.question, answer });
      const want = goldLongScore(task, answer);
      for (const d of ['helpfulness', 'logicality', 'faithfulness', 'completeness'] as const)
        t.equal(got[d], want[d], `${d} of "${answer}"`);
    }
  }
  t.ok(judge.calls.faithfulness > 0 && judge.calls.infoExtraction > 0 && judge.calls.statements > 0);
  await t.rejects(judge.complete('not a LongReward prompt', { temperature: 0 }), /matches none of the LongReward/);
});

t.test('pairs from the judged answers: the ideal answer chosen, the hallucinating one rejected', async (t) => {
  const scorer = new LongReward({
    judge: new LongDocGoldJudge(),
    embedder: new LexicalEmbedder(256),
    tokenizer: new ByteTokenizer(),
  });
  const task = tasks[1];
  const answers = [`${ideal(task)} ${task.entity}'s mood is glum.`, ideal(task), `${task.entity}'s tool is axe.`];
  const scores = await scorer.scoreMany(
    answers.map((answer) => ({ context: task.document, question: task.question, answer })),
  );
  const pairs = buildPairs(
    answers.map((response, i) => ({ promptId: 'q', response, scores: scores[i] })),
    { minResponses: 3 },
  );
  t.equal(pairs.length, 1);
  t.equal(pairs[0].chosen, answers[1]);
  t.equal(pairs[0].rejected, answers[2]);
});
