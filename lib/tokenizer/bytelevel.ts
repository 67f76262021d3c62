/**
 * The GPT-2 byte-level alphabet used by byte-level BPE tokenizers (GPT-2, Llama 3, Qwen2, GLM-4):
 * every byte 0..255 is written as one printable code point so that token strings are valid
 * text. Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, 0x7F–0xA0,
 * 0xAD) are shifted to U+0100 onwards in byte order. `BYTE_TO_CHAR[b]` is byte `b`'s character and
 * `CHAR_TO_BYTE` the inverse.
 */

function printable(b: number): boolean {
  return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

/** Byte value -> its one-character stand-in. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const out: string[] = new Array(256);
  let shifted = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(printable(b) ? b : 256 + shifted++);
  return out;
})();

/** One-character stand-in -> byte value. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** The byte-level spelling of a string's UTF-8 bytes (what a byte-level BPE vocabulary stores). */
export function toByteLevel(text: string): string {
  let out = '';
  for (const b of new TextEncoder().encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}
