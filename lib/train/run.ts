/**
 * The plumbing every trainer's train() shares: the output folder's run identity and lock,
 * resuming from a verified checkpoint, writing checkpoints (keeping the newest few), the metrics
 * JSONL, progress events with an ETA, and the NaN/Inf guard bookkeeping. A trainer creates one
 * TrainingRun per train() call, calls resume() first and close() when train() ends (finally).
 *
 * With an outputDir, resume():
 *   1. takes the folder's lock (lib/train/run-lock.ts: a second writer gets ERR_RLHF_BUSY);
 *   2. clears what crashed checkpoint writes left (checkpoint-N.tmp-* and .old-* folders);
 *   3. new run (no resumeFrom): refuses a folder holding another run's manifest or checkpoints
 *      unless `overwrite`, which first deletes that run's checkpoints, metrics, final model and
 *      manifest; then writes this run's manifest (run.json) before anything else;
 *      resume: compares the settings and data with the manifest (a difference is an error naming
 *      it unless `allowResumeMismatch`), then loads the newest checkpoint that verifies against its
 *      checksums and belongs to this run, falling back past corrupt ones with a warning; non-finite
 *      weights are refused unless `allowNonFiniteResume`.
 *
 * Skipped updates (non-finite loss or gradients) are each reported three ways: a 'skip' event, a
 * warning line ('log') and a metrics line {event: "skip"}; `maxConsecutiveSkips` in a row stop the
 * run with ERR_RLHF_OUT_OF_RANGE.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdamW } from '../engine/adamw.js';
import type { Model } from '../engine/model.js';
import { RlhfError, ErrorCode } from '../errors.js';
import type { options } from '../validate.js';
import {
  checkpointDir,
  checkpointSteps,
  cleanCheckpointLeftovers,
  findVerifiedCheckpoint,
  joinCheckpointSave,
  pruneCheckpoints,
  restoreCheckpoint,
  saveCheckpoint,
  verifyCheckpoint,
  type CheckpointPart,
  type TrainerState,
} from './checkpoint.js';
import { Eta, type TrainerEmitter } from './events.js';
import { MetricsLog } from './metrics.js';
import { RunLock } from './run-lock.js';
import { currentGroup, type ProcessGroup } from '../distributed/index.js';
import {
  manifestDifferences,
  newManifest,
  readManifest,
  runIdentity,
  writeManifest,
  RUN_MANIFEST,
  type RunIdentitySource,
  type RunManifest,
} from './run-manifest.js';

export interface RunOptions {
  /**
   * Data-parallel ranks (lib/distributed): world rank 0 alone owns the output folder (lock,
   * manifest, metrics, checkpoints); the others restore the checkpoint it chose and take part in the
   * collective parts of a save (a sharded optimizer's state; the shards of a model split over
   * tensor-parallel processes: lib/train/checkpoint.ts). Not part of the run's identity.
   */
  group?: ProcessGroup;
  /** where checkpoints and metrics.jsonl go; no files are written without it */
  outputDir?: string;
  /** a checkpoint directory or 'latest' (newest verified one in outputDir) */
  resumeFrom?: string;
  keepCheckpoints?: number;
  /** a new run may replace the run already in outputDir (deletes its checkpoints, metrics.jsonl, model/ and run.json) */
  overwrite?: boolean;
  /** resume even though the settings or data differ from the run's manifest (the differences are logged) */
  allowResumeMismatch?: boolean;
  /** resume from a checkpoint holding NaN/Inf weights or optimizer moments */
  allowNonFiniteResume?: boolean;
  /** stop with an error after this many updates in a row are skipped as non-finite (default 5; 0: never stop) */
  maxConsecutiveSkips?: number;
}

export const RUN_OPTION_KEYS = [
  'outputDir',
  'resumeFrom',
  'keepCheckpoints',
  'overwrite',
  'allowResumeMismatch',
  'allowNonFiniteResume',
  'maxConsecutiveSkips',
] as const;

/** Reads and validates the {@link RunOptions} of a trainer's options. */
export function readRunOptions(
  fn: string,
  o: ReturnType<typeof options>,
): Required<
  Pick<
    RunOptions,
    'keepCheckpoints' | 'overwrite' | 'allowResumeMismatch' | 'allowNonFiniteResume' | 'maxConsecutiveSkips'
  >
