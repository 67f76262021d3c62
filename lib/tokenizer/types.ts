/**
 * The tokenizer contract shared by the built-in byte tokenizer and Hugging Face tokenizers.
 */

/** One chat turn. `role` is usually system/user/assistant/tool; templates may accept others. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string;
}

/** A tokenized conversation. `ids.length === assistantMask.length`. */
export interface EncodedChat {
  ids: number[];
  /**
   * 1 where the token belongs to an assistant turn's content or its end-of-turn marker (the tokens
   * SFT trains on), else 0.
   */
  assistantMask: Uint8Array;
}

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /**
   * Default false. Byte tokenizer: when true, exact special-token strings in the text become their
   * ids; when false they are plain bytes. Hugging Face: passed as `add_special_tokens` (the
   * post-processor may add BOS or a prefix such as GLM's `[gMASK]<sop>`); special-token strings
   * in the text are always recognised, as in `transformers`.
   */
  addSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens (byte tokenizer: every id >= 256) from the text. Default false. */
  skipSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.applyChatTemplate} and {@link Tokenizer.encodeChat}. */
export interface ChatOptions {
  /** Append the prompt that starts an assistant turn. Default false. */
  addGenerationPrompt?: boolean;
}

/** A tokenizer: text <-> ids, special tokens, and the chat format of one checkpoint. */
export interface Tokenizer {
  readonly kind: 'byte' | 'huggingface';
  /** Ids are in [0, vocabSize). The model's embedding may be larger (padded). */
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  /** The primary end-of-sequence / end-of-turn id generation stops on. */
  readonly eosId: number;
  /** Every id that ends a response (eos, end-of-turn markers); contains eosId. */
  readonly stopIds: number[];
  readonly padId: number;
  encode(text: string, options?: EncodeOptions): number[];
  /** Never throws on a byte sequence that is not valid UTF-8: bad bytes decode to U+FFFD. */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /**
   * Renders messages with the chat template (Hugging Face: tokenizer_config.json `chat_template`
   * through @huggingface/jinja with bos_token/eos_token/add_generation_prompt; byte tokenizer: its
   * built-in format).
   */
  applyChatTemplate(messages: ChatMessage[], options?: ChatOptions): string;
  /** Token ids of a conversation and its assistant mask (see the implementations for how). */
  encodeChat(messages: ChatMessage[], options?: ChatOptions): EncodedChat;
  /** Prompt ids for generation: the conversation rendered with addGenerationPrompt = true. */
  encodePrompt(messages: ChatMessage[]): number[];
  /** Writes the tokenizer files in Hugging Face layout into `dir` (created if missing). */
  save(dir: string): Promise<void>;
}
