/**
 * The LongReward scorer (docs/algorithms.md §5.3–5.5): four judge-based scores on 0..10 for a response to a
 * question about a long document, summed as the official code ranks by.
 *
 * - helpfulness, logicality: the judge sees the question and the answer only;
 * - faithfulness: the judge extracts the answer's factual statements; each is matched to its top-k
 *   128-token chunks of the document by embedding cosine similarity, shown in document order, and
 *   judged fully / partially / not supported; score = 10 × mean verdict;
 * - completeness: the judge lists the question-relevant facts of every 4096-token chunk, labelled by
 *   position, then rates how much of them the answer covers.
 *
 * The four dimensions run concurrently; `maxConcurrentCalls` caps judge calls in flight. The chunk
 * embeddings and the per-chunk facts depend only on the (context, question) pair, so they are cached
 * and shared by every response to that prompt (the official pipeline precomputes them likewise).
 */
import { checkObject, checkString, options, rangeError, typeError } from '../../validate.js';
import { ErrorCode, RlhfError } from '../../errors.js';
import type { Tokenizer } from '../../tokenizer/types.js';
import { PromiseCache } from './cache.js';
import { chunkByTokens, topK, type TextChunk } from './chunk.js';
import { DEFAULT_MAX_ATTEMPTS, fillTemplate, judgeWithRetry, JudgeRetryError, Limiter } from './judge.js';
import {
  detectLanguage,
  faithfulnessScore,
  parseInfo,
  parseRating,
  parseStatements,
  parseSupportVerdict,
  positionLabel,
} from './parse.js';
import { resolvePrompts, type LongRewardPrompts, type PromptName } from './prompts.js';
import type {
  EmbeddingModel,
  JudgeModel,
  LongRewardDetails,
  LongRewardInput,
  LongRewardOptions,
  LongRewardResult,
  LongRewardScores,
} from './types.js';

type Lang = 'en' | 'zh';
interface InfoBlock {
  start: number;
  end: number;
  total: number;
  info: string;
}
interface Retrieval {
  chunks: TextChunk[];
  embeddings: number[][];
}

const FN = 'LongReward';
const OPTION_KEYS = [
  'judge',
  'embedder',
  'tokenizer',
  'retrievalChunkTokens',
  'infoChunkTokens',
  'topK',
  'maxAttempts',
  'language',
  'prompts',
  'noStatements',
  'maxConcurrentCalls',
  'cacheSize',
];

/** scoreMany's per-input callback: the input's index and its scores, or the unparseable error that skipped it. */
export type OnScoreSettled = (
  index: number,
  outcome: { scores: LongRewardScores } | { error: JudgeRetryError },
) => void;

/** Calls the embedder and checks it returned one finite vector per text, all of one dimension. */
async function embedChecked(embedder: EmbeddingModel, texts: string[], what: string): Promise<number[][]> {
  const vectors: unknown = await embedder.embed(texts);
  const bad = (why: string) =>
    new RlhfError(ErrorCode.FORMAT, `${FN}: EmbeddingModel.embed returned ${why} for ${texts.length} ${what}`);
  if (!Array.isArray(vectors) || vectors.length !== texts.length)
    throw bad(Array.isArray(vectors) ? `${vectors.length} vectors` : 'no array');
  const dim = (vectors[0] as ArrayLike<number> | undefined)?.length;
  return vectors.map((v: unknown, i) => {
    if (!Array.isArray(v) && !(v instanceof Float32Array) && !(v instanceof Float64Array))
      throw bad(`a non-array at index ${i}`);
    const arr = Array.from(v as ArrayLike<number>);
    if (arr.length === 0 || arr.length !== dim)
      throw bad(`vectors of different or zero lengths (${dim} and ${arr.length} at index ${i})`);
    if (!arr.every(Number.isFinite)) throw bad(`a non-finite value in vector ${i}`);
    return arr;
  });
}

