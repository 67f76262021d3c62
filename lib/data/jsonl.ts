/**
 * JSON Lines: one JSON value per line (https://jsonlines.org). Reading streams the file line by line
 * and reports every problem as `file:line: ...` so that a bad record in a million-line file can be
 * found at once:
 *
 *   data/train.jsonl:12: invalid JSON: Unexpected token } in JSON at position 17
 *
 * Line numbers are 1-based and count every line of the file, blank ones included (blank or
 * whitespace-only lines are skipped, not returned). A UTF-8 byte-order mark at the start is ignored;
 * `\r\n` line ends are accepted.
 *
 * Errors: an unreadable file (missing, a directory, no permission) is `RlhfError(ErrorCode.IO)`
 * naming the path; a line that is not JSON is `RlhfError(ErrorCode.FORMAT)` naming file and line.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { ErrorCode, RlhfError } from '../errors.js';
import { writeFileAtomic } from '../engine/atomic.js';
import { checkString, typeError } from '../validate.js';

/** One parsed line: the JSON value and its 1-based line number in the file. */
export interface JsonlLine {
  value: unknown;
  line: number;
}

/**
 * Streams the JSON values of a JSONL file in order (readline over a read stream, so memory stays
 * bounded by the longest line). Blank lines are skipped.
 *
 * @throws RlhfError `ERR_RLHF_IO` (`cannot read <path>: <system message>`) when the file cannot be read;
 *   `ERR_RLHF_FORMAT` (`<path>:<line>: invalid JSON: <parser message>`) for a malformed line.
 */
export function readJsonl(path: string): AsyncGenerator<JsonlLine> {
  checkString('readJsonl', 'path', path); // synchronously, not at the first next()
  return lines(path);
}

async function* lines(path: string): AsyncGenerator<JsonlLine> {
  const ioError = (err: unknown) =>
    new RlhfError(ErrorCode.IO, `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  let fh: FileHandle;
  try {
    fh = await open(path, 'r'); // opened first, so a missing file fails here and not inside readline
  } catch (err) {
    throw ioError(err);
  }
  const input = fh.createReadStream({ encoding: 'utf8' }); // closes fh when it ends or is destroyed
  const reader = createInterface({ input, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const raw of reader) {
      line++;
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
    reader.close();
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
 * array gives an empty file). The write is atomic ({@link writeFileAtomic}): readers see the old
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
      throw new TypeError(`${fn}: cannot serialise records[${i}]: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (text === undefined) throw typeError(fn, `records[${i}]`, 'a JSON value', r);
    return Buffer.from(text + '\n', 'utf8');
  });
  return writeFileAtomic(path, chunks);
}
