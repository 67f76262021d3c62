/**
 * Token-level assistant masks from character spans. @huggingface/tokenizers returns no offsets,
 * so two alignments are provided; both return `undefined` when they cannot align exactly, and
 * neither ever guesses:
 *
 * - {@link maskByBytes} (used first, byte-level BPE tokenizers): each token of the whole-text
 *   encoding is spelled back into bytes (added tokens: their content; others: the byte-level
 *   alphabet) and the concatenation must equal the text's UTF-8 bytes, which gives every token's
 *   byte range. A token is masked when its range overlaps a span (transformers'
 *   `return_assistant_tokens_mask` semantics: any token holding a span character). Fails when a
 *   normalizer changed the text (e.g. NFC on decomposed input) or for non-byte-level models.
 * - {@link maskBySegments} (fallback, any tokenizer): the text is cut at the span boundaries, each
 *   piece encoded alone, and the concatenated ids must equal the whole-text ids; tokens of the
 *   span pieces are masked. Fails when a token would cross a span boundary.
 */
import type { Span } from './chat.js';

const utf8 = new TextEncoder();

/**
 * Byte-range alignment. `tokenBytes(token)` spells one token string as bytes, or returns
 * undefined when it cannot. `ids`/`tokens` are the whole-text encoding (same length).
 */
export function maskByBytes(
  text: string,
  tokens: readonly string[],
  spans: readonly Span[],
  tokenBytes: (token: string) => Uint8Array | undefined,
): Uint8Array | undefined {
  const bytes = utf8.encode(text);
  const byteSpans = spans.map(({ start, end }) => ({
    start: utf8.encode(text.slice(0, start)).length,
    end: utf8.encode(text.slice(0, end)).length,
  }));
  const mask = new Uint8Array(tokens.length);
  let at = 0;
  for (let t = 0; t < tokens.length; t++) {
    const b = tokenBytes(tokens[t]);
    if (b === undefined || at + b.length > bytes.length) return undefined;
    for (let k = 0; k < b.length; k++) if (bytes[at + k] !== b[k]) return undefined;
    const from = at;
    at += b.length;
    if (byteSpans.some((s) => from < s.end && at > s.start)) mask[t] = 1;
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
    for (const id of encode(text.slice(start, end))) ids.push(id), mask.push(inSpan ? 1 : 0);
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