> &
  Pick<RunOptions, 'outputDir' | 'resumeFrom'> {
  const r = {
    outputDir: o.has('outputDir') ? o.string('outputDir') : undefined,
    resumeFrom: o.has('resumeFrom') ? o.string('resumeFrom') : undefined,
    keepCheckpoints: o.int('keepCheckpoints', { min: 1 }, 2),
    overwrite: o.bool('overwrite', false),
    allowResumeMismatch: o.bool('allowResumeMismatch', false),
    allowNonFiniteResume: o.bool('allowNonFiniteResume', false),
    maxConsecutiveSkips: o.int('maxConsecutiveSkips', { min: 0 }, 5),
  };
  if (r.resumeFrom && !r.outputDir) throw new TypeError(`${fn}: options.resumeFrom needs options.outputDir`);
  if (r.resumeFrom && r.overwrite)
    throw new TypeError(
      `${fn}: options.overwrite and options.resumeFrom exclude each other (overwrite starts a new run)`,
    );
  return r;
}

/** What `overwrite` deletes: the entries a run writes in its output folder, and nothing else. */
function isRunEntry(name: string): boolean {
  return name === RUN_MANIFEST || name === 'metrics.jsonl' || name === 'model' || /^checkpoint-\d+($|\.)/.test(name);
}

export class TrainingRun {
  readonly stage: string;
  readonly totalSteps: number;
  metrics?: MetricsLog;
  /** steps whose update was skipped because of non-finite losses or gradients */
  skippedSteps = 0;
  /** updates skipped in a row (reset by an applied update) */
  consecutiveSkips = 0;
  /** this folder's run manifest (after resume(), with an outputDir) */
  manifest?: RunManifest;
  #emitter: TrainerEmitter;
  #o: RunOptions;
  #identity: RunIdentitySource;
  #lock?: RunLock;
  #group: ProcessGroup;
  #eta = new Eta();

  /** `identity`: the options that define the run (default: `opts` itself) and which of them hold data. */
  constructor(
    stage: string,
    emitter: TrainerEmitter,
    totalSteps: number,
    opts: RunOptions,
    identity?: RunIdentitySource,
  ) {
    this.stage = stage;
    this.#emitter = emitter;
    this.totalSteps = totalSteps;
    this.#o = opts;
    this.#group = opts.group ?? currentGroup();
    this.#identity = identity ?? { config: opts as Record<string, unknown> };
    if (opts.resumeFrom && !opts.outputDir) throw new TypeError(`${stage}: options.resumeFrom needs options.outputDir`);
  }

