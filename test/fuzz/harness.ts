/**
 * A seeded mutation fuzzer for the two readers of untrusted files: safetensors
 * (lib/io/safetensors.ts) and the JSONL record loaders (lib/io/jsonl.ts, formats.ts).
 *
 * Each trial takes a seed file from test/fuzz/corpus/, applies 1-4 mutations (byte flips, inserted
 * or deleted ranges, splices with another seed, invalid UTF-8, line breaks, header-aware edits of
 * safetensors numbers, role typos and lone-surrogate escapes in JSONL), writes the result to a
 * temporary file and runs the reader on it. Every outcome is compared with an independent
 * reference written here:
 *
 *   clean error       the reader refused with a documented error (RlhfError FORMAT/IO/UNSUPPORTED
 *                     whose message starts with the path) and the reference also finds it invalid
 *   accepted          both accept; the values read must match the reference's
 *   crash             any other exception (TypeError, RangeError, a plain Error, a message without
 *                     the path), or a value that differs from the reference's
 *   hang              one input took longer than `perInputMs`
 *   wrong line        a JSONL error names another line than the reference's first bad line
 *   silent acceptance the reader accepted an input the reference finds invalid
 *   false rejection   the reader refused an input the reference finds valid
 *
 * Everything is a function of the seed: a failure reproduces with the same seed and trial number.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { readSafetensorsHeader, readTensorF32 } from '../../lib/io/safetensors.js';
import { ErrorCode, RlhfError } from '../../lib/errors.js';
import {
  loadPreferenceFile,
  loadPromptFile,
  loadScoredFile,
  loadSftFile,
  parsePreferenceRecord,
  parsePromptRecord,
  parseScoredRecord,
  parseSftRecord,
} from '../../lib/data/formats.js';

export interface FuzzOptions {
  seed: number;
  /** stop after this many trials (default: unbounded, until `seconds`) */
  iterations?: number;
  /** stop after this much time (default 60) */
  seconds?: number;
  /** a single input taking longer than this is a hang (default 2000) */
  perInputMs?: number;
  corpusDir: string;
  /** where failing inputs are saved (default: not saved) */
  saveDir?: string;
  /** progress lines */
  log?: (line: string) => void;
}

export interface FuzzFinding {
  kind: 'crash' | 'hang' | 'wrong line' | 'silent acceptance' | 'false rejection';
  target: string;
  trial: number;
  detail: string;
  saved?: string;
}

export interface FuzzStats {
  trials: number;
  cleanErrors: number;
  accepted: number;
  crashes: number;
  hangs: number;
  wrongLines: number;
  silentAcceptances: number;
  falseRejections: number;
  byTarget: Record<string, { trials: number; cleanErrors: number; accepted: number }>;
  findings: FuzzFinding[];
  seconds: number;
}

// ---- a seeded generator (mulberry32) ----

export class Rand {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

// ---- mutations ----

const INTERESTING = [
  0x00, 0x01, 0x7f, 0x80, 0xbf, 0xc0, 0xc3, 0xed, 0xef, 0xf4, 0xf5, 0xff, 0x22, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a,
  0x0a, 0x0d, 0x5c, 0x20, 0x30, 0x2d,
];
const BAD_UTF8 = [
  [0xc3],
  [0x80],
  [0xc0, 0x80],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xe2, 0x82],
  [0xff],
  [0xef, 0xbf],
];

type Mutator = (b: Uint8Array, r: Rand, other: Uint8Array) => Uint8Array;

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), (o += p.length));
  return out;
};
const insertAt = (b: Uint8Array, at: number, bytes: Uint8Array) => concat(b.subarray(0, at), bytes, b.subarray(at));

