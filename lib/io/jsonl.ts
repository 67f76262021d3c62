/**
 * JSON Lines: one JSON value per line (https://jsonlines.org). Reading streams the file line by line
 * and reports every problem as `file:line: ...` so that a bad record in a million-line file can be
 * found at once:
 *
 *   data/train.jsonl:12: invalid JSON: Unexpected token } in JSON at position 17
 *
 * Line numbers are 1-based and count every line of the file, blank ones included (blank or
 * whitespace-only lines are skipped, not returned). Lines end at `\n`, `\r\n` or a lone `\r` (as
 * node:readline splits them). A UTF-8 byte-order mark at the start is ignored. The file must be
 * UTF-8: a line with an invalid byte sequence is an error (nothing is decoded to U+FFFD).
 *
 * Errors: an unreadable file (missing, a directory, no permission) is `RlhfError(ErrorCode.IO)`
 * naming the path; a line that is not UTF-8 or not JSON is `RlhfError(ErrorCode.FORMAT)` naming
 * file and line.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { ErrorCode, RlhfError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import { checkString, typeError } from '../validate.js';

/** One parsed line: the JSON value and its 1-based line number in the file. */
export interface JsonlLine {
  value: unknown;
  line: number;
}

/**
 * Streams the JSON values of a JSONL file in order (a read stream split into lines here, so memory
 * stays bounded by the longest line). Blank lines are skipped.
 *
 * @throws RlhfError `ERR_RLHF_IO` (`cannot read <path>: <system message>`) when the file cannot be read;
 *   `ERR_RLHF_FORMAT` (`<path>:<line>: invalid UTF-8 ...` or `<path>:<line>: invalid JSON: <parser
 *   message>`) for a malformed line.
 */
export function readJsonl(path: string): AsyncGenerator<JsonlLine> {
  checkString('readJsonl', 'path', path); // synchronously, not at the first next()
  return lines(path);
}

const LF = 0x0a;
const CR = 0x0d;

/** The byte lines of a stream of chunks: split at LF, CRLF or a lone CR; terminators dropped. */
async function* byteLines(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let skipLF = false; // the previous chunk ended with CR: a LF opening this one belongs to it
  for await (const chunk of chunks) {
    let start = 0;
    if (skipLF && chunk.length > 0) {
      if (chunk[0] === LF) start = 1;
      skipLF = false;
    }
    let nextLF = chunk.indexOf(LF, start),
      nextCR = chunk.indexOf(CR, start);
    while (nextLF >= 0 || nextCR >= 0) {
      const end = nextCR < 0 || (nextLF >= 0 && nextLF < nextCR) ? nextLF : nextCR;
      parts.push(chunk.subarray(start, end));
      yield parts.length === 1 ? parts[0] : Buffer.concat(parts);
      parts = [];
      start = end + 1;
      if (chunk[end] === CR) {
        if (start < chunk.length) {
          if (chunk[start] === LF) start++;
        } else skipLF = true;
      }
      if (nextLF >= 0 && nextLF < start) nextLF = chunk.indexOf(LF, start);
      if (nextCR >= 0 && nextCR < start) nextCR = chunk.indexOf(CR, start);
    }
    if (start < chunk.length) parts.push(chunk.subarray(start));
  }
  if (parts.length > 0) yield Buffer.concat(parts);
}

/**
 * The offset of the first byte where `bytes` stops being UTF-8 (WHATWG's decoder: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or -1 when all of it is valid.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number,
      lo = 0x80,
      hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) ((need = 2), b === 0xe0 ? (lo = 0xa0) : b === 0xed ? (hi = 0x9f) : 0);
    else if (b >= 0xf0 && b <= 0xf4) ((need = 3), b === 0xf0 ? (lo = 0x90) : b === 0xf4 ? (hi = 0x8f) : 0);
    else return i;
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return -1;
}

async function* lines(path: string): AsyncGenerator<JsonlLine> {
  const ioError = (err: unknown) =>
    new RlhfError(ErrorCode.IO, `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  let fh: FileHandle;
  try {
    fh = await open(path, 'r'); // opened first, so a missing file fails here and not in the stream
  } catch (err) {
    throw ioError(err);
  }
  const input = fh.createReadStream(); // Buffers; closes fh when it ends or is destroyed
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let line = 0;
  try {
    for await (const bytes of byteLines(input)) {
      line++;
      let raw: string;
      try {
        raw = decoder.decode(bytes);
      } catch (err) {
        const at = firstInvalidUtf8(bytes);
        const where = at >= 0 ? ` at byte ${at} of the line (0x${bytes[at].toString(16).padStart(2, '0')})` : '';
        throw new RlhfError(ErrorCode.FORMAT, `${path}:${line}: invalid UTF-8${where}; the file must be UTF-8 text`, {
          cause: err,
        });
      }
      const text = line === 1 && raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
      if (text.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        throw new RlhfError(ErrorCode.FORMAT, `${path}:${line}: invalid JSON: ${why}`, { cause: err });
      }
      yield { value, line };
    }
  } catch (err) {
    throw err instanceof RlhfError ? err : ioError(err);
  } finally {
    input.destroy();
  }
}

/** Reads a whole JSONL file into memory; same errors as {@link readJsonl}. */
export async function readJsonlFile(path: string): Promise<JsonlLine[]> {
  const out: JsonlLine[] = [];
  for await (const entry of readJsonl(path)) out.push(entry);
  return out;
}

/**
 * Writes `records` as JSONL: one compact `JSON.stringify` per line, each followed by `\n` (an empty
 * array gives an empty file). The write is atomic (lib/io/atomic.ts writeFileAtomic): readers see the old
 * file or the complete new one.
 *
 * @throws TypeError when a record has no JSON form (undefined, a function, a symbol) or cannot be
 *   serialised (a cycle, a bigint), naming its index; RlhfError `ERR_RLHF_IO` when the write fails.
 */
export function writeJsonl(path: string, records: unknown[]): Promise<void> {
  const fn = 'writeJsonl';
  checkString(fn, 'path', path);
  if (!Array.isArray(records)) throw typeError(fn, 'records', 'an array', records);
  const chunks = records.map((r, i) => {
    let text: string | undefined;
    try {
      text = JSON.stringify(r);
    } catch (err) {
      throw new TypeError(
        `${fn}: cannot serialise records[${i}]: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    if (text === undefined) throw typeError(fn, `records[${i}]`, 'a JSON value', r);
    return Buffer.from(text + '\n', 'utf8');
  });
  return writeFileAtomic(path, chunks);
}
