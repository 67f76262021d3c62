// LongReward pure pieces (docs/algorithms.md §5, properties 20–23): rating and verdict parsing, the retry
// schedule, the faithfulness mean, token chunking and top-k retrieval in document order, best-vs-worst
// pairs, the language heuristic, position labels, and the prompt templates.
import t from 'tap';
import { ErrorCode, RlhfError } from '../../lib/errors.js';
import type { PreferenceRecord } from '../../lib/data/formats.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import {
  buildPairs,
  chunkByTokens,
  cosineSimilarity,
  DEFAULT_PROMPTS,
  detectLanguage,
  faithfulnessScore,
  fillTemplate,
  judgeWithRetry,
  JudgeRetryError,
  NO_RELEVANT_INFORMATION,
  parseInfo,
  parseRating,
  parseScore,
  parseStatements,
  parseSupportVerdict,
  positionLabel,
  PROMPT_PLACEHOLDERS,
  resolvePrompts,
  retrieveTopK,
  roundHalfEven,
  type JudgeModel,
  type LongRewardScores,
  type PromptName,
} from '../../lib/rewards/longreward/index.js';

/** A judge that replies from a script, in order, and records every call. */
function scriptedJudge(replies: unknown[]) {
  const calls: Array<{ prompt: string; temperature: number; maxTokens?: number }> = [];
  const judge: JudgeModel = {
    async complete(prompt, options) {
      calls.push({ prompt, ...options });
      return replies[Math.min(calls.length - 1, replies.length - 1)] as string;
    },
  };
  return { judge, calls };
}

t.test('property 21: parseScore takes the LAST [[number]]; none gives undefined', async (t) => {
  t.equal(parseScore('[[8]]'), 8);
  t.equal(parseScore('The answer quotes [[3]] and [[4.5]]; overall: [[7.5]]'), 7.5, 'last of several');
  t.equal(parseScore('Rating: [[10]] (the note [[x]] is not a number)'), 10, 'non-numeric brackets ignored');
  t.equal(parseScore('[[0.5]]'), 0.5);
  t.equal(parseScore('[[007]]'), 7);
  t.equal(parseScore('I would give it 8/10.'), undefined, 'no brackets');
  t.equal(parseScore(''), undefined);
  for (const s of ['[[ 8 ]]', '[[-3]]', '[[+3]]', '[[8/10]]', '[[1e3]]', '[[3.]]', '[[.5]]', '[8]', '[[eight]]'])
    t.equal(parseScore(s), undefined, `${s} is not a rating`);
  t.equal(parseScore('[[6]] then [[ 9 ]]'), 6, 'the last WELL-FORMED one');
  t.equal(parseScore('[[[7]]]'), 7, 'the pattern may sit inside extra brackets');
  t.equal(parseRating('[[10]]'), 10);
  t.equal(parseRating('[[10.5]]'), undefined, 'ratings above the 0..10 scale are malformed');
  t.equal(parseRating('[[0]]'), 0);
  t.throws(() => parseScore(7 as unknown as string), {
    name: 'TypeError',
    message: 'parseScore: expected text to be a string, received 7',
  });
});

t.test('property 21: judgeWithRetry asks at temperature 0.01, then 0.95, until the reply parses', async (t) => {
  const { judge, calls } = scriptedJudge([
    'Good answer, no rating.',
    '',
    'Analysis... [[2]] ... final: [[6]]',
    '[[9]]',
  ]);
  const v = await judgeWithRetry(judge, 'PROMPT', parseScore, 5, { maxTokens: 512 });
  t.equal(v, 6, 'the first parseable reply, its last rating');
  t.same(
    calls.map((c) => c.temperature),
    [0.01, 0.95, 0.95],
    'three attempts; no fourth call',
  );
  t.ok(
    calls.every((c) => c.prompt === 'PROMPT' && c.maxTokens === 512),
    'same prompt each time, with the length hint',
  );

  const once = scriptedJudge(['[[4]]']);
  t.equal(await judgeWithRetry(once.judge, 'p', parseScore), 4);
  t.same(once.calls, [{ prompt: 'p', temperature: 0.01 }], 'a good first reply: one call at 0.01, no maxTokens key');

  const nulls = scriptedJudge([null, undefined, '[[3]]']);
  t.equal(await judgeWithRetry(nulls.judge, 'p', parseScore), 3, 'a client returning null/undefined is retried');
});