const byteMutators: Mutator[] = [
  (b, r) => {
    if (!b.length) return b;
    const c = b.slice();
    c[r.int(c.length)] ^= 1 << r.int(8);
    return c;
  },
  (b, r) => {
    if (!b.length) return b;
    const c = b.slice();
    c[r.int(c.length)] = r.pick(INTERESTING);
    return c;
  },
  (b, r) =>
    insertAt(
      b,
      r.int(b.length + 1),
      Uint8Array.from({ length: 1 + r.int(4) }, () => (r.next() < 0.5 ? r.pick(INTERESTING) : r.int(256))),
    ),
  (b, r) => {
    if (!b.length) return b;
    const at = r.int(b.length),
      n = 1 + r.int(Math.min(16, b.length - at));
    return concat(b.subarray(0, at), b.subarray(at + n));
  },
  (b, r) => {
    if (!b.length) return b;
    const at = r.int(b.length),
      n = 1 + r.int(Math.min(32, b.length - at));
    return insertAt(b, r.int(b.length + 1), b.slice(at, at + n));
  },
  (b, r) => b.subarray(0, r.int(b.length + 1)),
  (b, r, other) => {
    const cut = r.int(b.length + 1),
      from = r.int(other.length + 1);
    return concat(b.subarray(0, cut), other.subarray(from));
  },
  (b, r) => insertAt(b, r.int(b.length + 1), Uint8Array.from(r.pick(BAD_UTF8))),
];

const text = (s: string) => new TextEncoder().encode(s);

const jsonlMutators: Mutator[] = [
  ...byteMutators,
  (b, r) => insertAt(b, r.int(b.length + 1), text(r.pick(['\n', '\r', '\r\n', '\n\n', ' \n', '\t\r\n']))),
  (b, r) =>
    replaceText(b, r, /"(assistant|user|system)"/g, () =>
      JSON.stringify(r.pick(['assitant', 'Assistant', 'usr', 'bot', '', 'model', 'human'])),
    ),
  (b, r) =>
    replaceText(
      b,
      r,
      /"[^"\\]{1,12}"/g,
      (m) => `"${m.slice(1, -1)}${r.pick(['\\ud800', '\\udfff', '\\ud83d', '\\u0000', '\\n', 'é'])}"`,
    ),
  (b, r) =>
    replaceText(b, r, /"(prompt|completion|chosen|rejected|messages|role|content|responses|scores|margin)"/g, () =>
      JSON.stringify(r.pick(['promt', 'Prompt', 'chosen ', 'rol', 'contents', '__proto__'])),
    ),
  (b, r) =>
    replaceText(b, r, /-?\d+(\.\d+)?(e-?\d+)?/g, () =>
      r.pick(['1e400', '-1e400', 'NaN', '0', '-0', '1e-400', '"1"', 'null', '[]']),
    ),
  (b, r) =>
    replaceText(b, r, /"[^"\\]*"/g, () =>
      r.pick(['null', '1', '[]', '{}', 'true', '""', '[{"role":"user","content":"x"}]']),
    ),
];

/** Replaces one random match of `re` in the (latin1 view of the) bytes. */
function replaceText(b: Uint8Array, r: Rand, re: RegExp, by: (m: string) => string): Uint8Array {
  const s = Buffer.from(b).toString('latin1');
  const matches = [...s.matchAll(re)];
  if (!matches.length) return b;
  const m = r.pick(matches);
  const rep = Buffer.from(by(m[0]), 'utf8').toString('latin1');
  return Uint8Array.from(Buffer.from(s.slice(0, m.index) + rep + s.slice(m.index! + m[0].length), 'latin1'));
}

/** Header-aware safetensors edits: parse the header, change one value, re-encode (length field updated). */
const safetensorsMutators: Mutator[] = [
  ...byteMutators,
  (b, r) =>
    editHeader(b, r, (h, keys) => {
      const e = h[r.pick(keys)] as Record<string, unknown>;
      if (e && typeof e === 'object' && Array.isArray(e.data_offsets))
        (e.data_offsets as number[])[r.int(2)] += r.pick([-1, 1, 4, -4, 2 ** 53, 1e300, -1e9, 0.5]);
    }),
  (b, r) =>
    editHeader(b, r, (h, keys) => {
      const e = h[r.pick(keys)] as Record<string, unknown>;
      if (e && typeof e === 'object')
        e.dtype = r.pick(['F32', 'F16', 'BF16', 'F64', 'I64', 'U8', 'BOOL', 'F8_E4M3', 'f32', 'Q4', '', 7, null]);
    }),
  (b, r) =>
    editHeader(b, r, (h, keys) => {
      const e = h[r.pick(keys)] as Record<string, unknown>;
      if (e && typeof e === 'object')
        e.shape = r.pick([
          [],
          [0],
          [1, 1],
          [2 ** 31, 2 ** 31, 2 ** 31],
          [-1, 2],
          [1.5],
          ['2'],
          null,
          [2 ** 53 + 2],
          Array(300).fill(2 ** 40),
        ]);
    }),
  (b, r) =>
    editHeader(b, r, (h, keys) => {
      const k = r.pick(keys);
      if (r.next() < 0.5) delete h[k];
      else h[r.pick(['__proto__', 'constructor', '__metadata__', k + 'x', ''])] = h[k];
    }),
  (b, r) =>
    editHeader(b, r, (h) => {
      h.__metadata__ = r.pick([{ a: 1 }, 'x', null, [], { b: 'ok' }, { ['\ud800']: 'x' }]);
    }),
  (b, r) => {
    // a random header length field
    const c = b.slice();
    const v = new DataView(c.buffer, c.byteOffset, c.byteLength);
    if (c.length >= 8)
      v.setBigUint64(
        0,
        r.pick([
          0n,
          1n,
          7n,
          BigInt(c.length),
          BigInt(c.length - 8),
          2n ** 63n,
          2n ** 64n - 1n,
          BigInt(100 * 1024 * 1024 + 1),
          BigInt(r.int(c.length)),
        ]),
        true,
      );
    return c;
  },
];