/** LLM-judge rewards for long-context responses (LongReward, arXiv 2410.21252). */
export class LongReward {
  readonly retrievalChunkTokens: number;
  readonly infoChunkTokens: number;
  readonly topK: number;
  readonly maxAttempts: number;
  readonly language: 'auto' | Lang;
  readonly prompts: Readonly<LongRewardPrompts>;
  readonly noStatements: number | 'throw';
  private readonly judge: JudgeModel;
  private readonly embedder: EmbeddingModel;
  private readonly tokenizer: Tokenizer;
  private readonly retrievalCache: PromiseCache<Retrieval>;
  private readonly infoCache: PromiseCache<InfoBlock[]>;

  constructor(options_: LongRewardOptions) {
    const o = options(FN, 'options', options_);
    o.known(OPTION_KEYS);
    const { judge, embedder, tokenizer } = o.obj as Partial<LongRewardOptions>;
    if (typeof judge?.complete !== 'function')
      throw typeError(FN, 'options.judge', 'a JudgeModel (an object with complete(prompt, {temperature}))', judge);
    if (typeof embedder?.embed !== 'function')
      throw typeError(FN, 'options.embedder', 'an EmbeddingModel (an object with embed(texts))', embedder);
    if (typeof tokenizer?.encode !== 'function' || typeof tokenizer.decode !== 'function')
      throw typeError(FN, 'options.tokenizer', 'a Tokenizer', tokenizer);
    this.retrievalChunkTokens = o.int('retrievalChunkTokens', { min: 1 }, 128);
    this.infoChunkTokens = o.int('infoChunkTokens', { min: 1 }, 4096);
    this.topK = o.int('topK', { min: 1 }, 5);
    this.maxAttempts = o.int('maxAttempts', { min: 1 }, DEFAULT_MAX_ATTEMPTS);
    this.language = o.oneOf('language', ['auto', 'en', 'zh'] as const, 'auto');
    this.prompts = resolvePrompts(FN, 'options.prompts', o.obj.prompts);
    const none = o.obj.noStatements ?? 10;
    if (none !== 'throw' && (typeof none !== 'number' || !(none >= 0 && none <= 10)))
      throw (typeof none === 'number' ? rangeError : typeError)(
        FN,
        'options.noStatements',
        'a number in [0, 10] or "throw"',
        none,
      );
    this.noStatements = none;
    const limiter = new Limiter(o.int('maxConcurrentCalls', { min: 1 }, 8));
    this.judge = { complete: (prompt, opts) => limiter.run(() => judge.complete(prompt, opts)) };
    this.embedder = embedder;
    this.tokenizer = tokenizer;
    const cacheSize = o.int('cacheSize', { min: 0 }, 32);
    this.retrievalCache = new PromiseCache(cacheSize);
    this.infoCache = new PromiseCache(cacheSize);
  }

  /** The four scores, their sum (`total`) and mean (`average`). */
  async score(input: LongRewardInput): Promise<LongRewardScores> {
    return (await this.explain(input)).scores;
  }

  /** Scores with what the judge said: analyses, statements with their passages and verdicts, facts per chunk. */
  async explain(input: LongRewardInput): Promise<LongRewardResult> {
    const { context, question, answer } = checkInput(input, 'input');
    const lang: Lang = this.language === 'auto' ? detectLanguage(`${question}\n${answer}`) : this.language;
    const [h, l, f, c] = await Promise.all([
      this.rate('helpfulness', lang, { question, answer }),
      this.rate('logicality', lang, { question, answer }),
      this.faithfulness(context, question, answer, lang),
      this.completeness(context, question, answer, lang),
    ]);
    const total = h.score + l.score + f.score + c.score;
    const scores: LongRewardScores = {
      helpfulness: h.score,
      logicality: l.score,
      faithfulness: f.score,
      completeness: c.score,
      total,
      average: total / 4,
    };
    const details: LongRewardDetails = {
      helpfulness: { analysis: h.analysis },
      logicality: { analysis: l.analysis },
      faithfulness: f.details,
      completeness: { analysis: c.analysis, info: c.info },
    };
    return { scores, details };
  }

