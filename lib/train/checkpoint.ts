/**
 * Trainer checkpoints: everything a run needs to continue exactly where it stopped.
 *
 *   <outputDir>/checkpoint-<step>/
 *     <part>/            one Hugging Face model directory per trained model (policy, critic, ...)
 *       config.json, model.safetensors, tokenizer files
 *       optimizer.safetensors   AdamW moments exp_avg, exp_avg_sq (F32); step and options in metadata
 *     trainer_state.json  step, epoch, data position, seeds, trainer options
 *     checkpoint.json     written last: {format: "rlhf-checkpoint", runId, step, files: {path: {bytes, sha256}}}
 *                         for every other file, read back from disk after writing
 *
 * The directory is filled under a temporary name and renamed into place (replaceDirAtomic), so a
 * crash leaves the previous checkpoint and never a half-written one. A model split over K
 * tensor-parallel processes is saved by the job's world rank 0 alone: the weights gathered into the
 * Hugging Face layout (Model.save, collective over the group), the moments of every rank's shard
 * joined in rank order (lib/distributed/tensor-parallel-state.ts; metadata tensor_parallel K), so the
 * other ranks take part in the gathers (joinCheckpointSave) and write nothing. Weights are stored F32, so
 * restoring is bit-exact. verifyCheckpoint() checks every file against checkpoint.json (a flipped
 * byte, a truncated or missing file); restoreCheckpoint() refuses non-finite weights or optimizer
 * moments unless told otherwise.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { RlhfError, ErrorCode } from '../errors.js';
import type { AdamW } from '../engine/adamw.js';
import { currentGroup, type ProcessGroup } from '../distributed/index.js';
import { joinTensorParallelPieces, tensorParallelPiece } from '../distributed/tensor-parallel-state.js';
import { replaceDirAtomic, writeFileAtomic } from '../io/atomic.js';
import type { Model } from '../engine/model.js';
import { readSafetensorsHeader, readTensorF32, writeSafetensors } from '../io/safetensors.js';
import type { Tokenizer } from '../tokenizer/index.js';

export const CHECKPOINT_VERSION = 1;
/** The checksum manifest of a checkpoint directory. */
export const CHECKPOINT_MANIFEST = 'checkpoint.json';

export interface CheckpointPart {
  model: Model;
  optimizer?: AdamW;
  tokenizer?: Tokenizer;
}

export interface TrainerState {
  version: number;
  stage: string;
  step: number;
  [key: string]: unknown;
}

export function checkpointDir(outputDir: string, step: number): string {
  return join(outputDir, `checkpoint-${step}`);
}

export interface CheckpointManifest {
  format: 'rlhf-checkpoint';
  version: number;
  runId?: string;
  step: number;
  /** every file of the checkpoint but this one, by path relative to the checkpoint ('/'-separated) */
  files: Record<string, { bytes: number; sha256: string }>;
}

async function fileDigest(path: string): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path)) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: h.digest('hex') };
}

async function listFiles(dir: string, root = dir): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p, root)));
    else if (e.isFile()) out.push(relative(root, p).split(sep).join('/'));
  }
  return out.sort();
}

const splitOverProcesses = (model: Model) => model.tensorParallelGroup === 'mpi';

/**
 * The optimizer state of one part as the checkpoint stores it (collective: the data-parallel
 * group's gather of a sharded optimizer, then the tensor-parallel group's join of the shards).
 */
async function optimizerStateOf(part: CheckpointPart, group: ProcessGroup) {
  const s = await part.optimizer!.saveState();
  if (!splitOverProcesses(part.model)) return s;
  return {
    ...s,
    m: joinTensorParallelPieces(group.tensorGroup, s.m),
    v: joinTensorParallelPieces(group.tensorGroup, s.v),
  };
}

/**
 * Writes a checkpoint of `parts` and `state` to `dir` (replacing it atomically), with the
 * checksum manifest. `runId` ties it to its run's manifest (lib/train/run-manifest.ts). `group`
 * (default: currentGroup()): its world rank 0 calls this; every other rank calls joinCheckpointSave
 * with the same parts at the same time.
 */