function editHeader(b: Uint8Array, r: Rand, edit: (h: Record<string, unknown>, keys: string[]) => void): Uint8Array {
  if (b.length < 8) return b;
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  if (n > b.length - 8) return b;
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(Buffer.from(b.subarray(8, 8 + n)).toString('utf8')) as Record<string, unknown>;
  } catch {
    return b;
  }
  if (!h || typeof h !== 'object') return b;
  const keys = Object.keys(h).filter((k) => k !== '__metadata__');
  if (!keys.length) keys.push('__metadata__');
  edit(h, keys);
  void r;
  const head = text(JSON.stringify(h));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(head.length), true);
  return concat(len, head, b.subarray(8 + n));
}

// ---- references ----

const DTYPES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  U16: 2,
  U32: 4,
  U64: 8,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};
const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

interface StTensor {
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** The safetensors rules, written out again: undefined when valid, else why not. */
export function referenceSafetensors(b: Uint8Array): {
  error?: string;
  tensors: Map<string, StTensor>;
  dataStart: number;
} {
  const tensors = new Map<string, StTensor>();
  const bad = (error: string) => ({ error, tensors, dataStart: 0 });
  if (b.length < 8) return bad('short');
  const n = new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  if (n < 1n || n > BigInt(Math.min(100 * 1024 * 1024, b.length - 8))) return bad('header length');
  const dataStart = 8 + Number(n),
    dataSize = b.length - dataStart;
  let h: unknown;
  try {
    h = JSON.parse(fatal.decode(b.subarray(8, dataStart)));
  } catch {
    return bad('header text');
  }
  if (h === null || typeof h !== 'object' || Array.isArray(h)) return bad('header kind');
  const natural = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  for (const [name, e] of Object.entries(h as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (
        e === null ||
        typeof e !== 'object' ||
        Array.isArray(e) ||
        Object.values(e).some((v) => typeof v !== 'string')
      )
        return bad('metadata');
      continue;
    }
    if (e === null || typeof e !== 'object' || Array.isArray(e)) return bad('entry');
    const { dtype, shape, data_offsets: off } = e as Record<string, unknown>;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPES, dtype)) return bad('dtype');
    if (!Array.isArray(shape) || !shape.every(natural)) return bad('shape');
    if (!Array.isArray(off) || off.length !== 2 || !off.every(natural) || off[0] > off[1] || off[1] > dataSize)
      return bad('offsets');
    const bytes = shape.reduce((p: bigint, d: number) => p * BigInt(d), 1n) * BigInt(DTYPES[dtype]);
    if (bytes !== BigInt(off[1] - off[0])) return bad('size');
    tensors.set(name, { dtype, shape, begin: off[0], end: off[1] });
  }
  const spans = [...tensors.values()].map((t) => [t.begin, t.end]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let cursor = 0;
  for (const [s, e] of spans) {
    if (s !== cursor) return bad('tiling');
    cursor = e;
  }
  if (cursor !== dataSize) return bad('tiling');
  return { tensors, dataStart };
}

const CHAT_ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'ipython', 'function', 'observation']); // GLM-4's tool results are 'observation'
/** The fields each kind reads (an SFT record with `messages` ignores prompt/completion). */
function recordFields(kind: Kind, o: Record<string, unknown>): string[] {
  if (kind === 'sft') return o.messages !== undefined ? ['messages'] : ['prompt', 'completion'];
  if (kind === 'preference') return ['prompt', 'chosen', 'rejected'];
  if (kind === 'scored') return ['prompt', 'responses'];
  return ['prompt'];
}