t.test(
  'property 21: after maxAttempts unparseable replies judgeWithRetry throws a FORMAT RlhfError naming the attempts',
  async (t) => {
    const { judge, calls } = scriptedJudge(['no rating here']);
    const err = await judgeWithRetry(judge, 'p', parseScore, 5, { what: 'helpfulness rating' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof JudgeRetryError && err instanceof RlhfError);
    const e = err as JudgeRetryError;
    t.equal(e.code, ErrorCode.FORMAT);
    t.equal(e.attempts, 5);
    t.equal(e.lastReply, 'no rating here');
    t.equal(
      e.message,
      'judgeWithRetry: the judge gave no helpfulness rating in 5 attempts (temperature 0.01, then 0.95 x4); last reply: "no rating here"',
    );
    t.same(
      calls.map((c) => c.temperature),
      [0.01, 0.95, 0.95, 0.95, 0.95],
      'exactly 5 calls (the default)',
    );

    const one = scriptedJudge(['nope']);
    await t.rejects(judgeWithRetry(one.judge, 'p', parseScore, 1), {
      code: 'ERR_RLHF_FORMAT',
      message: /in 1 attempt \(temperature 0\.01\)/,
    });
    t.same(
      one.calls.map((c) => c.temperature),
      [0.01],
    );

    const failing: JudgeModel = {
      complete: async () => {
        throw new Error('HTTP 429');
      },
    };
    await t.rejects(
      judgeWithRetry(failing, 'p', parseScore),
      { message: 'HTTP 429' },
      'errors thrown by the judge propagate, unretried',
    );
    await t.rejects(judgeWithRetry(judge, 'p', parseScore, 0), {
      name: 'RangeError',
      message: 'judgeWithRetry: expected maxAttempts to be an integer >= 1, received 0',
    });
    await t.rejects(judgeWithRetry({} as JudgeModel, 'p', parseScore), {
      name: 'TypeError',
      message: /expected judge to be a JudgeModel/,
    });
  },
);

t.test(
  'property 20: support verdicts: case-insensitive "fully" 1, "partially" 0.5, anything else 0, from the last [[...]]',
  async (t) => {
    t.equal(parseSupportVerdict('The passages state it. [[Fully supported]]'), 1);
    t.equal(parseSupportVerdict('[[FULLY SUPPORTED]]'), 1);
    t.equal(parseSupportVerdict('[[Partially supported]]'), 0.5);
    t.equal(parseSupportVerdict('[[partially Supported]]'), 0.5);
    t.equal(parseSupportVerdict('[[No support]]'), 0);
    t.equal(parseSupportVerdict('[[Unsupported]]'), 0, 'any other wording is 0');
    t.equal(
      parseSupportVerdict('[[Fully supported]] would be wrong; [[Partially supported]]'),
      0.5,
      'the last verdict counts',
    );
    t.equal(parseSupportVerdict('no verdict at all'), undefined, 'no bracketed verdict: undefined (retried)');
    t.equal(parseSupportVerdict('[[7]]'), undefined, 'digits are not a verdict');
    t.equal(parseSupportVerdict('[[Not fully supported]]'), 1, 'official quirk kept: "fully" is tested first');
  },
);

t.test('property 20: faithfulness = 10·mean verdict ∈ {10·m/(2n)}; all Fully → 10, all No support → 0', async (t) => {
  for (let n = 1; n <= 7; n++) {
    for (let m = 0; m <= 2 * n; m++) {
      // m halves: floor(m/2) "Fully", (m mod 2) "Partially", the rest "No support", shuffled by rotation
      const v = [
        ...Array(Math.floor(m / 2)).fill(1),
        ...Array(m % 2).fill(0.5),
        ...Array(n - Math.floor(m / 2) - (m % 2)).fill(0),
      ];
      const rotated = [...v.slice(m % n), ...v.slice(0, m % n)];
      t.equal(faithfulnessScore(rotated), (10 * m) / (2 * n), `n=${n}, m=${m}: exactly 10·m/(2n)`);
    }
  }
  // every combination of 3 verdicts lands in {10m/6 : m = 0..6}, and every such value is reached
  const levels = [0, 0.5, 1] as const;
  const seen = new Set<number>();
  for (const a of levels) for (const b of levels) for (const c of levels) seen.add(faithfulnessScore([a, b, c]));
  t.same(
    [...seen].sort((x, y) => x - y),
    [0, 1, 2, 3, 4, 5, 6].map((m) => (10 * m) / 6),
  );
  t.equal(faithfulnessScore([1, 1, 1, 1]), 10);
  t.equal(faithfulnessScore([0, 0, 0]), 0);
  t.equal(faithfulnessScore([1, 0.5, 0]), 5);
  t.equal(faithfulnessScore([]), 10, 'no statements: 10 by default (no factual claim, nothing unsupported)');
  t.equal(faithfulnessScore([], 0), 0, 'the empty value is configurable');
  t.throws(() => faithfulnessScore([1, 0.7]), {
    name: 'RangeError',
    message: 'faithfulnessScore: expected verdicts[1] to be 0, 0.5 or 1, received 0.7',
  });
  t.throws(() => faithfulnessScore([], 11), { name: 'RangeError' });
});

t.test('property 20: statements are the trimmed, non-empty <statement> contents, across lines', async (t) => {
  const reply =
    'Here are the facts:\n<statement> The report covers 2019. </statement>\n<statement>The study\nfound X.</statement><statement>  </statement>\n<statement>Third.</statement> trailing <statement>unclosed';
  t.same(parseStatements(reply), ['The report covers 2019.', 'The study\nfound X.', 'Third.']);
  t.same(parseStatements('The answer makes no factual claim.'), []);
});

t.test(
  'property 23: chunkByTokens cuts consecutive, non-overlapping 128- and 4096-token chunks with token offsets',
  async (t) => {
    const tok = new ByteTokenizer();
    const text = Array.from({ length: 300 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    const chunks = chunkByTokens(text, tok, 128);
    t.same(
      chunks.map((c) => [c.index, c.start, c.end, c.total]),
      [
        [0, 0, 128, 300],
        [1, 128, 256, 300],
        [2, 256, 300, 300],
      ],
    );
    t.equal(chunks.map((c) => c.text).join(''), text, 'chunks tile the text exactly');
    t.ok(chunks.every((c) => tok.encode(c.text).length === c.end - c.start));

    const long = 'x'.repeat(10_000);
    t.same(
      chunkByTokens(long, tok, 4096).map((c) => [c.start, c.end]),
      [
        [0, 4096],
        [4096, 8192],
        [8192, 10_000],
      ],
    );
    t.same(chunkByTokens('', tok, 128), [], 'an empty text has no chunks');
    t.same(
      chunkByTokens('abc', tok, 128).map((c) => c.text),
      ['abc'],
    );
    // a boundary inside a multi-byte character decodes as the tokenizer decodes partial bytes
    const split = chunkByTokens('é', tok, 1);
    t.same(
      split.map((c) => c.text),
      ['\uFFFD', '\uFFFD'],
      'bytes of "é" split across chunks',
    );
    t.throws(() => chunkByTokens('a', tok, 0), {
      name: 'RangeError',
      message: 'chunkByTokens: expected size to be an integer >= 1, received 0',
    });
    t.throws(() => chunkByTokens('a', {} as ByteTokenizer, 4), { name: 'TypeError' });
  },
);

t.test('property 23: retrieveTopK returns the k = 5 most similar chunks in DOCUMENT order', async (t) => {
  const q = [1, 0];
  // angle i*θ from q: similarity cos(angle); chosen so that the similarity order is 6, 1, 4, 7, 2, 0, 3, 5
  const angles = [1.0, 0.2, 0.8, 1.2, 0.4, 1.4, 0.1, 0.6];
  const chunks = angles.map((a) => [Math.cos(a), Math.sin(a)]);
  const top = retrieveTopK(q, chunks);
  t.same(
    top.map((r) => r.index),
    [1, 2, 4, 6, 7],
    'top 5 by similarity (6, 1, 4, 7, 2), listed by position',
  );
  t.ok(Math.abs(top[3].similarity - Math.cos(0.1)) < 1e-15, 'similarity reported');
  t.same(
    retrieveTopK(q, chunks, 2).map((r) => r.index),
    [1, 6],
  );
  t.same(
    retrieveTopK(q, chunks.slice(0, 3), 5).map((r) => r.index),
    [0, 1, 2],
    'fewer chunks than k: all of them',
  );
  t.same(
    retrieveTopK(
      q,
      [
        [1, 0],
        [0, 1],
        [2, 0],
        [1, 0],
      ],
      2,
    ).map((r) => r.index),
    [0, 2],
    'ties prefer the earlier chunk',
  );
  t.equal(retrieveTopK(q, [[0, 0]], 1)[0].similarity, 0, 'a zero vector has similarity 0');
  t.equal(cosineSimilarity([3, 4], [6, 8]), 1);
  t.throws(() => retrieveTopK(q, [[1, 0, 0]]), { name: 'RangeError', message: /chunkEmbeddings\[0\]\.length/ });
  t.throws(() => retrieveTopK(q, [[1, NaN]]), { name: 'TypeError', message: /chunkEmbeddings\[0\]\[1\]/ });
  t.throws(() => retrieveTopK(q, chunks, 0), { name: 'RangeError' });
});

/** Scores whose total is `total`, split evenly across the four dimensions. */
function scores(total: number): LongRewardScores {
  return {
    helpfulness: total / 4,
    logicality: total / 4,
    faithfulness: total / 4,
    completeness: total / 4,
    total,
    average: total / 4,
  };
}

t.test('property 22: best vs worst by total per prompt; prompts with < 5 scored responses give no pair', async (t) => {
  const scored = [
    ...[20, 35, 12, 35, 12].map((s, i) => ({
      promptId: 'a',
      response: `a${i}`,
      scores: scores(s),
      prompt: 'question A',
    })),
    ...[30, 10, 25, 5].map((s, i) => ({ promptId: 'b', response: `b${i}`, scores: scores(s) })),
    ...[7, 40, 0, 22, 13, 39].map((s, i) => ({ promptId: 'c', response: `c${i}`, scores: scores(s) })),
  ];
  const pairs = buildPairs(scored);
  t.same(
    pairs,
    [
      { promptId: 'a', chosen: 'a1', rejected: 'a4', margin: 23, prompt: 'question A' },
      { promptId: 'c', chosen: 'c1', rejected: 'c2', margin: 40 },
    ],
    'prompt b (4 responses) gives no pair; ties: first of the best, last of the worst',
  );
  t.same(
    buildPairs(scored, { minResponses: 4 }).map((p) => p.promptId),
    ['a', 'b', 'c'],
  );
  t.same(buildPairs(scored.slice(0, 4)), [], '4 responses: no pair');
  const record: PreferenceRecord = pairs[0] as PreferenceRecord; // compatible with the preference format
  t.equal(record.chosen, 'a1');
});

t.test('property 22: win has the max total, lose the min; ranking by sum == ranking by average', async (t) => {
  let s = 12345;
  const rand = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const dims = () => Math.round(rand() * 20) / 2; // 0..10 in halves, with frequent ties
  const scored: Array<{ promptId: string; response: string; scores: LongRewardScores }> = [];
  for (let p = 0; p < 40; p++) {
    const n = 3 + (p % 6); // 3..8 responses
    for (let r = 0; r < n; r++) {
      const [h, l, f, c] = [dims(), dims(), dims(), dims()];
      scored.push({
        promptId: `p${p}`,
        response: `p${p}-r${r}`,
        scores: {
          helpfulness: h,
          logicality: l,
          faithfulness: f,
          completeness: c,
          total: h + l + f + c,
          average: (h + l + f + c) / 4,
        },
      });
    }
  }
  const bySum = buildPairs(scored);
  const byAverage = buildPairs(scored.map((x) => ({ ...x, scores: { total: x.scores.average } })));
  t.same(
    bySum.map((p) => [p.promptId, p.chosen, p.rejected]),
    byAverage.map((p) => [p.promptId, p.chosen, p.rejected]),
    'same pairs',
  );
  t.equal(
    bySum.length,
    scored
      .filter((x, i, all) => all.findIndex((y) => y.promptId === x.promptId) === i)
      .filter((x) => scored.filter((y) => y.promptId === x.promptId).length >= 5).length,
  );
  for (const pair of bySum) {
    const group = scored.filter((x) => x.promptId === pair.promptId);
    const totals = group.map((x) => x.scores.total);
    t.ok(group.length >= 5);
    t.equal(group.find((x) => x.response === pair.chosen)!.scores.total, Math.max(...totals));
    t.equal(group.find((x) => x.response === pair.rejected)!.scores.total, Math.min(...totals));
    t.equal(pair.margin, Math.max(...totals) - Math.min(...totals));
  }
});

t.test('property 22: all-equal totals still pair two different responses unless dropTies', async (t) => {
  const tied = [0, 1, 2, 3, 4].map((i) => ({ promptId: 'x', response: `r${i}`, scores: scores(20) }));
  t.same(buildPairs(tied), [{ promptId: 'x', chosen: 'r0', rejected: 'r4', margin: 0 }]);
  t.same(buildPairs(tied, { dropTies: true }), []);
  t.throws(() => buildPairs(tied, { minResponses: 1 }), {
    name: 'RangeError',
    message: 'buildPairs: expected options.minResponses to be an integer >= 2, received 1',
  });
  t.throws(() => buildPairs(tied, { droptie: true } as never), {
    message: 'buildPairs: unknown option options.droptie (did you mean options.dropTies?)',
  });
  t.throws(() => buildPairs([{ promptId: 'x', response: 'r', scores: { total: NaN } }]), {
    name: 'TypeError',
    message: 'buildPairs: expected scored[0].scores.total to be a finite number, received NaN',
  });
});

t.test('language heuristic: English if Latin letters > 4 × CJK characters', async (t) => {
  t.equal(detectLanguage('What does the report say about 2019?'), 'en');
  t.equal(detectLanguage('报告对2019年有何说明？'), 'zh');
  t.equal(detectLanguage('abcde一'), 'en', '5 > 4');
  t.equal(detectLanguage('abcd一'), 'zh', '4 is not > 4');
  t.equal(detectLanguage('这份 report 讲了什么'), 'zh', '6 letters vs 7 CJK');
  t.equal(detectLanguage(''), 'zh', 'neither: zh, as in the official code');
  t.equal(detectLanguage('[]^_` 123'), 'zh', 'ASCII symbols are not letters');
});

t.test('completeness position labels: round(100·start/total) to round(100·end/total), ties to even', async (t) => {
  t.equal(positionLabel(0, 4096, 8960), '[文档0% - 46%部分的有关信息]');
  t.equal(positionLabel(4096, 8192, 8960), '[文档46% - 91%部分的有关信息]');
  t.equal(positionLabel(8192, 8960, 8960, 'en'), '[Relevant information from 91% - 100% of the document]');
  t.equal(positionLabel(1, 3, 8), '[文档12% - 38%部分的有关信息]', '12.5 → 12, 37.5 → 38 (Python round)');
  t.same([0.5, 1.5, 2.5, 3.49, 3.51, 7].map(roundHalfEven), [0, 2, 2, 3, 4, 7]);
  t.throws(() => positionLabel(5, 3, 8), {
    name: 'RangeError',
    message: 'positionLabel: expected end to be an integer >= 5 and <= 8, received 3',
  });
  t.throws(() => positionLabel(0, 0, 0), { name: 'RangeError' });
});

t.test('information replies: "No relevant information" is canonical, empty replies are retried', async (t) => {
  t.equal(parseInfo('  1. Sales rose 5%.\n2. In 2019.  '), '1. Sales rose 5%.\n2. In 2019.');
  t.equal(parseInfo('No relevant information.'), NO_RELEVANT_INFORMATION);
  t.equal(parseInfo('there is no relevant information here'), NO_RELEVANT_INFORMATION);
  t.equal(parseInfo('无相关信息'), NO_RELEVANT_INFORMATION);
  t.equal(parseInfo(' \n '), undefined);
});

t.test(
  'prompt templates: both languages, required placeholders, analysis first and [[rating]] last, overrides',
  async (t) => {
    for (const name of Object.keys(PROMPT_PLACEHOLDERS) as PromptName[]) {
      for (const lang of ['en', 'zh'] as const) {
        const tpl = DEFAULT_PROMPTS[name][lang];
        for (const p of PROMPT_PLACEHOLDERS[name]) t.ok(tpl.includes(`{{${p}}}`), `${name}.${lang} has {{${p}}}`);
      }
    }
    for (const name of ['helpfulness', 'logicality', 'completeness'] as const) {
      t.match(
        DEFAULT_PROMPTS[name].en,
        /First write a short analysis[\s\S]*on the last line, in double brackets, e\.g\. \[\[\d\]\]/,
      );
      t.match(DEFAULT_PROMPTS[name].zh, /请先给出简要分析[\s\S]*最后一行用双方括号/);
    }
    for (const lang of ['en', 'zh'] as const) {
      t.match(
        DEFAULT_PROMPTS.faithfulness[lang],
        /\[\[Fully supported\]\][\s\S]*\[\[Partially supported\]\][\s\S]*\[\[No support\]\]/,
      );
      t.match(DEFAULT_PROMPTS.statements[lang], /<statement>/);
      t.match(DEFAULT_PROMPTS.infoExtraction[lang], /No relevant information/);
    }
    t.equal(parseSupportVerdict('[[Partially supported]]'), 0.5, 'the labels the prompts ask for parse');

    const custom = resolvePrompts('f', 'prompts', { helpfulness: { en: 'Rate {{answer}} to {{question}}' } });
    t.equal(custom.helpfulness.en, 'Rate {{answer}} to {{question}}');
    t.equal(custom.helpfulness.zh, DEFAULT_PROMPTS.helpfulness.zh, 'the other language keeps its default');
    t.equal(custom.logicality, DEFAULT_PROMPTS.logicality);
    t.throws(() => resolvePrompts('f', 'prompts', { helpfulness: { en: 'Rate {{answer}}' } }), {
      name: 'TypeError',
      message: /expected prompts\.helpfulness\.en to be a template containing \{\{question\}\}/,
    });
    t.throws(() => resolvePrompts('f', 'prompts', { helpfullness: { en: '' } }), {
      message: /unknown prompt prompts\.helpfullness/,
    });
    t.throws(() => resolvePrompts('f', 'prompts', { helpfulness: { fr: '' } }), {
      message: /unknown language prompts\.helpfulness\.fr/,
    });

    t.equal(
      fillTemplate('Q: {{question}} A: {{answer}} {{other}}', { question: 'is {{answer}} $& ok?', answer: 'yes' }),
      'Q: is {{answer}} $& ok? A: yes {{other}}',
      'one pass: inserted text is not substituted again; $ patterns are literal',
    );
  },
);
