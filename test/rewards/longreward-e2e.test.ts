// LongReward end to end (docs/algorithms.md §5): LongReward.score with a stub judge whose replies are keyed by
// the prompt it receives, a bag-of-words stub embedder and the built-in ByteTokenizer. Checks the
// total, the retry temperatures, the top-5 passages in document order (property 23), the 4096-token
// information blocks and their labels, caching per prompt, Chinese prompts, the no-statement
// convention, scoreMany and its per-input callback, the judge-concurrency cap, and argument errors.
import t from 'tap';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import {
  DEFAULT_PROMPTS,
  JudgeRetryError,
  LongReward,
  NO_RELEVANT_INFORMATION,
  type EmbeddingModel,
  type JudgeModel,
  type LongRewardOptions,
  type PromptName,
} from '../../lib/rewards/longreward/index.js';

const tokenizer = new ByteTokenizer();

/** Which default template (and language) a prompt was made from: its text before the first placeholder. */
function kindOf(prompt: string): { name: PromptName; lang: 'en' | 'zh' } {
  for (const name of Object.keys(DEFAULT_PROMPTS) as PromptName[])
    for (const lang of ['en', 'zh'] as const)
      if (prompt.startsWith(DEFAULT_PROMPTS[name][lang].split('{{')[0])) return { name, lang };
  throw new Error(`unknown prompt: ${prompt.slice(0, 80)}`);
}

interface Call {
  name: PromptName;
  lang: 'en' | 'zh';
  prompt: string;
  temperature: number;
  maxTokens?: number;
}

/** A judge answering by prompt kind through `reply(kind, prompt, attempt)`; records every call. */
function stubJudge(reply: (name: PromptName, prompt: string, attempt: number) => string) {
  const calls: Call[] = [];
  const attempts = new Map<string, number>();
  const judge: JudgeModel = {
    async complete(prompt, { temperature, maxTokens }) {
      const { name, lang } = kindOf(prompt);
      calls.push({ name, lang, prompt, temperature, maxTokens });
      const attempt = (attempts.get(prompt) ?? 0) + 1;
      attempts.set(prompt, attempt);
      await new Promise((r) => setImmediate(r));
      return reply(name, prompt, attempt);
    },
  };
  return { judge, calls };
}

/** Bag of keywords: one dimension per keyword (counts); every other word is ignored. */
const KEYWORDS = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'red', 'green', 'blue', 'cyan', 'magenta', 'omega'];
function stubEmbedder() {
  const calls: string[][] = [];
  const embedder: EmbeddingModel = {
    async embed(texts) {
      calls.push(texts);
      return texts.map((text) => {
        const words = text.toLowerCase().split(/[^a-z]+/);
        return KEYWORDS.map((k) => words.filter((w) => w === k).length);
      });
    },
  };
  return { embedder, calls };
}

/**
 * 70 lines of exactly 128 bytes, so that the 128-token chunks are the lines: line i is
 * "Chunk i: <keywords>" padded with filler. Statement 1 (alpha..epsilon) shares 5/4/3/2/1 keywords
 * with lines 60/3/41/17/55; statement 2 (red..magenta) 5/4/3/2/1 with lines 8/66/30/12/50.
 */
const LINE_KEYWORDS: Record<number, string> = {
  60: 'alpha beta gamma delta epsilon',
  3: 'alpha beta gamma delta',
  41: 'alpha beta gamma',
  17: 'alpha beta',
  55: 'alpha',
  8: 'red green blue cyan magenta',
  66: 'red green blue cyan',
  30: 'red green blue',
  12: 'red green',
  50: 'red',
  69: 'omega',
};
const CONTEXT = Array.from(
  { length: 70 },
  (_, i) => `Chunk ${i}: ${LINE_KEYWORDS[i] ?? ''} `.padEnd(127, 'lorem ipsum ') + '\n',
).join('');
const S1 = 'The document lists alpha beta gamma delta epsilon.';
const S2 = 'The colours are red green blue cyan magenta.';
const S3 = 'Omega is mentioned at the end.';

/** Line numbers shown to the judge, in the order shown. */
const shownLines = (prompt: string) => [...prompt.matchAll(/Chunk (\d+):/g)].map((m) => Number(m[1]));