/** Roles and text a loader must have checked in an accepted record (independent of formats.ts). */
function recordProblem(value: unknown, kind: Kind): string | undefined {
  const visit = (v: unknown): string | undefined => {
    if (typeof v === 'string') return /[\uD800-\uDFFF]/u.test(v) ? 'lone surrogate' : undefined;
    if (Array.isArray(v)) {
      for (const x of v) {
        const p = visit(x);
        if (p) return p;
      }
      return undefined;
    }
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if ('role' in o && 'content' in o && !CHAT_ROLES.has(o.role as string)) return `role ${JSON.stringify(o.role)}`;
      if ('role' in o && 'content' in o) return visit(o.content);
    }
    return undefined;
  };
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  for (const f of recordFields(kind, value as Record<string, unknown>)) {
    const p = visit((value as Record<string, unknown>)[f]);
    if (p) return p;
  }
  return undefined;
}

type Kind = 'sft' | 'preference' | 'scored' | 'prompt';
const PARSE: Record<Kind, (v: unknown, where: string) => unknown> = {
  sft: parseSftRecord,
  preference: parsePreferenceRecord,
  scored: parseScoredRecord,
  prompt: parsePromptRecord,
};
const LOAD: Record<Kind, (path: string) => Promise<unknown[]>> = {
  sft: loadSftFile,
  preference: loadPreferenceFile,
  scored: loadScoredFile,
  prompt: loadPromptFile,
};

/**
 * The JSONL rules, written out again: lines split at LF, CRLF or a lone CR (on the latin1 view of
 * the bytes, so splitting never depends on decoding); each line strict UTF-8, the first one's BOM
 * dropped, blank lines skipped, the rest JSON records of the kind. Returns the first bad line (or
 * 0 for an empty file) and the number of records otherwise.
 */
export function referenceJsonl(b: Uint8Array, kind: Kind): { badLine?: number; records: number } {
  const lines = Buffer.from(b)
    .toString('latin1')
    .split(/\r\n|\r|\n/);
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  let records = 0;
  for (let i = 0; i < lines.length; i++) {
    let s: string;
    try {
      s = fatal.decode(Buffer.from(lines[i], 'latin1'));
    } catch {
      return { badLine: i + 1, records };
    }
    if (i === 0 && s.charCodeAt(0) === 0xfeff) s = s.slice(1);
    if (s.trim() === '') continue;
    try {
      const v = JSON.parse(s);
      PARSE[kind](v, `line ${i + 1}`);
      if (recordProblem(v, kind)) return { badLine: -(i + 1), records }; // negative: the parser accepted it, the reference does not
    } catch {
      return { badLine: i + 1, records };
    }
    records++;
  }
  return records === 0 ? { badLine: 0, records } : { records };
}

// ---- the loop ----

interface Seed {
  target: 'safetensors' | `jsonl:${Kind}`;
  name: string;
  bytes: Uint8Array;
}

export function loadCorpus(dir: string): Seed[] {
  const seeds: Seed[] = [];
  for (const f of readdirSync(join(dir, 'safetensors')).sort())
    seeds.push({ target: 'safetensors', name: f, bytes: new Uint8Array(readFileSync(join(dir, 'safetensors', f))) }); // a copy: Buffer.slice() would alias
  for (const f of readdirSync(join(dir, 'jsonl')).sort()) {
    const kind = f.split(/[-.]/)[0] as Kind;
    if (!(kind in LOAD)) throw new Error(`corpus: ${f} does not start with one of ${Object.keys(LOAD).join(', ')}`);
    seeds.push({ target: `jsonl:${kind}`, name: f, bytes: new Uint8Array(readFileSync(join(dir, 'jsonl', f))) });
  }
  return seeds;
}

const DOCUMENTED = new Set<string>([ErrorCode.FORMAT, ErrorCode.IO, ErrorCode.UNSUPPORTED]);

/** A documented reader error: RlhfError with a file code whose message starts with the path. */
function isClean(err: unknown, path: string): boolean {
  return err instanceof RlhfError && DOCUMENTED.has(err.code) && err.message.startsWith(path);
}