export async function saveCheckpoint(
  dir: string,
  parts: Record<string, CheckpointPart>,
  state: Omit<TrainerState, 'version'>,
  opts: { runId?: string; group?: ProcessGroup } = {},
): Promise<void> {
  const group = opts.group ?? currentGroup();
  await replaceDirAtomic(dir, async (tmp) => {
    for (const [name, part] of Object.entries(parts)) {
      const sub = join(tmp, name);
      await part.model.save(sub, { extraFiles: async (d) => part.tokenizer?.save(d) });
      if (part.optimizer) {
        const s = await optimizerStateOf(part, group);
        await writeSafetensors(
          join(sub, 'optimizer.safetensors'),
          [
            { name: 'exp_avg', shape: [s.m.length], data: s.m },
            { name: 'exp_avg_sq', shape: [s.v.length], data: s.v },
          ],
          {
            step: String(s.step),
            options: JSON.stringify(s.options),
            format: 'rlhf-adamw',
            tensor_parallel: String(part.model.tensorParallel),
          },
        );
      }
    }
    await writeFileAtomic(
      join(tmp, 'trainer_state.json'),
      JSON.stringify({ version: CHECKPOINT_VERSION, ...state }, null, 2) + '\n',
    );
    const files: CheckpointManifest['files'] = {};
    for (const f of await listFiles(tmp)) files[f] = await fileDigest(join(tmp, f));
    const m: CheckpointManifest = {
      format: 'rlhf-checkpoint',
      version: CHECKPOINT_VERSION,
      ...(opts.runId ? { runId: opts.runId } : {}),
      step: state.step as number,
      files,
    };
    await writeFileAtomic(join(tmp, CHECKPOINT_MANIFEST), JSON.stringify(m, null, 2) + '\n');
  });
}

/**
 * A rank other than world rank 0 while rank 0 runs saveCheckpoint(`dir`, `parts`): the same
 * collectives in the same order, nothing written. Ranks of world rank 0's tensor-parallel group
 * join the gathers of split models; every rank joins the gather of a sharded optimizer.
 */
export async function joinCheckpointSave(
  dir: string,
  parts: Record<string, CheckpointPart>,
  group: ProcessGroup = currentGroup(),
): Promise<void> {
  const inWriterGroup = group.rank === 0; // data-parallel rank 0: world rank 0's tensor-parallel group
  for (const part of Object.values(parts)) {
    const split = splitOverProcesses(part.model);
    if (split && inWriterGroup) await part.model.save(join(dir, 'unwritten'));
    if (!part.optimizer) continue;
    if (split && inWriterGroup) await optimizerStateOf(part, group);
    else if (part.optimizer.sharded) await part.optimizer.saveState();
  }
}

/**
 * Checks every file of the checkpoint at `dir` against its checkpoint.json (size and SHA-256).
 * Returns the manifest, or undefined for a checkpoint written before checksums existed (then only
 * its trainer_state.json is checked).
 * @throws RlhfError ERR_RLHF_FORMAT naming the first file that is missing, truncated or altered
 */
export async function verifyCheckpoint(dir: string): Promise<CheckpointManifest | undefined> {
  const path = join(dir, CHECKPOINT_MANIFEST);
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new RlhfError(ErrorCode.IO, `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (text === undefined) {
    await readTrainerState(dir);
    return undefined;
  }
  let m: CheckpointManifest;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw new RlhfError(ErrorCode.FORMAT, `${path}: unreadable checksum manifest (${(err as Error).message})`, {
      cause: err,
    });
  }
  if (m?.format !== 'rlhf-checkpoint' || !m.files || typeof m.files !== 'object' || !m.files['trainer_state.json'])
    throw new RlhfError(ErrorCode.FORMAT, `${path}: not a checkpoint checksum manifest`);
  for (const [rel, want] of Object.entries(m.files)) {
    const p = join(dir, ...rel.split('/'));
    let got: { bytes: number; sha256: string };
    try {
      const st = await stat(p);
      if (st.size !== want.bytes)
        throw new RlhfError(
          ErrorCode.FORMAT,
          `${p}: ${st.size} bytes, the checkpoint manifest says ${want.bytes} (truncated or partial)`,
        );
      got = await fileDigest(p);
    } catch (err) {
      if (err instanceof RlhfError) throw err;
      throw new RlhfError(
        ErrorCode.FORMAT,
        `${p}: missing or unreadable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
        { cause: err },
      );
    }
    if (got.sha256 !== want.sha256)
      throw new RlhfError(
        ErrorCode.FORMAT,
        `${p}: SHA-256 ${got.sha256.slice(0, 16)}... differs from the checkpoint manifest's ${want.sha256.slice(0, 16)}... (the file was altered or corrupted)`,
      );
  }
  await readTrainerState(dir);
  return m;
}