function englishReplies(name: PromptName, prompt: string, attempt: number): string {
  switch (name) {
    case 'helpfulness':
      return attempt === 1
        ? 'Relevant and clear, but I forgot the rating.'
        : 'The analysis mentions [[3]] as a draft. Final rating: [[8]]';
    case 'logicality':
      return 'Consistent throughout. [[7.5]]';
    case 'statements':
      return `<statement>${S1}</statement>\n<statement>${S2}</statement>\n<statement>${S3}</statement>`;
    case 'faithfulness':
      return prompt.includes(S1)
        ? 'All stated. [[Fully supported]]'
        : prompt.includes(S2)
          ? 'Magenta missing. [[Partially supported]]'
          : '[[No support]]';
    case 'infoExtraction':
      return prompt.includes('Chunk 0:')
        ? '1. alpha appears in chunk 3.'
        : prompt.includes('Chunk 69:')
          ? '1. omega at the end.'
          : 'No relevant information';
    case 'completeness':
      return 'Covers most points. [[6]]';
  }
}

const input = { context: CONTEXT, question: 'Which keywords does the document list?', answer: `${S1} ${S2} ${S3}` };

t.test('LongReward.score end to end: four scores, total = sum, retries at 0.01 then 0.95', async (t) => {
  t.equal(Buffer.byteLength(CONTEXT), 70 * 128);
  const { judge, calls } = stubJudge(englishReplies);
  const { embedder, calls: embedCalls } = stubEmbedder();
  const lr = new LongReward({ judge, embedder, tokenizer });
  t.same(
    [lr.retrievalChunkTokens, lr.infoChunkTokens, lr.topK, lr.maxAttempts],
    [128, 4096, 5, 5],
    'defaults (property 23)',
  );

  const { scores, details } = await lr.explain(input);
  t.same(scores, { helpfulness: 8, logicality: 7.5, faithfulness: 5, completeness: 6, total: 26.5, average: 6.625 });
  t.equal(scores.total, scores.helpfulness + scores.logicality + scores.faithfulness + scores.completeness);
  const first = calls.slice(); // the calls of explain(); score() below adds its own
  t.same(await lr.score(input), scores, 'score() gives the same scores');
  const temps = (name: PromptName) => first.filter((c) => c.name === name).map((c) => c.temperature);
  t.same(temps('helpfulness').slice(0, 2), [0.01, 0.95], 'the reply without [[ ]] is retried at 0.95');
  t.same(temps('logicality').slice(0, 1), [0.01]);
  t.ok(
    first.every((c) => c.lang === 'en'),
    'English question and answer: English prompts',
  );
  t.same(
    Object.fromEntries(
      ['helpfulness', 'statements', 'faithfulness', 'infoExtraction'].map((n) => [
        n,
        first.find((c) => c.name === n)!.maxTokens,
      ]),
    ),
    { helpfulness: 512, statements: 2048, faithfulness: 512, infoExtraction: 1024 },
    'length hints as in the official code',
  );

  const helpfulnessPrompt = first.find((c) => c.name === 'helpfulness')!.prompt;
  t.ok(
    helpfulnessPrompt.includes(input.question) &&
      helpfulnessPrompt.includes(input.answer) &&
      !helpfulnessPrompt.includes('Chunk 0:'),
    'helpfulness sees question and answer, not the context',
  );
  t.same(details.helpfulness.analysis, 'The analysis mentions [[3]] as a draft. Final rating: [[8]]');

  t.same(
    embedCalls.map((c) => c.length),
    [70, 3, 3],
    'the 70 chunks once (cached), the 3 statements per score',
  );
  t.ok(
    embedCalls[0].every((text, i) => text.startsWith(`Chunk ${i}:`) && text.length === 128),
    'chunks are the 128-byte lines',
  );
});

