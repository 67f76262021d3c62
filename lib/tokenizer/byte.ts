/**
 * The built-in byte tokenizer for models trained from scratch: no vocabulary file, no merges.
 *
 * Ids 0..255 are raw UTF-8 bytes (token strings `<0x00>`..`<0xFF>`); then the special tokens in a
 * fixed order: `<|pad|>` 256, `<|bos|>` 257, `<|eos|>` 258, `<|system|>` 259, `<|user|>` 260,
 * `<|assistant|>` 261, `<|end|>` 262, then `extraSpecialTokens` from 263 on.
 *
 * Special tokens in text: plain `encode` treats special-token strings as ordinary bytes (user data
 * can never smuggle in a control token); `encode(text, {addSpecialTokens: true})` turns exact
 * special-token strings into their ids, and the chat methods insert them structurally. BOS is never
 * added implicitly: prepend `bosId` where a document format wants it.
 *
 * Chat format: `<|system|>`content`<|end|>`, `<|user|>`content`<|end|>`,
 * `<|assistant|>`content`<|end|>`, no separators; the generation prompt is `<|assistant|>`.
 * `eosId` is `<|end|>` (262); `stopIds` = [262, 258].
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkString, options, rangeError, typeError } from '../validate.js';
import { checkMessages, readChatOptions } from './chat.js';
import type { ChatMessage, ChatOptions, DecodeOptions, EncodedChat, EncodeOptions, Tokenizer } from './types.js';

/** The built-in special tokens, in id order from 256. */
export const BYTE_SPECIAL_TOKENS = [
  '<|pad|>',
  '<|bos|>',
  '<|eos|>',
  '<|system|>',
  '<|user|>',
  '<|assistant|>',
  '<|end|>',
] as const;

/** `tokenizer_class` written to tokenizer_config.json by {@link ByteTokenizer.save}. */
export const BYTE_TOKENIZER_CLASS = 'RlhfByteTokenizer';

const PAD = 256,
  BOS = 257,
  EOS = 258,
  END = 262;
const ROLE_IDS: Record<string, number> = { system: 259, user: 260, assistant: 261 };
const BYTE_TOKEN = /^<0x([0-9A-F]{2})>$/;
const utf8 = new TextEncoder();

