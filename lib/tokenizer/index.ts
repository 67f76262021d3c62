/**
 * Tokenizers and chat templates: the built-in {@link ByteTokenizer} for models trained from scratch
 * and {@link HfTokenizer} for Hugging Face checkpoints, both behind the {@link Tokenizer} contract;
 * {@link loadTokenizer} picks one from a checkpoint directory.
 */
export type { ChatMessage, ChatOptions, DecodeOptions, EncodedChat, EncodeOptions, Tokenizer } from './types.js';
export { ByteTokenizer, BYTE_SPECIAL_TOKENS, BYTE_TOKENIZER_CLASS } from './byte.js';
export { HfTokenizer, END_OF_TURN_TOKENS, type HfTokenizerFiles, type HfTokenizerSources } from './hf.js';
export { loadTokenizer } from './load.js';