/** The index of the first non-finite value of `x`, or undefined when all are finite. */
function firstNonFinite(x: Float32Array): number | undefined {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return i;
  return undefined;
}

export async function readTrainerState(dir: string): Promise<TrainerState> {
  const path = join(dir, 'trainer_state.json');
  let state: TrainerState;
  try {
    state = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new RlhfError(ErrorCode.IO, `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (state.version !== CHECKPOINT_VERSION || typeof state.step !== 'number')
    throw new RlhfError(
      ErrorCode.FORMAT,
      `${path}: not a version-${CHECKPOINT_VERSION} trainer state (version ${JSON.stringify(state.version)})`,
    );
  return state;
}

/**
 * Loads the weights (and optimizer moments) of each part into the given live objects. A NaN or
 * ±Infinity in any weight or moment is an ERR_RLHF_FORMAT error naming the tensor unless
 * `allowNonFinite` (the optimizer state is then not loaded either way before the check).
 */
export async function restoreCheckpoint(
  dir: string,
  parts: Record<string, { model: Model; optimizer?: AdamW }>,
  opts: { allowNonFinite?: boolean; group?: ProcessGroup } = {},
): Promise<TrainerState> {
  const state = await readTrainerState(dir);
  const refuse = (what: string, i: number, v: number) =>
    new RlhfError(
      ErrorCode.FORMAT,
      `${dir}: ${what} holds a non-finite value (${v} at index ${i}); a run is not resumed from non-finite weights or optimizer state (resume from an earlier checkpoint, or pass allowNonFiniteResume / --allow-non-finite-resume to load it anyway)`,
    );
  for (const [name, part] of Object.entries(parts)) {
    const sub = join(dir, name);
    await part.model.loadWeights(sub);
    if (!opts.allowNonFinite)
      for (const p of part.model.parameters()) {
        const w = await part.model.getParameter(p.name);
        const i = firstNonFinite(w);
        if (i !== undefined) throw refuse(`the ${name} parameter ${p.name}`, i, w[i]);
      }
    if (part.optimizer) {
      const h = await readSafetensorsHeader(join(sub, 'optimizer.safetensors'));
      const step = Number(h.metadata.step);
      if (!Number.isInteger(step) || step < 0)
        throw new RlhfError(ErrorCode.FORMAT, `${h.path}: metadata.step must be an integer, got ${h.metadata.step}`);
      const options = JSON.parse(h.metadata.options ?? '{}');
      const tp = h.metadata.tensor_parallel;
      if (tp !== undefined && Number(tp) !== part.model.tensorParallel)
        throw new RlhfError(
          ErrorCode.INVALID_ARGUMENT,
          `${h.path}: the optimizer state is split for tensor parallelism ${tp}, but this run's ${name} is split over ${part.model.tensorParallel} (resume with --tp ${tp} / tensorParallel: ${tp})`,
        );
      let m = await readTensorF32(h, 'exp_avg'),
        v = await readTensorF32(h, 'exp_avg_sq');
      if (splitOverProcesses(part.model)) {
        // this rank's shard of the joined moments (collective over its tensor-parallel group)
        const tpGroup = (opts.group ?? currentGroup()).tensorGroup;
        m = tensorParallelPiece(tpGroup, m, part.optimizer.size, `${h.path} exp_avg`);
        v = tensorParallelPiece(tpGroup, v, part.optimizer.size, `${h.path} exp_avg_sq`);
      }
      if (!opts.allowNonFinite)
        for (const [t, x] of [
          ['exp_avg', m],
          ['exp_avg_sq', v],
        ] as const) {
          const i = firstNonFinite(x);
          if (i !== undefined) throw refuse(`the ${name} optimizer state ${t}`, i, x[i]);
        }
      await part.optimizer.loadState({ step, m, v, options });
    }
  }
  return state;
}

/** The checkpoint with the highest step that has a trainer_state.json, if any. */
export async function findLatestCheckpoint(outputDir: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(outputDir);
  } catch {
    return undefined;
  }
  const steps = names
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
  for (const step of steps) {
    const dir = checkpointDir(outputDir, step);
    try {
      await readTrainerState(dir);
      return dir;
    } catch {
      // incomplete or foreign: keep looking
    }
  }
  return undefined;
}