  /**
   * Scores many inputs, `concurrency` (default 4) at a time, results in input order. Rejects with
   * the first error (no new input is started after it); with `skipUnparseable`, an input whose
   * judge replies never parse (JudgeRetryError) is left undefined instead, as the official batch
   * script skips it, and any other error still rejects. `onSettled(index, outcome)`, if given, is
   * called as each input finishes, in completion order: `{ scores }`, or `{ error }` for an input
   * skipped as unparseable (not for an error that rejects); an error it throws rejects.
   */
  async scoreMany(
    inputs: readonly LongRewardInput[],
    options_?: { concurrency?: number; skipUnparseable?: false; onSettled?: OnScoreSettled },
  ): Promise<LongRewardScores[]>;
  async scoreMany(
    inputs: readonly LongRewardInput[],
    options_: { concurrency?: number; skipUnparseable: boolean; onSettled?: OnScoreSettled },
  ): Promise<Array<LongRewardScores | undefined>>;
  async scoreMany(
    inputs: readonly LongRewardInput[],
    options_?: { concurrency?: number; skipUnparseable?: boolean; onSettled?: OnScoreSettled },
  ): Promise<Array<LongRewardScores | undefined>> {
    if (!Array.isArray(inputs))
      throw typeError(`${FN}.scoreMany`, 'inputs', 'an array of {context, question, answer}', inputs);
    inputs.forEach((input, i) => checkInput(input, `inputs[${i}]`, `${FN}.scoreMany`));
    const o = options(`${FN}.scoreMany`, 'options', options_);
    o.known(['concurrency', 'skipUnparseable', 'onSettled']);
    const concurrency = o.int('concurrency', { min: 1 }, 4);
    const skipUnparseable = o.bool('skipUnparseable', false);
    const onSettled = o.obj.onSettled;
    if (onSettled !== undefined && typeof onSettled !== 'function')
      throw typeError(`${FN}.scoreMany`, 'options.onSettled', 'a function (index, outcome)', onSettled);
    const settled = onSettled as OnScoreSettled | undefined;
    const out = new Array<LongRewardScores | undefined>(inputs.length);
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && next < inputs.length) {
        const i = next++;
        let outcome: Parameters<OnScoreSettled>[1];
        try {
          outcome = { scores: (out[i] = await this.score(inputs[i])) };
        } catch (err) {
          if (!(skipUnparseable && err instanceof JudgeRetryError)) {
            failed = true;
            throw err;
          }
          outcome = { error: err };
        }
        try {
          settled?.(i, outcome);
        } catch (err) {
          failed = true;
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, inputs.length) }, worker));
    return out;
  }

  /** Forgets the cached chunk embeddings and extracted facts. */
  clearCache(): void {
    this.retrievalCache.clear();
    this.infoCache.clear();
  }

  private template(name: PromptName, lang: Lang, values: Record<string, string>): string {
    return fillTemplate(this.prompts[name][lang], values);
  }

  /** A 0..10 rating with its analysis. */
  private rate(name: 'helpfulness' | 'logicality' | 'completeness', lang: Lang, values: Record<string, string>) {
    const parse = (reply: string) => {
      const score = parseRating(reply);
      return score === undefined ? undefined : { score, analysis: reply };
    };
    return judgeWithRetry(this.judge, this.template(name, lang, values), parse, this.maxAttempts, {
      maxTokens: 512,
      what: `${name} rating [[0-10]]`,
    });
  }

  private async faithfulness(context: string, question: string, answer: string, lang: Lang) {
    let statements: string[];
    try {
      const parse = (reply: string) => {
        const s = parseStatements(reply);
        return s.length > 0 ? s : undefined;
      };
      const what = '<statement>...</statement>';
      statements = await judgeWithRetry(
        this.judge,
        this.template('statements', lang, { question, answer }),
        parse,
        this.maxAttempts,
        { maxTokens: 2048, what },
      );
    } catch (err) {
      if (!(err instanceof JudgeRetryError) || this.noStatements === 'throw') throw err;
      return { score: faithfulnessScore([], this.noStatements), details: { extracted: false, statements: [] } };
    }
    const [{ chunks, embeddings }, queries] = await Promise.all([
      this.retrieval(context),
      embedChecked(this.embedder, statements, 'statements'),
    ]);
    if (queries[0].length !== embeddings[0].length)
      throw new RlhfError(
        ErrorCode.FORMAT,
        `${FN}: EmbeddingModel.embed gave statements ${queries[0].length}-dimensional vectors but chunks ${embeddings[0].length}-dimensional ones`,
      );
    const judged = await Promise.all(
      statements.map(async (statement, s) => {
        const passages = topK(queries[s], embeddings, this.topK).map((r) => r.index); // vectors checked by embedChecked
        const text = passages
          .map((p, j) => `${lang === 'zh' ? `[文段${j + 1}]` : `[Passage ${j + 1}]`}\n${chunks[p].text}`)
          .join('\n\n');
        const parse = (reply: string) => {
          const verdict = parseSupportVerdict(reply);
          return verdict === undefined ? undefined : { verdict, analysis: reply };
        };
        const prompt = this.template('faithfulness', lang, { statement, context: text });
        const { verdict, analysis } = await judgeWithRetry(this.judge, prompt, parse, this.maxAttempts, {
          maxTokens: 512,
          what: 'support verdict [[...]]',
        });
        return { statement, passages, verdict, analysis };
      }),
    );
    return { score: faithfulnessScore(judged.map((j) => j.verdict)), details: { extracted: true, statements: judged } };
  }

  /** The context's retrieval chunks and their embeddings (cached per context). */
  private retrieval(context: string): Promise<Retrieval> {
    return this.retrievalCache.get(context, async () => {
      const chunks = chunkByTokens(context, this.tokenizer, this.retrievalChunkTokens);
      if (chunks.length === 0) throw new RlhfError(ErrorCode.FORMAT, `${FN}: the context encodes to no tokens`);
      return {
        chunks,
        embeddings: await embedChecked(
          this.embedder,
          chunks.map((c) => c.text),
          'context chunks',
        ),
      };
    });
  }

  private async completeness(context: string, question: string, answer: string, lang: Lang) {
    const blocks = await this.infoBlocks(context, question);
    const info = blocks.map((b) => ({ label: positionLabel(b.start, b.end, b.total, lang), info: b.info }));
    const text = info.map((b) => `${b.label}\n${b.info}`).join('\n\n');
    const { score, analysis } = await this.rate('completeness', lang, { question, context: text, answer });
    return { score, analysis, info };
  }

  /**
   * The question-relevant facts of every info chunk (cached per context and question). Unlike the
   * official code, which keys the blocks by their percentage label, blocks with equal labels (more
   * than ~100 chunks) are all kept.
   */
  private infoBlocks(context: string, question: string): Promise<InfoBlock[]> {
    const key = `${question.length}:${question}${context}`;
    return this.infoCache.get(key, () =>
      Promise.all(
        chunkByTokens(context, this.tokenizer, this.infoChunkTokens).map(async (chunk) => {
          const lang = this.language === 'auto' ? detectLanguage(chunk.text) : this.language;
          const prompt = this.template('infoExtraction', lang, { context: chunk.text, question });
          const info = await judgeWithRetry(this.judge, prompt, parseInfo, this.maxAttempts, {
            maxTokens: 1024,
            what: 'non-empty information list',
          });
          return { start: chunk.start, end: chunk.end, total: chunk.total, info };
        }),
      ),
    );
  }
}

function checkInput(input: unknown, path: string, fn = FN): LongRewardInput {
  const obj = checkObject(fn, path, input);
  return {
    context: checkString(fn, `${path}.context`, obj.context),
    question: checkString(fn, `${path}.question`, obj.question),
    answer: checkString(fn, `${path}.answer`, obj.answer, false),
  };
}
