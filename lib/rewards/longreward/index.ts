/**
 * LongReward (docs/algorithms.md §5, arXiv 2410.21252): LLM-judge rewards for long-context responses on four
 * dimensions (helpfulness, logicality, faithfulness, completeness), and best-vs-worst preference
 * pairs from them. The judge and the embedding model are user-supplied interfaces.
 */
export type {
  EmbeddingModel,
  JudgeCallOptions,
  JudgeModel,
  LongRewardDetails,
  LongRewardInput,
  LongRewardOptions,
  LongRewardResult,
  LongRewardScores,
} from './types.js';
export { LongReward, type OnScoreSettled } from './scorer.js';
export {
  DEFAULT_MAX_ATTEMPTS,
  FIRST_TEMPERATURE,
  RETRY_TEMPERATURE,
  fillTemplate,
  judgeWithRetry,
  JudgeRetryError,
  type JudgeRetryOptions,
} from './judge.js';
export { chunkByTokens, cosineSimilarity, retrieveTopK, type Retrieved, type TextChunk } from './chunk.js';
export {
  NO_RELEVANT_INFORMATION,
  SCORE_PATTERN,
  detectLanguage,
  faithfulnessScore,
  parseInfo,
  parseRating,
  parseScore,
  parseStatements,
  parseSupportVerdict,
  positionLabel,
  roundHalfEven,
  type SupportVerdict,
} from './parse.js';
export {
  DEFAULT_PROMPTS,
  PROMPT_PLACEHOLDERS,
  resolvePrompts,
  type LocalizedPrompt,
  type LongRewardPrompts,
  type PromptName,
} from './prompts.js';
export { buildPairs, type BuildPairsOptions, type LongRewardPair, type ScoredResponse } from './pairs.js';
export {
  LexicalEmbedder,
  OpenAIEmbedder,
  OpenAIJudge,
  type OpenAIClientOptions,
  type OpenAIClientStats,
} from './openai-judge.js';