/** Steps of the `checkpoint-<step>` directories of `outputDir`, newest first. */
export async function checkpointSteps(outputDir: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(outputDir);
  } catch {
    return [];
  }
  return names
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
}

/**
 * The newest checkpoint of `outputDir` that verifies (verifyCheckpoint) and belongs to `runId`
 * (when given and recorded). Each newer one that does not is moved aside to
 * `checkpoint-<step>.corrupt-<time>` (kept for inspection, never resumed or pruned as the latest)
 * and reported through `warn`.
 */
export async function findVerifiedCheckpoint(
  outputDir: string,
  opts: { runId?: string; warn?: (message: string) => void } = {},
): Promise<string | undefined> {
  for (const step of await checkpointSteps(outputDir)) {
    const dir = checkpointDir(outputDir, step);
    let reason: string;
    try {
      const m = await verifyCheckpoint(dir);
      if (!m) opts.warn?.(`${dir} has no checksums (written by an older version): resuming from it unverified`);
      if (!opts.runId || !m?.runId || m.runId === opts.runId) return dir;
      reason = `it belongs to run ${m.runId}, not to this folder's run ${opts.runId}`;
    } catch (err) {
      reason = (err as Error).message;
    }
    const aside = `${dir}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await rename(dir, aside).catch(() => {});
    opts.warn?.(
      `checkpoint-${step} is not usable (${reason}); moved to ${aside}, falling back to the previous checkpoint`,
    );
  }
  return undefined;
}

/**
 * Clears what crashed checkpoint writes leave in `outputDir` (call it while holding the folder's
 * lock, so no live writer owns them): `checkpoint-<N>.tmp-*` and `checkpoint-<N>.old-*` folders
 * (replaceDirAtomic), `model.tmp-*` / `model.old-*` (the final model's) and `.<name>.tmp-*` files
 * (writeFileAtomic). A crash between the two renames
 * of replaceDirAtomic leaves no `checkpoint-<N>` but a complete `.tmp-*` (or the previous
 * `.old-*`): the one that verifies is renamed back into place instead. Returns what was done, one
 * line per entry.
 */
export async function cleanCheckpointLeftovers(outputDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(outputDir);
  } catch {
    return [];
  }
  const done: string[] = [];
  const leftovers = names
    .map((n) => /^checkpoint-(\d+)\.(tmp|old)-.+$/.exec(n))
    .filter((m): m is RegExpExecArray => !!m);
  // per step: the complete new one (tmp) is preferred over the previous one (old)
  leftovers.sort((a, b) => (a[2] === b[2] ? 0 : a[2] === 'tmp' ? -1 : 1));
  const present = new Set(names);
  for (const m of leftovers) {
    const path = join(outputDir, m[0]);
    const target = checkpointDir(outputDir, Number(m[1]));
    if (!present.has(`checkpoint-${m[1]}`)) {
      const ok = await verifyCheckpoint(path).then(
        (x) => !!x,
        () => false,
      );
      if (ok) {
        await rename(path, target);
        present.add(`checkpoint-${m[1]}`);
        done.push(`recovered ${target} from ${m[0]} (a checkpoint write was interrupted between its renames)`);
        continue;
      }
    }
    await rm(path, { recursive: true, force: true });
    done.push(`removed ${path} (left by an interrupted checkpoint write)`);
  }
  for (const n of names)
    if (/^model\.(tmp|old)-\d+-[0-9a-f]+$/.test(n)) {
      // the final model is written again when the run finishes
      await rm(join(outputDir, n), { recursive: true, force: true });
      done.push(`removed ${join(outputDir, n)} (left by an interrupted write of the final model)`);
    }
  for (const n of names)
    if (/^\.(?!lock).+\.tmp-\d+-[0-9a-f]+$/.test(n)) {
      await rm(join(outputDir, n), { force: true });
      done.push(`removed ${join(outputDir, n)} (left by an interrupted write)`);
    }
  return done;
}

/** Removes all but the newest `keep` checkpoints. */
export async function pruneCheckpoints(outputDir: string, keep: number): Promise<void> {
  const names = (await readdir(outputDir)).filter((n) => /^checkpoint-\d+$/.test(n));
  names.sort((a, b) => Number(b.split('-')[1]) - Number(a.split('-')[1]));
  for (const n of names.slice(keep)) await rm(join(outputDir, n), { recursive: true, force: true });
}
