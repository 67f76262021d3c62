/**
 * Run identity: `<outputDir>/run.json`, written before anything else of a run.
 *
 *   {format: "rlhf-run", version: 1, runId, stage, createdAt, engineVersion, seed,
 *    configHash, config, dataFingerprint, data}
 *
 * `config` is the trainer's resolved options in canonical form (keys sorted; a model becomes its
 * architecture config, a tokenizer its class and vocabulary size, a reward source its name, a long
 * array its length and SHA-256); `configHash` is the SHA-256 of its JSON. `data` maps each data
 * option (train, eval, prompts, ...) to the SHA-256 of the file's bytes (a path) or of the records'
 * canonical JSON; `dataFingerprint` hashes that map. Options that do not change what is computed
 * (outputDir, resumeFrom, keepCheckpoints, saveEvery, evalEvery and the run-safety switches) are
 * left out, so a resume with the same settings has the same hash.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { ErrorCode, RlhfError } from '../errors.js';
import { packageRoot } from '../native.js';

export const RUN_MANIFEST = 'run.json';
export const RUN_MANIFEST_VERSION = 1;

/** Options left out of the config hash: where output goes and how the run is kept, not what it computes. */
export const NON_IDENTITY_KEYS = new Set([
  'outputDir',
  'resumeFrom',
  'keepCheckpoints',
  'saveEvery',
  'evalEvery',
  'overwrite',
  'allowResumeMismatch',
  'allowNonFiniteResume',
  'maxConsecutiveSkips',
  // data parallelism: the same run at any number of ranks, sharded optimizer state or not
  'group',
  'shardOptimizer',
]);

export interface RunManifest {
  format: 'rlhf-run';
  version: number;
  runId: string;
  stage: string;
  createdAt: string;
  engineVersion: string;
  seed?: number;
  configHash: string;
  config: Record<string, unknown>;
  dataFingerprint: string;
  data: Record<string, string>;
}

/** What a trainer hands TrainingRun to identify its run. */
export interface RunIdentitySource {
  /** the resolved options (model, tokenizer, data and all) */
  config: Record<string, unknown>;
  /** dotted paths of the options that hold data (a JSONL path or records): fingerprinted, not hashed into the config */
  dataKeys?: readonly string[];
}

let engineVersion: string | undefined;
export function getEngineVersion(): string {
  if (engineVersion === undefined) {
    try {
      engineVersion = String(JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version);
    } catch {
      engineVersion = 'unknown';
    }
  }
  return engineVersion;
}

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

const LONG_ARRAY = 16;

/** The canonical, JSON-safe form of an option value (see the module comment). */
export function canonical(value: unknown): unknown {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'bigint') return String(value);
  if (typeof value === 'function') return `[function ${value.name || 'anonymous'}]`;
  if (value === undefined || typeof value === 'symbol') return undefined;
  if (ArrayBuffer.isView(value)) {
    const v = value as unknown as ArrayBufferView;
    return {
      [v.constructor.name]: (v as unknown as { length?: number }).length ?? v.byteLength,
      sha256: sha256(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)),
    };
  }
  if (Array.isArray(value)) {
    const items = value.map(canonical);
    return items.length > LONG_ARRAY ? { items: items.length, sha256: sha256(JSON.stringify(items)) } : items;
  }
  const o = value as Record<string, unknown>;
  const ctor = Object.getPrototypeOf(o)?.constructor?.name;
  if (ctor === 'Model' && typeof o.forward === 'function')
    return {
      model: canonical((o as { config: unknown }).config),
      lora: canonical((o as { lora?: unknown }).lora ?? null),
    };
  if (typeof o.encode === 'function' && typeof o.vocabSize === 'number')
    return { tokenizer: ctor, vocabSize: o.vocabSize };
  if (typeof o.score === 'function') return { reward: typeof o.name === 'string' ? o.name : ctor };
  if (ctor !== 'Object' && ctor !== undefined) return `[${ctor}]`;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) {
    const c = canonical(o[k]);
    if (c !== undefined) out[k] = c;
  }
  return out;
}

function getPath(o: Record<string, unknown>, path: string): unknown {
  return path
    .split('.')
    .reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o);
}