const describe = (err: unknown) =>
  (err instanceof Error
    ? `${err.name}${(err as { code?: string }).code ? ` ${(err as { code?: string }).code}` : ''}: ${err.message}`
    : String(err)
  ).slice(0, 300);

type Verdict = { outcome: 'clean' | 'accepted' } | { outcome: FuzzFinding['kind']; detail: string };

async function trySafetensors(path: string, bytes: Uint8Array): Promise<Verdict> {
  const ref = referenceSafetensors(bytes);
  let header;
  try {
    header = await readSafetensorsHeader(path);
  } catch (err) {
    if (!isClean(err, path)) return { outcome: 'crash', detail: describe(err) };
    return ref.error ? { outcome: 'clean' } : { outcome: 'false rejection', detail: describe(err) };
  }
  if (ref.error) return { outcome: 'silent acceptance', detail: `the reference rejects it (${ref.error})` };
  if (header.tensors.size !== ref.tensors.size)
    return { outcome: 'crash', detail: `${header.tensors.size} tensors read, the reference has ${ref.tensors.size}` };
  for (const [name, t] of ref.tensors) {
    const info = header.tensors.get(name);
    if (
      !info ||
      info.dtype !== t.dtype ||
      info.byteOffset !== ref.dataStart + t.begin ||
      info.byteLength !== t.end - t.begin ||
      info.shape.join() !== t.shape.join()
    )
      return {
        outcome: 'crash',
        detail: `tensor ${JSON.stringify(name)} read as ${JSON.stringify(info)}, reference ${JSON.stringify(t)}`,
      };
    if (t.dtype !== 'F32') continue;
    let data: Float32Array;
    try {
      data = await readTensorF32(header, name);
    } catch (err) {
      return {
        outcome: 'crash',
        detail: `readTensorF32(${JSON.stringify(name)}) on an accepted header: ${describe(err)}`,
      };
    }
    const want = new Float32Array(
      Uint8Array.from(bytes.subarray(ref.dataStart + t.begin, ref.dataStart + t.end)).buffer,
    );
    if (
      data.length !== want.length ||
      !data.every((x, i) => Object.is(x, want[i]) || (Number.isNaN(x) && Number.isNaN(want[i])))
    )
      return { outcome: 'crash', detail: `tensor ${JSON.stringify(name)}: values differ from the file's bytes` };
  }
  return { outcome: 'accepted' };
}

