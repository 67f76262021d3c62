/**
 * Hugging Face tokenizers (tokenizer.json + tokenizer_config.json) on @huggingface/tokenizers,
 * with chat templates rendered by @huggingface/jinja.
 *
 * Special tokens come from tokenizer_config.json (`bos_token`, `eos_token`, `pad_token`: strings
 * or `{content}` objects). `eosId` is eos_token's id; `stopIds` are eosId, generation_config.json's
 * `eos_token_id`s when given, and the end-of-turn tokens of {@link END_OF_TURN_TOKENS} that the
 * vocabulary has. `padId` is pad_token's id, else eosId.
 *
 * Assistant masks: the spans come from the template's `{% generation %}` blocks when it has them,
 * else from one rendering of the whole conversation compared with renderings that replace one
 * assistant message's content ({@link renderWithSpans}: no assumption that prefixes render
 * consistently). The rendered text is encoded once, without added special tokens (as
 * `apply_chat_template` does), and aligned to the spans by bytes (byte-level and
 * SentencePiece-style BPE), falling back to per-segment encoding (see mask.ts). Nothing is added
 * to what the template renders. When neither alignment is exact, encodeChat throws an RlhfError
 * UNSUPPORTED rather than guess.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer as CoreTokenizer } from '@huggingface/tokenizers';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkObject, checkString, options, rangeError, show } from '../validate.js';
import { checkIds } from './byte.js';
import { ChatTemplate, checkMessages, readChatOptions, renderWithSpans } from './chat.js';
import { maskByBytes, maskBySegments, type AddedTokenInfo, type TokenSpeller } from './mask.js';
import type { ChatMessage, ChatOptions, DecodeOptions, EncodedChat, EncodeOptions, Tokenizer } from './types.js';

/** Tokens that end a turn in common chat formats; those in the vocabulary join `stopIds`. */
export const END_OF_TURN_TOKENS = [
  '<|im_end|>',
  '<|endoftext|>',
  '<|eot_id|>',
  '<|eom_id|>',
  '<|end_of_text|>',
  '<end_of_turn>',
  '<|end|>',
  '<|user|>',
  '<|observation|>',
];

/** The parsed files of a Hugging Face tokenizer. */
export interface HfTokenizerFiles {
  /** tokenizer.json */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json (`{}` when the checkpoint has none) */
  config: Record<string, unknown>;
  /** generation_config.json, when present: its `eos_token_id` (number or list) adds stop ids */
  generationConfig?: Record<string, unknown>;
  /** The template of chat_template.jinja, used when tokenizer_config.json has no `chat_template` */
  chatTemplate?: string;
}

/** The file names used in error messages (paths when loaded from a directory). */
export interface HfTokenizerSources {
  tokenizer?: string;
  config?: string;
}

const utf8 = new TextEncoder();

/** A Hugging Face tokenizer. Construct with {@link loadTokenizer} or from parsed files. */
export class HfTokenizer implements Tokenizer {
  readonly kind = 'huggingface' as const;
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number;
  readonly stopIds: number[];
  readonly padId: number;
  /** The chat template source, if the checkpoint has one. */
  readonly chatTemplate: string | undefined;
  private readonly core: CoreTokenizer;
  private readonly template: ChatTemplate | undefined;
  private readonly speller: TokenSpeller;
  private readonly files: HfTokenizerFiles;

