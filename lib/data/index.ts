/**
 * Datasets for SFT, reward modelling, preference training and RL: TRL's JSONL record formats
 * (formats.ts) read with file:line errors (jsonl.ts), tokenized with loss masks (tokenize.ts),
 * batched or packed into the model's ForwardBatch arrays (batch.ts), shuffled reproducibly
 * (shuffle.ts), length-balanced for reward models (balance.ts); step-labelled responses for process
 * reward models (steps.ts).
 */
export { readJsonl, readJsonlFile, writeJsonl, type JsonlLine } from '../io/jsonl.js';
export {
  parseSftRecord,
  toSftRecords,
  parsePreferenceRecord,
  parseScoredRecord,
  parseUnpairedRecord,
  loadUnpairedFile,
  parsePromptRecord,
  loadSftFile,
  loadPreferenceFile,
  loadScoredFile,
  loadPromptFile,
  type Prompt,
  type SftRecord,
  type SftInput,
  type PreferenceRecord,
  type ScoredRecord,
  type UnpairedRecord,
  type PromptRecord,
} from './formats.js';
export { tokenizeSft, encodePrompt, tokenizePromptResponse, type TokenizedExample } from './tokenize.js';
export {
  padBatch,
  packExamples,
  stackBatches,
  sliceBatch,
  PAD_SEGMENT,
  type TokenBatch,
  type PackStats,
} from './batch.js';
export { permutation } from './shuffle.js';
export { balanceByLength, formatBalanceReport, DEFAULT_BALANCE_EDGES, type BalanceReport } from './balance.js';
export { parseStepRecord, loadStepData, encodeSteps, splitSteps, type StepRecord, type EncodedSteps } from './steps.js';