function hex(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/** Validates ids: integers in [0, vocabSize). Returns them as a plain array. */
export function checkIds(fn: string, ids: unknown, vocabSize: number): number[] {
  const isList = Array.isArray(ids) || (ArrayBuffer.isView(ids) && !(ids instanceof DataView));
  if (!isList) throw typeError(fn, 'ids', 'an array of token ids', ids);
  const list = Array.from(ids as ArrayLike<number>, Number);
  list.forEach((id, i) => {
    if (!Number.isInteger(id))
      throw typeError(fn, `ids[${i}]`, `an integer in [0, ${vocabSize})`, (ids as ArrayLike<unknown>)[i]);
    if (id < 0 || id >= vocabSize) throw rangeError(fn, `ids[${i}]`, `an integer in [0, ${vocabSize})`, id);
  });
  return list;
}

/** The tokenizer of models trained from scratch: UTF-8 bytes plus a few special tokens. */
export class ByteTokenizer implements Tokenizer {
  readonly kind = 'byte' as const;
  readonly vocabSize: number;
  readonly bosId = BOS;
  readonly eosId = END;
  readonly stopIds = [END, EOS];
  readonly padId = PAD;
  /** All special tokens in id order (id = 256 + index): the built-ins, then the extras. */
  readonly specialTokens: readonly string[];
  private readonly specialIds: Map<string, number>;
  private readonly specialPattern: RegExp;

  /** `extraSpecialTokens`: distinct non-empty strings, none a built-in or a `<0xNN>` byte token. */
  constructor(options_?: { extraSpecialTokens?: string[] }) {
    const fn = 'ByteTokenizer';
    const o = options(fn, 'options', options_);
    o.known(['extraSpecialTokens']);
    const extra = o.obj.extraSpecialTokens ?? [];
    if (!Array.isArray(extra)) throw typeError(fn, 'options.extraSpecialTokens', 'an array of strings', extra);
    const all: string[] = [...BYTE_SPECIAL_TOKENS];
    extra.forEach((s, i) => {
      const path = `options.extraSpecialTokens[${i}]`;
      checkString(fn, path, s);
      if (all.includes(s) || BYTE_TOKEN.test(s))
        throw rangeError(fn, path, 'a token distinct from the other special tokens and from <0xNN>', s);
      all.push(s);
    });
    this.specialTokens = Object.freeze(all);
    this.vocabSize = 256 + all.length;
    this.specialIds = new Map(all.map((s, i) => [s, 256 + i]));
    const escaped = [...all].sort((a, b) => b.length - a.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    this.specialPattern = new RegExp(escaped.join('|'), 'g');
  }

  /** UTF-8 bytes of `text`; special-token strings become ids only with `addSpecialTokens: true`. */
  encode(text: string, options_?: EncodeOptions): number[] {
    const fn = 'ByteTokenizer.encode';
    checkString(fn, 'text', text, false);
    const o = options(fn, 'options', options_);
    o.known(['addSpecialTokens']);
    if (!o.bool('addSpecialTokens', false)) return Array.from(utf8.encode(text));
    const ids: number[] = [];
    let at = 0;
    for (const m of text.matchAll(this.specialPattern)) {
      for (const b of utf8.encode(text.slice(at, m.index))) ids.push(b);
      ids.push(this.specialIds.get(m[0])!);
      at = m.index + m[0].length;
    }
    for (const b of utf8.encode(text.slice(at))) ids.push(b);
    return ids;
  }

  /** Bytes decode as UTF-8 (invalid sequences become U+FFFD); special ids as their strings. */
  decode(ids: ArrayLike<number>, options_?: DecodeOptions): string {
    const fn = 'ByteTokenizer.decode';
    const list = checkIds(fn, ids, this.vocabSize);
    const o = options(fn, 'options', options_);
    o.known(['skipSpecialTokens']);
    const skip = o.bool('skipSpecialTokens', false);
    const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
    let out = '';
    let run: number[] = [];
    const flush = () => {
      if (run.length) out += decoder.decode(Uint8Array.from(run));
      run = [];
    };
    for (const id of list) {
      if (id < 256) run.push(id);
      else {
        flush();
        if (!skip) out += this.specialTokens[id - 256];
      }
    }
    flush();
    return out;
  }

  /** `<0xNN>` (upper-case hex) for bytes, the token string for special tokens. */
  tokenToId(token: string): number | undefined {
    const byte = BYTE_TOKEN.exec(token);
    if (byte) return parseInt(byte[1], 16);
    return this.specialIds.get(token);
  }

  idToToken(id: number): string | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return undefined;
    return id < 256 ? hex(id) : this.specialTokens[id - 256];
  }

  /** The built-in format as text (roles: system, user, assistant). */
  applyChatTemplate(messages: ChatMessage[], options_?: ChatOptions): string {
    const fn = 'ByteTokenizer.applyChatTemplate';
    const { ids } = this.build(fn, messages, options_);
    return this.decode(ids);
  }

  /**
   * Ids of the built-in format. Message content is always plain bytes (a special-token string in
   * content is not a control token). Mask: 1 on an assistant message's content bytes and its
   * `<|end|>`; 0 on role tokens, other turns and the generation prompt.
   */
  encodeChat(messages: ChatMessage[], options_?: ChatOptions): EncodedChat {
    const { ids, mask } = this.build('ByteTokenizer.encodeChat', messages, options_);
    return { ids, assistantMask: Uint8Array.from(mask) };
  }

  /** The conversation followed by `<|assistant|>`. */
  encodePrompt(messages: ChatMessage[]): number[] {
    return this.build('ByteTokenizer.encodePrompt', messages, { addGenerationPrompt: true }).ids;
  }

  private build(fn: string, messages_: unknown, options_: unknown): { ids: number[]; mask: number[] } {
    const messages = checkMessages(fn, messages_);
    const { addGenerationPrompt } = readChatOptions(fn, options_);
    const ids: number[] = [];
    const mask: number[] = [];
    messages.forEach((m, i) => {
      const role = ROLE_IDS[m.role];
      if (role === undefined)
        throw typeError(fn, `messages[${i}].role`, 'one of "system", "user", "assistant"', m.role);
      const on = m.role === 'assistant' ? 1 : 0;
      (ids.push(role), mask.push(0));
      for (const b of utf8.encode(m.content)) (ids.push(b), mask.push(on));
      (ids.push(END), mask.push(on));
    });
    if (addGenerationPrompt) (ids.push(ROLE_IDS.assistant), mask.push(0));
    return { ids, mask };
  }

  /** Writes tokenizer_config.json with `tokenizer_class: "RlhfByteTokenizer"` and the special tokens. */
  async save(dir: string): Promise<void> {
    checkString('ByteTokenizer.save', 'dir', dir);
    await mkdir(dir, { recursive: true });
    const config = {
      tokenizer_class: BYTE_TOKENIZER_CLASS,
      bos_token: '<|bos|>',
      eos_token: '<|end|>',
      pad_token: '<|pad|>',
      additional_special_tokens: this.specialTokens.slice(BYTE_SPECIAL_TOKENS.length),
      added_tokens_decoder: Object.fromEntries(
        this.specialTokens.map((s, i) => [String(256 + i), { content: s, special: true }]),
      ),
      stop_tokens: this.stopIds.map((id) => this.specialTokens[id - 256]),
    };
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
  }
}