t.test('property 23: each statement is judged against its top-5 128-token chunks, in document order', async (t) => {
  const { judge, calls } = stubJudge(englishReplies);
  const lr = new LongReward({ judge, embedder: stubEmbedder().embedder, tokenizer });
  const { details } = await lr.explain(input);
  const verdictPrompt = (s: string) => calls.find((c) => c.name === 'faithfulness' && c.prompt.includes(s))!.prompt;
  t.same(shownLines(verdictPrompt(S1)), [3, 17, 41, 55, 60], 'similarity order 60, 3, 41, 17, 55; shown by position');
  t.same(shownLines(verdictPrompt(S2)), [8, 12, 30, 50, 66]);
  t.same(
    [...verdictPrompt(S1).matchAll(/\[Passage (\d)\]\nChunk/g)].map((m) => Number(m[1])),
    [1, 2, 3, 4, 5],
    'passages labelled 1..5',
  );
  t.equal(shownLines(verdictPrompt(S3)).length, 5, 'k = 5 even when only one chunk is similar (the rest tie at 0)');
  t.equal(shownLines(verdictPrompt(S3))[4], 69);
  t.same(
    details.faithfulness.statements.map((s) => [s.statement, s.passages, s.verdict]),
    [
      [S1, [3, 17, 41, 55, 60], 1],
      [S2, [8, 12, 30, 50, 66], 0.5],
      [S3, shownLines(verdictPrompt(S3)), 0],
    ],
  );
  t.equal(details.faithfulness.extracted, true);

  const lr3 = new LongReward({
    judge: stubJudge(englishReplies).judge,
    embedder: stubEmbedder().embedder,
    tokenizer,
    topK: 3,
  });
  t.same((await lr3.explain(input)).details.faithfulness.statements[0].passages, [3, 41, 60], 'topK: 3');
});

t.test('property 23: completeness extracts facts from each 4096-token chunk and labels them by position', async (t) => {
  const { judge, calls } = stubJudge(englishReplies);
  const lr = new LongReward({ judge, embedder: stubEmbedder().embedder, tokenizer });
  const { details } = await lr.explain(input);
  const extraction = calls.filter((c) => c.name === 'infoExtraction');
  t.equal(extraction.length, 3, '8960 tokens: chunks of 4096, 4096, 768');
  t.same(
    extraction.map((c) => shownLines(c.prompt).length),
    [32, 32, 6],
    '32 lines of 128 bytes per 4096-token chunk',
  );
  t.same(details.completeness.info, [
    { label: '[Relevant information from 0% - 46% of the document]', info: '1. alpha appears in chunk 3.' },
    { label: '[Relevant information from 46% - 91% of the document]', info: NO_RELEVANT_INFORMATION },
    { label: '[Relevant information from 91% - 100% of the document]', info: '1. omega at the end.' },
  ]);
  const prompt = calls.find((c) => c.name === 'completeness')!.prompt;
  t.ok(
    prompt.includes(
      '[Relevant information from 0% - 46% of the document]\n1. alpha appears in chunk 3.\n\n[Relevant information from 46% - 91% of the document]\nNo relevant information',
    ),
    'blocks in order',
  );
  t.ok(prompt.includes(input.answer) && !prompt.includes('Chunk 5:'), 'the judge sees the facts, not the raw document');

  const small = stubJudge(englishReplies);
  await new LongReward({
    judge: small.judge,
    embedder: stubEmbedder().embedder,
    tokenizer,
    infoChunkTokens: 1024,
  }).score(input);
  t.equal(
    small.calls.filter((c) => c.name === 'infoExtraction').length,
    9,
    'infoChunkTokens: 1024 → ceil(8960/1024) = 9 chunks',
  );
});