  /** Throws RlhfError FORMAT naming the file for anything the files do not support. */
  constructor(files: HfTokenizerFiles, sources: HfTokenizerSources = {}) {
    const jsonName = sources.tokenizer ?? 'tokenizer.json';
    const configName = sources.config ?? 'tokenizer_config.json';
    const bad = (file: string, what: string, cause?: unknown) =>
      new RlhfError(ErrorCode.FORMAT, `HfTokenizer: ${file}: ${what}`, cause === undefined ? undefined : { cause });
    checkObject('HfTokenizer', 'files', files);
    checkObject('HfTokenizer', 'files.tokenizer', files.tokenizer);
    checkObject('HfTokenizer', 'files.config', files.config);
    this.files = files;
    const json = files.tokenizer;
    const added = json.added_tokens ?? [];
    if (!Array.isArray(added)) throw bad(jsonName, `expected added_tokens to be an array, received ${show(added)}`);
    try {
      this.core = new CoreTokenizer({ ...json, added_tokens: added }, files.config);
    } catch (err) {
      throw bad(
        jsonName,
        `not a tokenizer @huggingface/tokenizers can load (${err instanceof Error ? err.message : String(err)})`,
        err,
      );
    }
    const addedInfo = new Map<string, AddedTokenInfo>();
    for (const t of added as { content?: unknown; lstrip?: unknown; rstrip?: unknown }[])
      if (typeof t?.content === 'string')
        addedInfo.set(t.content, {
          content: utf8.encode(t.content),
          lstrip: t.lstrip === true,
          rstrip: t.rstrip === true,
        });
    this.speller = { kind: spellingOf(json.decoder), added: addedInfo };
    let max = -1;
    for (const id of this.core.get_vocab(true).values()) max = Math.max(max, id);
    this.vocabSize = max + 1;

    const tokenOf = (key: string): string | undefined => {
      const v = files.config[key];
      if (v === undefined || v === null) return undefined;
      if (typeof v === 'string') return v;
      const content = (v as { content?: unknown }).content;
      if (typeof v === 'object' && typeof content === 'string') return content;
      throw bad(configName, `expected ${key} to be a string or an object with a string content, received ${show(v)}`);
    };
    const idOf = (key: string): number | undefined => {
      const token = tokenOf(key);
      if (token === undefined) return undefined;
      const id = this.core.token_to_id(token);
      if (id === undefined)
        throw bad(configName, `${key} ${JSON.stringify(token)} is not in the vocabulary of ${jsonName}`);
      return id;
    };
    this.bosId = idOf('bos_token');
    const genEos = [files.generationConfig?.eos_token_id]
      .flat()
      .filter((id): id is number => Number.isInteger(id) && (id as number) >= 0 && (id as number) < this.vocabSize);
    const known = END_OF_TURN_TOKENS.map((t) => this.core.token_to_id(t)).filter(
      (id): id is number => id !== undefined,
    );
    const eos = idOf('eos_token') ?? genEos[0] ?? known[0];
    if (eos === undefined)
      throw bad(configName, `no eos_token, and none of ${END_OF_TURN_TOKENS.join(' ')} is in the vocabulary`);
    this.eosId = eos;
    this.stopIds = [...new Set([eos, ...genEos, ...known])];
    this.padId = idOf('pad_token') ?? eos;

    let source = files.config.chat_template ?? files.chatTemplate;
    if (Array.isArray(source)) source = (source.find((t) => t?.name === 'default') ?? source[0])?.template;
    if (source !== undefined && typeof source !== 'string')
      throw bad(configName, `expected chat_template to be a string, received ${show(source)}`);
    this.chatTemplate = source;
    if (source !== undefined) {
      const variables: Record<string, string> = {};
      for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
        const token = tokenOf(key);
        if (token !== undefined) variables[key] = token;
      }
      try {
        this.template = new ChatTemplate(source, variables);
      } catch (err) {
        throw bad(
          configName,
          `chat_template does not parse (${err instanceof Error ? err.message : String(err)})`,
          err,
        );
      }
    }
  }

  /** `addSpecialTokens` (default false) lets the post-processor add BOS/prefix tokens. */
  encode(text: string, options_?: EncodeOptions): number[] {
    const fn = 'HfTokenizer.encode';
    checkString(fn, 'text', text, false);
    const o = options(fn, 'options', options_);
    o.known(['addSpecialTokens']);
    return this.encodeRaw(fn, text, o.bool('addSpecialTokens', false)).ids;
  }

  /** Special tokens decode as their strings unless skipped; invalid UTF-8 becomes U+FFFD. */
  decode(ids: ArrayLike<number>, options_?: DecodeOptions): string {
    const fn = 'HfTokenizer.decode';
    const list = checkIds(fn, ids, this.vocabSize);
    const o = options(fn, 'options', options_);
    o.known(['skipSpecialTokens']);
    const skip = o.bool('skipSpecialTokens', false);
    list.forEach((id, i) => {
      if (this.core.id_to_token(id) === undefined) throw rangeError(fn, `ids[${i}]`, 'an id in the vocabulary', id);
    });
    if (list.length === 0) return '';
    return this.core.decode(list, { skip_special_tokens: skip });
  }

  tokenToId(token: string): number | undefined {
    return typeof token === 'string' ? this.core.token_to_id(token) : undefined;
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize ? this.core.id_to_token(id) : undefined;
  }

  /** Renders with the checkpoint's chat_template (RlhfError UNSUPPORTED when it has none). */
  applyChatTemplate(messages: ChatMessage[], options_?: ChatOptions): string {
    const fn = 'HfTokenizer.applyChatTemplate';
    const checked = checkMessages(fn, messages);
    const { addGenerationPrompt } = readChatOptions(fn, options_);
    return this.render(fn, checked, addGenerationPrompt);
  }

  /**
   * Ids of the rendered conversation (encoded without added special tokens: exactly the tokens of
   * the rendered text) and the assistant mask: 1 on the tokens of each assistant message as the
   * template renders it (from the end of the generation prompt through its end-of-turn marker, or
   * the template's `{% generation %}` blocks), 0 elsewhere.
   */
  encodeChat(messages: ChatMessage[], options_?: ChatOptions): EncodedChat {
    const fn = 'HfTokenizer.encodeChat';
    const checked = checkMessages(fn, messages);
    const { addGenerationPrompt } = readChatOptions(fn, options_);
    if (this.template === undefined)
      throw new RlhfError(ErrorCode.UNSUPPORTED, `${fn}: this tokenizer has no chat_template`);
    const markers = this.stopIds.map((id) => this.core.id_to_token(id)).filter((t): t is string => t !== undefined);
    const { text, spans } =
      this.template.generationSpans(fn, checked, addGenerationPrompt) ??
      renderWithSpans(fn, checked, addGenerationPrompt, (m, g) => this.render(fn, m, g), markers);
    const whole = this.encodeRaw(fn, text, false);
    const mask =
      maskByBytes(text, whole.tokens, spans, this.speller) ??
      maskBySegments(text, whole.ids, spans, (piece) => this.encodeRaw(fn, piece, false).ids);
    if (mask === undefined)
      throw new RlhfError(
        ErrorCode.UNSUPPORTED,
        `${fn}: the chat template cannot be masked: its assistant turns do not start and end on token boundaries`,
      );
    return { ids: whole.ids, assistantMask: mask };
  }

  /** The conversation rendered with the generation prompt, encoded without added special tokens. */
  encodePrompt(messages: ChatMessage[]): number[] {
    const fn = 'HfTokenizer.encodePrompt';
    return this.encodeRaw(fn, this.render(fn, checkMessages(fn, messages), true), false).ids;
  }

  /** Writes tokenizer.json and tokenizer_config.json (with the chat template inlined). */
  async save(dir: string): Promise<void> {
    checkString('HfTokenizer.save', 'dir', dir);
    await mkdir(dir, { recursive: true });
    const config = { ...this.files.config };
    if (this.chatTemplate !== undefined) config.chat_template = this.chatTemplate;
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(this.files.tokenizer) + '\n');
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
  }

  private render(fn: string, messages: ChatMessage[], addGenerationPrompt: boolean): string {
    if (this.template === undefined)
      throw new RlhfError(ErrorCode.UNSUPPORTED, `${fn}: this tokenizer has no chat_template`);
    return this.template.render(fn, messages, addGenerationPrompt);
  }

  private encodeRaw(fn: string, text: string, addSpecialTokens: boolean): { ids: number[]; tokens: string[] } {
    const { ids, tokens } = this.core.encode(text, { add_special_tokens: addSpecialTokens });
    if (ids.some((id: number | undefined) => id === undefined))
      throw new RlhfError(
        ErrorCode.UNSUPPORTED,
        `${fn}: the text has characters the vocabulary cannot encode and the tokenizer has no unk_token`,
      );
    return { ids, tokens };
  }
}

/** How the tokens of a tokenizer.json spell text, judged from its decoder. */
function spellingOf(decoder: unknown): TokenSpeller['kind'] {
  const types: string[] = [];
  const walk = (d: unknown) => {
    if (d === null || typeof d !== 'object') return;
    const o = d as { type?: unknown; decoders?: unknown; pattern?: { String?: unknown }; content?: unknown };
    if (o.type === 'Sequence' && Array.isArray(o.decoders)) o.decoders.forEach(walk);
    else if (o.type === 'Replace')
      types.push(o.pattern?.String === '\u2581' && o.content === ' ' ? 'Metaspace' : 'Replace');
    else if (typeof o.type === 'string') types.push(o.type);
  };
  walk(decoder);
  if (types.includes('ByteLevel')) return 'bytelevel';
  if (types.includes('Metaspace')) return 'metaspace';
  return 'none';
}
