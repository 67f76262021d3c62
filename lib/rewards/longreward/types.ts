/**
 * Types of the LongReward pipeline (docs/algorithms.md §5, arXiv 2410.21252). The engine never ships a judge
 * or an embedding model: users plug in an API client or a local model behind these interfaces.
 */
import type { Tokenizer } from '../../tokenizer/types.js';
import type { LongRewardPrompts, PromptName, LocalizedPrompt } from './prompts.js';

/** Options of one judge call. */
export interface JudgeCallOptions {
  /** 0.01 on the first attempt, 0.95 on retries (docs/algorithms.md §5.3). */
  temperature: number;
  /**
   * A hint, the official pipeline's generation limit for this kind of call: 512 for ratings and
   * support verdicts, 2048 for statement extraction, 1024 for information extraction. May be ignored.
   */
  maxTokens?: number;
}

/**
 * An LLM call: one user message in, the model's reply out. Errors thrown here (network, quota)
 * propagate unchanged; only replies that cannot be parsed are retried by the pipeline, so transport
 * retries belong in the client.
 */
export interface JudgeModel {
  complete(prompt: string, options: JudgeCallOptions): Promise<string>;
}

/** A text embedding model: one vector per text, all of one dimension. */
export interface EmbeddingModel {
  embed(texts: string[]): Promise<number[][]>;
}

/** One long-context example: the document, the user's question about it, and a response to score. */
export interface LongRewardInput {
  /** The long document (non-empty). */
  context: string;
  /** The question (non-empty). */
  question: string;
  /** The response being scored (may be empty). */
  answer: string;
}

/** The four LongReward scores, each on 0..10, with their sum and mean. */
export interface LongRewardScores {
  helpfulness: number;
  logicality: number;
  faithfulness: number;
  completeness: number;
  /** helpfulness + logicality + faithfulness + completeness (0..40), what the official code ranks by */
  total: number;
  /** total / 4, the paper's "final reward"; ranks exactly as `total` */
  average: number;
}

/** What the judge said, for inspection and debugging ({@link LongReward.explain}). */
export interface LongRewardDetails {
  helpfulness: { analysis: string };
  logicality: { analysis: string };
  faithfulness: {
    /** false when no statement could be extracted and the `noStatements` convention was applied */
    extracted: boolean;
    statements: Array<{
      statement: string;
      /** indices (into the 128-token chunks) of the passages shown to the judge, in document order */
      passages: number[];
      verdict: 0 | 0.5 | 1;
      analysis: string;
    }>;
  };
  completeness: {
    analysis: string;
    /** One block per 4096-token chunk: its position label and the facts extracted from it. */
    info: Array<{ label: string; info: string }>;
  };
}

/** Scores plus the judge's reasoning. */
export interface LongRewardResult {
  scores: LongRewardScores;
  details: LongRewardDetails;
}

/** Constructor options of {@link LongReward}. */
export interface LongRewardOptions {
  judge: JudgeModel;
  embedder: EmbeddingModel;
  /** Splits the context into token chunks (the official code uses the GLM-4-9B tokenizer). */
  tokenizer: Tokenizer;
  /** Chunk size for faithfulness retrieval. Default 128. */
  retrievalChunkTokens?: number;
  /** Chunk size for completeness information extraction. Default 4096. */
  infoChunkTokens?: number;
  /** Passages retrieved per statement. Default 5. */
  topK?: number;
  /** Judge attempts per call before giving up (first at temperature 0.01, then 0.95). Default 5. */
  maxAttempts?: number;
  /**
   * Language of the prompts. 'auto' (default): information extraction follows each chunk's language
   * (as the official code does); every other prompt follows the question and answer.
   */
  language?: 'auto' | 'en' | 'zh';
  /** Replacement templates; a given entry may override one language only. */
  prompts?: { [K in PromptName]?: Partial<LocalizedPrompt> };
  /**
   * What faithfulness is when the statement extractor still finds no `<statement>` after
   * `maxAttempts` tries: a number in [0, 10] (default 10: an answer that makes no factual claim
   * contradicts nothing), or 'throw' to fail as the official code does.
   */
  noStatements?: number | 'throw';
  /** Most judge calls in flight at once for this instance. Default 8. */
  maxConcurrentCalls?: number;
  /**
   * How many (context, question) pairs keep their chunk embeddings and extracted information, so
   * the responses to one prompt share them (the official pipeline precomputes them per prompt).
   * Default 32; 0 disables the cache.
   */
  cacheSize?: number;
}

export type { LongRewardPrompts, PromptName, LocalizedPrompt };