t.test('responses to one prompt share the chunk embeddings and extracted facts (cache)', async (t) => {
  const { judge, calls } = stubJudge(englishReplies);
  const { embedder, calls: embedCalls } = stubEmbedder();
  const lr = new LongReward({ judge, embedder, tokenizer });
  const answers = [`${S1} ${S2}`, `${S3}`, 'Another answer.'];
  const results = await lr.scoreMany(
    answers.map((answer) => ({ ...input, answer })),
    { concurrency: 3 },
  );
  t.equal(results.length, 3);
  t.equal(calls.filter((c) => c.name === 'infoExtraction').length, 3, 'facts extracted once for the three responses');
  t.equal(embedCalls.filter((c) => c.length === 70).length, 1, 'chunks embedded once');
  await lr.score({ ...input, question: 'A different question?' });
  t.equal(calls.filter((c) => c.name === 'infoExtraction').length, 6, 'a new question: new extraction');
  t.equal(embedCalls.filter((c) => c.length === 70).length, 1, '... but the same chunk embeddings');
  lr.clearCache();
  await lr.score(input);
  t.equal(calls.filter((c) => c.name === 'infoExtraction').length, 9, 'after clearCache: extracted again');

  const noCache = stubJudge(englishReplies);
  const lr0 = new LongReward({ judge: noCache.judge, embedder: stubEmbedder().embedder, tokenizer, cacheSize: 0 });
  await lr0.score(input);
  await lr0.score(input);
  t.equal(noCache.calls.filter((c) => c.name === 'infoExtraction').length, 6, 'cacheSize 0: no sharing');
});

t.test('scoreMany keeps input order and matches score(); maxConcurrentCalls caps judge calls in flight', async (t) => {
  let inFlight = 0;
  let peak = 0;
  const judge: JudgeModel = {
    async complete(prompt) {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
      const { name } = kindOf(prompt);
      return name === 'helpfulness'
        ? `[[${prompt.includes('answer two') ? 2 : prompt.includes('answer one') ? 1 : 0}]]`
        : englishReplies(name, prompt, 1);
    },
  };
  const lr = new LongReward({ judge, embedder: stubEmbedder().embedder, tokenizer, maxConcurrentCalls: 3 });
  const inputs = ['answer zero', 'answer one', 'answer two'].map((answer) => ({ ...input, answer: `${S1} ${answer}` }));
  const many = await lr.scoreMany(inputs, { concurrency: 2 });
  t.same(
    many.map((s) => s.helpfulness),
    [0, 1, 2],
    'input order',
  );
  t.ok(peak <= 3 && peak >= 2, `peak judge calls in flight ${peak} <= 3`);
  t.same(await lr.score(inputs[2]), many[2]);
  t.same(await lr.scoreMany([]), []);
  await t.rejects(lr.scoreMany([inputs[0], { ...input, context: '' }]), {
    name: 'TypeError',
    message: 'LongReward.scoreMany: expected inputs[1].context to be a non-empty string, received ""',
  });
});

t.test(
  'Chinese question and answer: Chinese prompts, [文段n] passages, [文档..%] labels; extraction follows each chunk',
  async (t) => {
    const zhInput = { context: CONTEXT, question: '文档列出了哪些关键词？', answer: '文档列出了 alpha 等关键词。' };
    const { judge, calls } = stubJudge((name, prompt, attempt) =>
      name === 'statements' ? `<statement>${S1}</statement>` : englishReplies(name, prompt, attempt),
    );
    const lr = new LongReward({ judge, embedder: stubEmbedder().embedder, tokenizer });
    const { scores, details } = await lr.explain(zhInput);
    t.same(scores, { helpfulness: 8, logicality: 7.5, faithfulness: 10, completeness: 6, total: 31.5, average: 7.875 });
    t.ok(
      calls.filter((c) => c.name !== 'infoExtraction').every((c) => c.lang === 'zh'),
      'rating, statement and verdict prompts in Chinese',
    );
    t.ok(
      calls.filter((c) => c.name === 'infoExtraction').every((c) => c.lang === 'en'),
      'auto: the English chunks get the English extraction prompt',
    );
    t.match(calls.find((c) => c.name === 'faithfulness')!.prompt, /\[文段1\]\nChunk 3:[\s\S]*\[文段5\]\nChunk 60:/);
    t.equal(details.completeness.info[0].label, '[文档0% - 46%部分的有关信息]');

    const forced = stubJudge(englishReplies);
    await new LongReward({ judge: forced.judge, embedder: stubEmbedder().embedder, tokenizer, language: 'zh' }).score(
      input,
    );
    t.ok(
      forced.calls.every((c) => c.lang === 'zh'),
      "language: 'zh' forces every prompt",
    );
  },
);