/** A copy of `o` without the value at `path` (the objects along the path are copied, `o` is untouched). */
function without(o: Record<string, unknown>, path: string[]): Record<string, unknown> {
  const copy = { ...o };
  const [head, ...rest] = path;
  if (!rest.length) delete copy[head];
  else if (copy[head] && typeof copy[head] === 'object' && !Array.isArray(copy[head]))
    copy[head] = without(copy[head] as Record<string, unknown>, rest);
  return copy;
}

async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  } catch (err) {
    throw new RlhfError(ErrorCode.IO, `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  return h.digest('hex');
}

/** The identity fields of a manifest for these options (reads each data file once). */
export async function runIdentity(
  src: RunIdentitySource,
): Promise<Pick<RunManifest, 'configHash' | 'config' | 'dataFingerprint' | 'data' | 'seed'>> {
  const dataKeys = src.dataKeys ?? [];
  const data: Record<string, string> = {};
  for (const key of dataKeys) {
    const v = getPath(src.config, key);
    if (v === undefined) continue;
    data[key] =
      typeof v === 'string' ? `file:${await fileSha256(v)}` : `records:${sha256(JSON.stringify(canonical(v)))}`;
  }
  let stripped: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src.config)) if (!NON_IDENTITY_KEYS.has(k)) stripped[k] = v;
  for (const key of dataKeys) stripped = without(stripped, key.split('.'));
  const config = canonical(stripped) as Record<string, unknown>;
  const seed = typeof src.config.seed === 'number' ? src.config.seed : undefined;
  return {
    config,
    configHash: sha256(JSON.stringify(config)),
    data,
    dataFingerprint: sha256(JSON.stringify(canonical(data))),
    ...(seed !== undefined ? { seed } : {}),
  };
}

export function newManifest(stage: string, id: Awaited<ReturnType<typeof runIdentity>>): RunManifest {
  return {
    format: 'rlhf-run',
    version: RUN_MANIFEST_VERSION,
    runId: randomUUID(),
    stage,
    createdAt: new Date().toISOString(),
    engineVersion: getEngineVersion(),
    ...id,
  };
}

export async function writeManifest(outputDir: string, m: RunManifest): Promise<void> {
  await writeFileAtomic(join(outputDir, RUN_MANIFEST), JSON.stringify(m, null, 2) + '\n');
}

/** The manifest of `outputDir`, or undefined when it has none. @throws RlhfError ERR_RLHF_FORMAT when it cannot be parsed */
export async function readManifest(outputDir: string): Promise<RunManifest | undefined> {
  const path = join(outputDir, RUN_MANIFEST);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new RlhfError(ErrorCode.IO, `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let m: RunManifest;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw new RlhfError(ErrorCode.FORMAT, `${path}: not a run manifest (${(err as Error).message})`, { cause: err });
  }
  if (m?.format !== 'rlhf-run' || typeof m.runId !== 'string' || typeof m.configHash !== 'string')
    throw new RlhfError(ErrorCode.FORMAT, `${path}: not a run manifest (format ${JSON.stringify(m?.format)})`);
  return m;
}

function flatten(v: unknown, prefix: string, out: Map<string, string>): void {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const entries = Object.entries(v as Record<string, unknown>);
    if (!entries.length && prefix) out.set(prefix, '{}');
    for (const [k, x] of entries) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, JSON.stringify(v));
}

/** The settings that differ between a manifest and a new identity, one "key: old -> new" each. */
export function manifestDifferences(
  old: Pick<RunManifest, 'config' | 'data' | 'stage'>,
  now: Pick<RunManifest, 'config' | 'data' | 'stage'>,
): string[] {
  const diffs: string[] = [];
  if (old.stage !== now.stage) diffs.push(`stage: ${old.stage} -> ${now.stage}`);
  for (const [what, a, b] of [
    ['', old.config, now.config],
    ['data ', old.data, now.data],
  ] as const) {
    const fa = new Map<string, string>(),
      fb = new Map<string, string>();
    flatten(a, '', fa);
    flatten(b, '', fb);
    for (const k of new Set([...fa.keys(), ...fb.keys()])) {
      const x = fa.get(k),
        y = fb.get(k);
      if (x === y) continue;
      const show = (s: string | undefined) =>
        s === undefined ? '(unset)' : s.length > 40 ? s.slice(0, 37) + '..."' : s;
      diffs.push(what ? `data ${k} changed (${show(x)} -> ${show(y)})` : `${k}: ${show(x)} -> ${show(y)}`);
    }
  }
  return diffs;
}