  /**
   * Opens the output folder (lock, manifest, leftovers; see the module comment) and restores the
   * parts from the checkpoint named by resumeFrom; undefined when not resuming (or when resuming a
   * run that had not written a checkpoint yet: it starts over).
   */
  async resume(parts: Record<string, Pick<CheckpointPart, 'model' | 'optimizer'>>): Promise<TrainerState | undefined> {
    const o = this.#o;
    if (!o.outputDir) return undefined;
    // World rank 0 opens the folder and picks the checkpoint; every rank then restores it (a model
    // split over processes restores collectively, so rank 0 must not restore before sharing).
    let dir: string | undefined;
    if (this.#writer) {
      this.#lock = await RunLock.acquire(o.outputDir, this.stage, (m) => this.warn(m));
      try {
        dir = await this.#open(o.outputDir);
      } catch (err) {
        await this.close();
        throw err;
      }
    }
    if (this.#group.worldSize > 1) dir = (await this.#shareString(dir ?? '')) || undefined;
    let state: TrainerState | undefined;
    if (dir) {
      try {
        state = await restoreCheckpoint(dir, parts, { allowNonFinite: o.allowNonFiniteResume, group: this.#group });
        if (state.stage !== this.stage)
          throw new RlhfError(ErrorCode.FORMAT, `${this.stage}: ${dir} is a "${state.stage}" checkpoint`);
      } catch (err) {
        await this.close();
        throw err;
      }
      this.skippedSteps = (state.skippedSteps as number | undefined) ?? 0;
      this.consecutiveSkips = (state.consecutiveSkips as number | undefined) ?? 0;
      if (this.#writer) this.log(`resumed from ${dir} at step ${state.step}`);
    }
    if (this.#writer)
      this.metrics = new MetricsLog(join(o.outputDir, 'metrics.jsonl'), {
        resumeFromStep: state?.step ?? (o.resumeFrom ? 0 : undefined),
      });
    return state;
  }

  /** World rank 0's `value` on every rank of the job (a collective: every rank calls it). */
  async #shareString(value: string): Promise<string> {
    const g = this.#group.worldGroup;
    const bytes = new TextEncoder().encode(value);
    const length = g.broadcast(Int32Array.of(bytes.length))[0];
    const buf = new Uint8Array(length);
    if (g.rank === 0) buf.set(bytes);
    return new TextDecoder().decode(g.broadcast(buf));
  }

  /** World rank 0 alone owns the output folder (with tensor parallelism over processes, data-parallel rank 0 is K processes). */
  get #writer(): boolean {
    return this.#group.worldRank === 0;
  }

  /** The checkpoint to restore (undefined: start afresh); see the module comment. */
  async #open(out: string): Promise<string | undefined> {
    const o = this.#o;
    for (const line of await cleanCheckpointLeftovers(out)) this.warn(line);
    const id = { stage: this.stage, ...(await runIdentity(this.#identity)) };
    const old = await readManifest(out).catch((err: RlhfError) => {
      if (o.resumeFrom || !o.overwrite) throw err;
      return undefined; // an unreadable manifest is replaced by overwrite
    });
    const steps = await checkpointSteps(out);
    if (!o.resumeFrom) {
      if (old || steps.length) {
        const what = [
          old ? `run ${old.runId} (${old.stage}, started ${old.createdAt})` : 'a run without a manifest',
          steps.length ? `checkpoints at step ${steps.slice().reverse().join(', ')}` : 'no checkpoint',
        ].join(' with ');
        if (!o.overwrite)
          throw new RlhfError(
            ErrorCode.INVALID_ARGUMENT,
            `${this.stage}: the output folder ${out} already holds ${what}. Choose: --resume to continue that run, --overwrite to delete it and start this one, or another --output folder (in the API: resumeFrom: 'latest', overwrite: true, or another outputDir)`,
          );
        await this.#clear(out);
        this.warn(`overwrite: deleted the previous ${what} from ${out}`);
      }
      this.manifest = newManifest(this.stage, id);
      await writeManifest(out, this.manifest);
      return undefined;
    }
    if (!old) {
      if (o.resumeFrom === 'latest' && !steps.length)
        throw new RlhfError(ErrorCode.IO, `${this.stage}: no checkpoint to resume from in ${out}`);
      if (steps.length) this.warn(`${out} has no run manifest (written by an older version): adopting it for this run`);
      this.manifest = newManifest(this.stage, id);
      await writeManifest(out, this.manifest);
    } else {
      const diffs = manifestDifferences(old, id);
      if (diffs.length && !o.allowResumeMismatch)
        throw new RlhfError(
          ErrorCode.INVALID_ARGUMENT,
          `${this.stage}: cannot resume run ${old.runId} in ${out}: this run differs from it in ${diffs.join('; ')}. Resume with that run's settings and data, start a new run (--overwrite, or another --output folder), or pass --allow-resume-mismatch (allowResumeMismatch: true) to continue it with these changes`,
        );
      this.manifest = old;
      if (diffs.length) {
        this.warn(`resuming run ${old.runId} with changes: ${diffs.join('; ')}`);
        this.manifest = { ...old, ...id, runId: old.runId, createdAt: old.createdAt };
        await writeManifest(out, this.manifest);
      }
    }
    let dir: string | undefined;
    if (o.resumeFrom === 'latest') {
      dir = await findVerifiedCheckpoint(out, { runId: this.manifest.runId, warn: (m) => this.warn(m) });
      if (!dir) {
        if (steps.length)
          throw new RlhfError(
            ErrorCode.FORMAT,
            `${this.stage}: no usable checkpoint in ${out} (see the warnings above); start over with --overwrite`,
          );
        this.log(`run ${this.manifest.runId} had not written a checkpoint yet: starting it from step 0`);
        return undefined;
      }
    } else {
      dir = o.resumeFrom!;
      const m = await verifyCheckpoint(dir);
      if (!m) this.warn(`${dir} has no checksums (written by an older version): resuming from it unverified`);
    }
    return dir;
  }

  async #clear(out: string): Promise<void> {
    for (const name of await readdir(out))
      if (isRunEntry(name)) await rm(join(out, name), { recursive: true, force: true });
  }

  /** Releases the output folder's lock (idempotent). */
  async close(): Promise<void> {
    const lock = this.#lock;
    this.#lock = undefined;
    await lock?.release();
  }

  async save(step: number, parts: Record<string, CheckpointPart>, state: Record<string, unknown> = {}): Promise<void> {
    const o = this.#o;
    if (!o.outputDir) return;
    const dir = checkpointDir(o.outputDir, step);
    // the gathers (a sharded optimizer's state, the shards of a model split over processes) are
    // collective: every rank takes part, world rank 0 writes
    if (!this.#writer) return joinCheckpointSave(dir, parts, this.#group);
    await saveCheckpoint(
      dir,
      parts,
      { ...state, stage: this.stage, step, skippedSteps: this.skippedSteps, consecutiveSkips: this.consecutiveSkips },
      { runId: this.manifest?.runId, group: this.#group },
    );
    await pruneCheckpoints(o.outputDir, o.keepCheckpoints ?? 2);
    this.#emitter.emit('checkpoint', { stage: this.stage, step, dir });
  }

  async step(step: number, metrics: Record<string, number>, extra: Record<string, number> = {}): Promise<void> {
    this.#eta.tick();
    const m = { ...metrics, skippedSteps: this.skippedSteps };
    this.#emitter.emit('step', {
      stage: this.stage,
      step,
      totalSteps: this.totalSteps,
      etaSeconds: this.#eta.remaining(this.totalSteps - step),
      metrics: m,
      ...extra,
    });
    await this.metrics?.write({ stage: this.stage, step, ...m });
  }

  async evaluation(step: number, metrics: Record<string, number>): Promise<void> {
    this.#emitter.emit('eval', { stage: this.stage, step, metrics });
    await this.metrics?.write({ stage: this.stage, step, ...metrics });
  }

  log(message: string): void {
    this.#emitter.emit('log', { stage: this.stage, message });
  }

  /** A line the user should notice (printed as "warning: ..."). */
  warn(message: string): void {
    this.log(`warning: ${message}`);
  }

  /**
   * Records an update of step `step` skipped for `reason`: a 'skip' event, a warning, a metrics
   * line. When this makes `maxConsecutiveSkips` in a row the run stops.
   * @throws RlhfError ERR_RLHF_OUT_OF_RANGE after maxConsecutiveSkips skips in a row
   */
  async skip(step: number, reason: string): Promise<void> {
    this.skippedSteps++;
    this.consecutiveSkips++;
    const max = this.#o.maxConsecutiveSkips ?? 5;
    this.#emitter.emit('skip', {
      stage: this.stage,
      step,
      reason,
      consecutive: this.consecutiveSkips,
      total: this.skippedSteps,
    });
    this.warn(
      `step ${step}: ${reason}, update skipped (${this.consecutiveSkips} in a row${max > 0 ? ` of at most ${max}` : ''}, ${this.skippedSteps} in all)`,
    );
    await this.metrics?.write({
      stage: this.stage,
      step,
      event: 'skip',
      reason,
      consecutiveSkips: this.consecutiveSkips,
      skippedSteps: this.skippedSteps,
    });
    if (max > 0 && this.consecutiveSkips >= max)
      throw new RlhfError(
        ErrorCode.OUT_OF_RANGE,
        `${this.stage}: stopped at step ${step}: ${this.consecutiveSkips} updates in a row were skipped (non-finite loss or gradients; the last: ${reason}). The learning rate may be too high, or the data or model produce NaN/Inf; lower lr, or raise maxConsecutiveSkips (--max-consecutive-skips, 0 never stops)`,
      );
  }

  /**
   * The NaN/Inf guard around an update: a non-finite `loss` skips AdamW (which itself skips
   * non-finite gradients); the gradients are zeroed either way; a skip is recorded (skip()) as
   * step `step + 1`, an applied update resets the count of skips in a row. `opts.label` names the
   * update in the skip's reason ("<label> update: non-finite loss"); `opts.keepSkipCount`: an
   * applied update leaves the count to the caller (several updates per step, e.g. policy and critic).
   */
  async guardedUpdate(
    step: number,
    loss: number,
    optimizer: AdamW,
    model: Model,
    opts: { label?: string; keepSkipCount?: boolean } = {},
  ): Promise<{ skipped: boolean; gradNorm: number }> {
    const finite = allFinite(loss);
    const r = finite ? await optimizer.step() : { skipped: true, gradNorm: NaN };
    await model.zeroGrad();
    if (r.skipped)
      await this.skip(
        step + 1,
        opts.label
          ? `${opts.label} update: non-finite ${finite ? 'gradients' : 'loss'}`
          : finite
            ? `non-finite gradients (norm ${r.gradNorm})`
            : `non-finite loss (${loss})`,
      );
    else if (!opts.keepSkipCount) this.consecutiveSkips = 0;
    return r;
  }
}

/** True when every value is finite (the NaN/Inf guard for losses before an update). */
export function allFinite(...xs: number[]): boolean {
  return xs.every((x) => Number.isFinite(x));
}