t.test(
  'no statement extracted: retried 5 times, then faithfulness 10 (default), a chosen number, or a throw',
  async (t) => {
    const silent = (name: PromptName, prompt: string, attempt: number) =>
      name === 'statements' ? 'The answer makes no factual claim.' : englishReplies(name, prompt, attempt);
    const { judge, calls } = stubJudge(silent);
    const { embedder, calls: embedCalls } = stubEmbedder();
    const { scores, details } = await new LongReward({ judge, embedder, tokenizer }).explain({
      ...input,
      answer: 'I cannot tell.',
    });
    t.equal(scores.faithfulness, 10);
    t.same(details.faithfulness, { extracted: false, statements: [] });
    t.same(
      calls.filter((c) => c.name === 'statements').map((c) => c.temperature),
      [0.01, 0.95, 0.95, 0.95, 0.95],
    );
    t.equal(calls.filter((c) => c.name === 'faithfulness').length, 0, 'no verdict calls');
    t.equal(embedCalls.length, 0, 'nothing embedded');

    const zero = await new LongReward({
      judge: stubJudge(silent).judge,
      embedder,
      tokenizer,
      noStatements: 0,
      maxAttempts: 2,
    }).score(input);
    t.equal(zero.faithfulness, 0);
    await t.rejects(
      new LongReward({ judge: stubJudge(silent).judge, embedder, tokenizer, noStatements: 'throw' }).score(input),
      {
        code: 'ERR_RLHF_FORMAT',
        message: /no <statement>\.\.\.<\/statement> in 5 attempts/,
      },
    );
  },
);

t.test(
  'a rating that never parses rejects score() with a FORMAT error; judge and embedder errors surface',
  async (t) => {
    const { judge } = stubJudge((name, prompt, attempt) =>
      name === 'completeness' ? 'Looks complete: 9/10' : englishReplies(name, prompt, attempt),
    );
    await t.rejects(
      new LongReward({ judge, embedder: stubEmbedder().embedder, tokenizer, maxAttempts: 3 }).score(input),
      {
        code: 'ERR_RLHF_FORMAT',
        message:
          'judgeWithRetry: the judge gave no completeness rating [[0-10]] in 3 attempts (temperature 0.01, then 0.95 x2); last reply: "Looks complete: 9/10"',
      },
    );
    const outOfScale = stubJudge((name, prompt, attempt) =>
      name === 'logicality' ? (attempt < 3 ? '[[70]]' : '[[7]]') : englishReplies(name, prompt, attempt),
    );
    t.equal(
      (await new LongReward({ judge: outOfScale.judge, embedder: stubEmbedder().embedder, tokenizer }).score(input))
        .logicality,
      7,
      'ratings above 10 are retried',
    );

    const short: EmbeddingModel = { embed: async (texts) => texts.slice(1).map(() => [1]) };
    await t.rejects(
      new LongReward({ judge: stubJudge(englishReplies).judge, embedder: short, tokenizer }).score(input),
      {
        code: 'ERR_RLHF_FORMAT',
        message: /EmbeddingModel\.embed returned (69|2) vectors for (70 context chunks|3 statements)/,
      },
    );
  },
);

t.test('argument errors name the option', async (t) => {
  const base: LongRewardOptions = {
    judge: stubJudge(englishReplies).judge,
    embedder: stubEmbedder().embedder,
    tokenizer,
  };
  t.throws(() => new LongReward({ ...base, judge: undefined as never }), {
    name: 'TypeError',
    message: /^LongReward: expected options\.judge to be a JudgeModel/,
  });
  t.throws(() => new LongReward({ ...base, embedder: {} as never }), {
    name: 'TypeError',
    message: /^LongReward: expected options\.embedder to be an EmbeddingModel/,
  });
  t.throws(() => new LongReward({ ...base, tokenizer: null as never }), {
    name: 'TypeError',
    message: /options\.tokenizer/,
  });
  t.throws(() => new LongReward({ ...base, topk: 3 } as never), {
    message: 'LongReward: unknown option options.topk (did you mean options.topK?)',
  });
  t.throws(() => new LongReward({ ...base, retrievalChunkTokens: 0 }), {
    name: 'RangeError',
    message: 'LongReward: expected options.retrievalChunkTokens to be an integer >= 1, received 0',
  });
  t.throws(() => new LongReward({ ...base, language: 'fr' as never }), {
    message: 'LongReward: expected options.language to be one of "auto", "en", "zh", received "fr"',
  });
  t.throws(() => new LongReward({ ...base, noStatements: 11 }), {
    name: 'RangeError',
    message: 'LongReward: expected options.noStatements to be a number in [0, 10] or "throw", received 11',
  });
  t.throws(() => new LongReward({ ...base, prompts: { completeness: { en: 'no placeholders' } } }), {
    message: /options\.prompts\.completeness\.en to be a template containing \{\{question\}\}/,
  });
  const lr = new LongReward(base);
  await t.rejects(lr.score({ context: 'doc', question: '', answer: 'a' }), {
    name: 'TypeError',
    message: 'LongReward: expected input.question to be a non-empty string, received ""',
  });
  await t.rejects(lr.score(null as never), {
    name: 'TypeError',
    message: 'LongReward: expected input to be an object, received null',
  });
  await t.rejects(lr.scoreMany([], { concurrency: 0 }), {
    name: 'RangeError',
    message: 'LongReward.scoreMany: expected options.concurrency to be an integer >= 1, received 0',
  });
});