async function tryJsonl(path: string, bytes: Uint8Array, kind: Kind): Promise<Verdict> {
  const ref = referenceJsonl(bytes, kind);
  let records: unknown[];
  try {
    records = await LOAD[kind](path);
  } catch (err) {
    if (!isClean(err, path)) return { outcome: 'crash', detail: describe(err) };
    const m = /^[^\n]*?:(\d+): /.exec(err instanceof Error ? err.message.slice(path.length) : '');
    const line = m ? Number(m[1]) : 0;
    if (ref.badLine === undefined) return { outcome: 'false rejection', detail: describe(err) };
    if (Math.abs(ref.badLine) !== line)
      return {
        outcome: 'wrong line',
        detail: `error at line ${line}, the reference's first bad line is ${Math.abs(ref.badLine)}: ${describe(err)}`,
      };
    return { outcome: 'clean' };
  }
  if (ref.badLine !== undefined)
    return {
      outcome: 'silent acceptance',
      detail: `${records.length} records read; the reference rejects line ${Math.abs(ref.badLine)}`,
    };
  if (records.length !== ref.records)
    return { outcome: 'crash', detail: `${records.length} records read, the reference counts ${ref.records}` };
  return { outcome: 'accepted' };
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzStats> {
  const seeds = loadCorpus(opts.corpusDir);
  const r = new Rand(opts.seed);
  const perInputMs = opts.perInputMs ?? 2000;
  const deadline = Date.now() + (opts.seconds ?? 60) * 1000;
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-fuzz-'));
  const stats: FuzzStats = {
    trials: 0,
    cleanErrors: 0,
    accepted: 0,
    crashes: 0,
    hangs: 0,
    wrongLines: 0,
    silentAcceptances: 0,
    falseRejections: 0,
    byTarget: {},
    findings: [],
    seconds: 0,
  };
  const t0 = Date.now();
  try {
    // the seeds themselves must be accepted
    for (const [trial, seed] of seeds.entries()) await runOne(seed, seed.bytes, -1 - trial);
    for (let trial = 0; (opts.iterations === undefined || trial < opts.iterations) && Date.now() < deadline; trial++) {
      const seed = r.pick(seeds);
      const pool = seeds.filter((s) => s.target === seed.target);
      const mutators = seed.target === 'safetensors' ? safetensorsMutators : jsonlMutators;
      let bytes = seed.bytes;
      for (let k = r.next() < 0.6 ? 1 : 2 + r.int(3); k > 0; k--) {
        // mostly one mutation, sometimes 2-4
        const mutate = r.pick(mutators),
          other = r.pick(pool).bytes;
        try {
          bytes = mutate(bytes, r, other);
        } catch {
          // a structural edit that does not apply to this input: keep the bytes as they are
        }
      }
      await runOne(seed, bytes, trial);
      if (opts.log && trial > 0 && trial % 1000 === 0)
        opts.log(
          `${trial} trials, ${stats.cleanErrors} clean errors, ${stats.accepted} accepted, ${stats.findings.length} findings`,
        );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  stats.seconds = (Date.now() - t0) / 1000;
  return stats;

  async function runOne(seed: Seed, bytes: Uint8Array, trial: number): Promise<void> {
    const path = join(dir, `${trial}-${seed.name}`);
    writeFileSync(path, bytes);
    const started = Date.now();
    let verdict: Verdict;
    try {
      verdict =
        seed.target === 'safetensors'
          ? await trySafetensors(path, bytes)
          : await tryJsonl(path, bytes, seed.target.slice(6) as Kind);
    } catch (err) {
      verdict = { outcome: 'crash', detail: `harness: ${describe(err)}` };
    }
    const ms = Date.now() - started;
    if (ms > perInputMs && (verdict.outcome === 'clean' || verdict.outcome === 'accepted'))
      verdict = { outcome: 'hang', detail: `${ms} ms (limit ${perInputMs} ms)` };
    rmSync(path, { force: true });
    if (trial >= 0) {
      stats.trials++;
      const t = (stats.byTarget[seed.target] ??= { trials: 0, cleanErrors: 0, accepted: 0 });
      t.trials++;
      if (verdict.outcome === 'clean') (stats.cleanErrors++, t.cleanErrors++);
      if (verdict.outcome === 'accepted') (stats.accepted++, t.accepted++);
    }
    if (verdict.outcome === 'clean' || verdict.outcome === 'accepted') return;
    let bad = verdict as { outcome: FuzzFinding['kind']; detail: string };
    if (trial < 0 && bad.outcome !== 'crash')
      bad = { outcome: 'false rejection', detail: `corpus seed ${seed.name}: ${bad.detail}` };
    const finding: FuzzFinding = { kind: bad.outcome, target: seed.target, trial, detail: bad.detail };
    if (opts.saveDir) {
      mkdirSync(opts.saveDir, { recursive: true });
      finding.saved = join(opts.saveDir, `seed${opts.seed}-trial${trial}-${basename(seed.name)}`);
      writeFileSync(finding.saved, bytes);
    }
    stats.findings.push(finding);
    if (finding.kind === 'crash') stats.crashes++;
    else if (finding.kind === 'hang') stats.hangs++;
    else if (finding.kind === 'wrong line') stats.wrongLines++;
    else if (finding.kind === 'silent acceptance') stats.silentAcceptances++;
    else stats.falseRejections++;
    opts.log?.(
      `${finding.kind} (${finding.target}, trial ${trial}): ${finding.detail}${finding.saved ? ` [saved ${finding.saved}]` : ''}`,
    );
  }
}

/** One line per figure, for the report. */
export function summary(s: FuzzStats, seed: number): string {
  const targets = Object.entries(s.byTarget)
    .map(([k, v]) => `${k} ${v.trials} (${v.cleanErrors} clean errors, ${v.accepted} accepted)`)
    .join('; ');
  return [
    `fuzz seed ${seed}: ${s.trials} trials in ${s.seconds.toFixed(1)} s`,
    `  clean errors ${s.cleanErrors}, accepted ${s.accepted}`,
    `  crashes ${s.crashes}, hangs ${s.hangs}, wrong line numbers ${s.wrongLines}, silent acceptances ${s.silentAcceptances}, false rejections ${s.falseRejections}`,
    `  by target: ${targets}`,
  ].join('\n');
}
