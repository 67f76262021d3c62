/**
 * The plumbing every trainer's train() shares: resuming from a checkpoint, writing checkpoints
 * (keeping the newest few), the metrics JSONL, progress events with an ETA, and the NaN/Inf guard
 * bookkeeping. A trainer creates one TrainingRun per train() call.
 */
import { join } from 'node:path';
import type { AdamW } from '../engine/adamw.js';
import type { Model } from '../engine/model.js';
import { RlhfError, ErrorCode } from '../errors.js';
import { checkpointDir, findLatestCheckpoint, pruneCheckpoints, restoreCheckpoint, saveCheckpoint, type CheckpointPart, type TrainerState } from './checkpoint.js';
import { Eta, type TrainerEmitter } from './events.js';
import { MetricsLog } from './metrics.js';

export interface RunOptions {
  /** where checkpoints and metrics.jsonl go; no files are written without it */
  outputDir?: string;
  /** a checkpoint directory or 'latest' (newest in outputDir) */
  resumeFrom?: string;
  keepCheckpoints?: number;
}

export class TrainingRun {
  readonly stage: string;
  readonly totalSteps: number;
  metrics?: MetricsLog;
  /** steps whose update was skipped because of non-finite losses or gradients */
  skippedSteps = 0;
  #emitter: TrainerEmitter;
  #o: RunOptions;
  #eta = new Eta();

  constructor(stage: string, emitter: TrainerEmitter, totalSteps: number, opts: RunOptions) {
    this.stage = stage;
    this.#emitter = emitter;
    this.totalSteps = totalSteps;
    this.#o = opts;
    if (opts.resumeFrom && !opts.outputDir) throw new TypeError(`${stage}: options.resumeFrom needs options.outputDir`);
  }

  /** Restores the parts from the checkpoint named by resumeFrom; undefined when not resuming. */
  async resume(parts: Record<string, Pick<CheckpointPart, 'model' | 'optimizer'>>): Promise<TrainerState | undefined> {
    const o = this.#o;
    let state: TrainerState | undefined;
    if (o.resumeFrom) {
      const dir = o.resumeFrom === 'latest' ? await findLatestCheckpoint(o.outputDir!) : o.resumeFrom;
      if (!dir) throw new RlhfError(ErrorCode.IO, `${this.stage}: no checkpoint to resume from in ${o.outputDir}`);
      state = await restoreCheckpoint(dir, parts);
      if (state.stage !== this.stage) throw new RlhfError(ErrorCode.FORMAT, `${this.stage}: ${dir} is a "${state.stage}" checkpoint`);
      this.skippedSteps = (state.skippedSteps as number | undefined) ?? 0;
      this.log(`resumed from ${dir} at step ${state.step}`);
    }
    if (o.outputDir) this.metrics = new MetricsLog(join(o.outputDir, 'metrics.jsonl'), { resumeFromStep: state?.step });
    return state;
  }

  async save(step: number, parts: Record<string, CheckpointPart>, state: Record<string, unknown> = {}): Promise<void> {
    const o = this.#o;
    if (!o.outputDir) return;
    const dir = checkpointDir(o.outputDir, step);
    await saveCheckpoint(dir, parts, { ...state, stage: this.stage, step, skippedSteps: this.skippedSteps });
    await pruneCheckpoints(o.outputDir, o.keepCheckpoints ?? 2);
    this.#emitter.emit('checkpoint', { stage: this.stage, step, dir });
  }

  async step(step: number, metrics: Record<string, number>, extra: Record<string, number> = {}): Promise<void> {
    this.#eta.tick();
    const m = { ...metrics, skippedSteps: this.skippedSteps };
    this.#emitter.emit('step', { stage: this.stage, step, totalSteps: this.totalSteps, etaSeconds: this.#eta.remaining(this.totalSteps - step), metrics: m, ...extra });
    await this.metrics?.write({ stage: this.stage, step, ...m });
  }

  async evaluation(step: number, metrics: Record<string, number>): Promise<void> {
    this.#emitter.emit('eval', { stage: this.stage, step, metrics });
    await this.metrics?.write({ stage: this.stage, step, ...metrics });
  }

  log(message: string): void {
    this.#emitter.emit('log', { stage: this.stage, message });
  }

  /**
   * The NaN/Inf guard around an update: a non-finite `loss` skips AdamW (which itself skips
   * non-finite gradients); the gradients are zeroed either way; a skip is counted and logged as
   * step `step + 1`.
   */
  async guardedUpdate(step: number, loss: number, optimizer: AdamW, model: Model): Promise<{ skipped: boolean; gradNorm: number }> {
    const r = allFinite(loss) ? await optimizer.step() : { skipped: true, gradNorm: NaN };
    await model.zeroGrad();
    if (r.skipped) {
      this.skippedSteps++;
      this.log(`step ${step + 1}: non-finite loss or gradients, update skipped`);
    }
    return r;
  }
}

/** True when every value is finite (the NaN/Inf guard for losses before an update). */
export function allFinite(...xs: number[]): boolean {
  return xs.every((x) => Number.isFinite(x));
}