t.test('scoreMany onSettled: each input once as it finishes, skipped ones with their error', async (t) => {
  // 'answer one' never gets a parseable helpfulness rating; 'answer zero' is answered last
  const judge: JudgeModel = {
    async complete(prompt) {
      const { name } = kindOf(prompt);
      if (prompt.includes('answer zero')) await new Promise((r) => setTimeout(r, 20));
      if (name === 'helpfulness') return prompt.includes('answer one') ? 'no rating here' : '[[7]]';
      return englishReplies(name, prompt, 1);
    },
  };
  const lr = new LongReward({ judge, embedder: stubEmbedder().embedder, tokenizer, maxAttempts: 2 });
  const inputs = ['answer zero', 'answer one', 'answer two'].map((answer) => ({ ...input, answer: `${S1} ${answer}` }));
  const seen: Array<[number, string]> = [];
  const many = await lr.scoreMany(inputs, {
    concurrency: 3,
    skipUnparseable: true,
    onSettled: (i, o) =>
      void seen.push([
        i,
        'scores' in o ? `total ${o.scores.total}` : `${o.error instanceof JudgeRetryError}: ${o.error.message}`,
      ]),
  });
  t.equal(many[1], undefined, 'the unparseable input is skipped');
  t.same(
    seen.map(([i]) => i),
    [1, 2, 0],
    'completion order',
  );
  t.equal(seen[2][1], `total ${many[0]!.total}`);
  t.equal(seen[1][1], `total ${many[2]!.total}`);
  t.match(seen[0][1], /^true: judgeWithRetry: the judge gave no helpfulness rating/);
  const calls: number[] = [];
  await t.rejects(
    lr.scoreMany(inputs, { concurrency: 1, onSettled: (i) => void calls.push(i) }),
    { message: /no helpfulness rating/ },
    'without skipUnparseable the error rejects',
  );
  t.same(calls, [0], '... and onSettled is not called for it');
  await t.rejects(
    lr.scoreMany(inputs, {
      concurrency: 1,
      onSettled: () => {
        throw new Error('stop here');
      },
    }),
    { message: 'stop here' },
    'an error thrown by onSettled rejects',
  );
  await t.rejects(lr.scoreMany(inputs, { onSettled: 'log' as never }), {
    name: 'TypeError',
    message: 'LongReward.scoreMany: expected options.onSettled to be a function (index, outcome), received "log"',
  });
});

t.test('custom prompts replace the defaults (one language)', async (t) => {
  const seen: string[] = [];
  const judge: JudgeModel = {
    async complete(prompt) {
      seen.push(prompt);
      if (prompt.startsWith('HELP')) return '[[4]]';
      return englishReplies(kindOf(prompt).name, prompt, 1);
    },
  };
  const lr = new LongReward({
    judge,
    embedder: stubEmbedder().embedder,
    tokenizer,
    prompts: { helpfulness: { en: 'HELP {{question}} || {{answer}}' } },
  });
  t.equal((await lr.score(input)).helpfulness, 4);
  t.ok(seen.includes(`HELP ${input.question} || ${input.answer}`));
});
