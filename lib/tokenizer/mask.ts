/**
 * Token-level assistant masks from character spans. @huggingface/tokenizers returns no offsets,
 * so two alignments are provided; both return `undefined` when they cannot align exactly, and
 * neither ever guesses:
 *
 * - {@link maskByBytes} (used first): every token of the whole-text encoding is spelled back into
 *   bytes ({@link TokenSpeller}: added tokens are their content; byte-level BPE tokens go through
 *   the GPT-2 byte alphabet; SentencePiece-style tokens have `▁` for a space and `<0xNN>` for a
 *   fallback byte) and matched against the text's UTF-8 bytes one section at a time (a section is
 *   the text between two added tokens, which the tokenizer encodes on its own). A section's
 *   spelling must equal its bytes, or equal them after one leading space (the `▁` a `Prepend`
 *   normalizer or `Metaspace` pre-tokenizer inserts, given a zero-width place at the section's
 *   start). Whitespace an added token's `lstrip`/`rstrip` removes belongs to no token. This gives
 *   every token's byte range; a token is masked when its range overlaps a span (transformers'
 *   `return_assistant_tokens_mask` semantics: any token holding a span character), a zero-width
 *   one when its place is inside a span. Fails when a normalizer changed the text otherwise
 *   (e.g. NFC on decomposed input) or for tokenizers it cannot spell (WordPiece, Unigram).
 * - {@link maskBySegments} (fallback, any tokenizer): the text is cut at the span boundaries, each
 *   piece encoded alone, and the concatenated ids must equal the whole-text ids; tokens of the
 *   span pieces are masked. Fails when a token would cross a span boundary.
 */
import { CHAR_TO_BYTE } from './bytelevel.js';
import type { Span } from './chat.js';

const utf8 = new TextEncoder();

/** An added token as tokenizer.json describes it. */
export interface AddedTokenInfo {
  content: Uint8Array;
  /** whitespace before it is dropped from the encoding */
  lstrip: boolean;
  /** whitespace after it is dropped from the encoding */
  rstrip: boolean;
}

/** How a tokenizer's token strings spell text. */
export interface TokenSpeller {
  /** 'bytelevel': GPT-2 byte alphabet; 'metaspace': `▁` = space, `<0xNN>` = byte; 'none': cannot spell */
  kind: 'bytelevel' | 'metaspace' | 'none';
  added: ReadonlyMap<string, AddedTokenInfo>;
}

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

/** The bytes a (non-added) token stands for, or undefined. */
export function spellToken(kind: TokenSpeller['kind'], token: string): Uint8Array | undefined {
  if (kind === 'bytelevel') {
    const out = new Uint8Array(token.length);
    for (let i = 0; i < token.length; i++) {
      const b = CHAR_TO_BYTE.get(token[i]);
      if (b === undefined) return undefined;
      out[i] = b;
    }
    return out;
  }
  if (kind === 'metaspace') {
    const byte = BYTE_TOKEN.exec(token);
    if (byte) return Uint8Array.of(parseInt(byte[1], 16));
    return utf8.encode(token.replaceAll('\u2581', ' '));
  }
  return undefined;
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0b || b === 0x0c;
}

function equalAt(hay: Uint8Array, at: number, needle: Uint8Array, from = 0): boolean {
  if (at + needle.length - from > hay.length) return false;
  for (let k = from; k < needle.length; k++) if (hay[at + k - from] !== needle[k]) return false;
  return true;
}

function indexOfBytes(hay: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i + needle.length <= hay.length; i++) {
    for (let k = 0; k < needle.length; k++) if (hay[i + k] !== needle[k]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Byte-range alignment of `tokens` (the whole-text encoding, no special tokens added) to `text`.
 */
export function maskByBytes(
  text: string,
  tokens: readonly string[],
  spans: readonly Span[],
  speller: TokenSpeller,
): Uint8Array | undefined {
  if (speller.kind === 'none') return undefined;
  const bytes = utf8.encode(text);
  const byteSpans = spans.map(({ start, end }) => ({
    start: utf8.encode(text.slice(0, start)).length,
    end: utf8.encode(text.slice(0, end)).length,
  }));
  const mask = new Uint8Array(tokens.length);
  const mark = (t: number, from: number, to: number) => {
    const hit =
      to > from
        ? byteSpans.some((s) => from < s.end && to > s.start)
        : byteSpans.some((s) => from >= s.start && from < s.end);
    if (hit) mask[t] = 1;
  };
  let at = 0;
  let t = 0;
  while (t < tokens.length) {
    const added = speller.added.get(tokens[t]);
    if (added !== undefined) {
      let pos = at;
      if (added.lstrip) while (pos < bytes.length && isSpace(bytes[pos]) && !equalAt(bytes, pos, added.content)) pos++;
      if (!equalAt(bytes, pos, added.content)) return undefined;
      mark(t, pos, pos + added.content.length);
      at = pos + added.content.length;
      if (added.rstrip) while (at < bytes.length && isSpace(bytes[at])) at++;
      t++;
      continue;
    }
    // a section: tokens up to the next added token, text up to where that token's content is
    let u = t;
    const spelled: Uint8Array[] = [];
    while (u < tokens.length && !speller.added.has(tokens[u])) {
      const b = spellToken(speller.kind, tokens[u]);
      if (b === undefined) return undefined;
      spelled.push(b);
      u++;
    }
    let sectionEnd = bytes.length;
    if (u < tokens.length) {
      const next = speller.added.get(tokens[u])!;
      sectionEnd = indexOfBytes(bytes, next.content, at);
      if (sectionEnd < 0) return undefined;
      if (next.lstrip) while (sectionEnd > at && isSpace(bytes[sectionEnd - 1])) sectionEnd--;
    }
    const length = spelled.reduce((n, b) => n + b.length, 0);
    const size = sectionEnd - at;
    let inserted = 0;
    if (length === size + 1 && spelled[0].length > 0 && spelled[0][0] === 0x20) inserted = 1;
    else if (length !== size) return undefined;
    let pos = at;
    for (let k = 0; k < spelled.length; k++) {
      const skip = k === 0 ? inserted : 0;
      if (!equalAt(bytes, pos, spelled[k], skip)) return undefined;
      const to = pos + spelled[k].length - skip;
      mark(t + k, pos, to);
      pos = to;
    }
    at = sectionEnd;
    t = u;
  }
  return at === bytes.length ? mask : undefined;
}

/**
 * Segment alignment. `encode` encodes one piece of text without adding special tokens;
 * `wholeIds` is the encoding of the whole text.
 */
export function maskBySegments(
  text: string,
  wholeIds: readonly number[],
  spans: readonly Span[],
  encode: (piece: string) => number[],
): Uint8Array | undefined {
  const ids: number[] = [];
  const mask: number[] = [];
  const piece = (start: number, end: number, inSpan: boolean) => {
    if (end <= start) return;
    for (const id of encode(text.slice(start, end))) (ids.push(id), mask.push(inSpan ? 1 : 0));
  };
  let at = 0;
  for (const s of spans) {
    piece(at, s.start, false);
    piece(s.start, s.end, true);
    at = s.end;
  }
  piece(at, text.length, false);
  if (ids.length !== wholeIds.length || ids.some((id, i) => id !== wholeIds[i])) return undefined;
  return Uint8Array.from(mask);
}
