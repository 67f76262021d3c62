/**
 * Trainer checkpoints: everything a run needs to continue exactly where it stopped.
 *
 *   <outputDir>/checkpoint-<step>/
 *     <part>/            one Hugging Face model directory per trained model (policy, critic, ...)
 *       config.json, model.safetensors, tokenizer files
 *       optimizer.safetensors   AdamW moments exp_avg, exp_avg_sq (F32); step and options in metadata
 *     trainer_state.json  step, epoch, data position, seeds, trainer options (written last)
 *
 * The directory is filled under a temporary name and renamed into place (replaceDirAtomic), so a
 * crash leaves the previous checkpoint and never a half-written one. Weights are stored F32, so
 * restoring is bit-exact.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { RlhfError, ErrorCode } from '../errors.js';
import type { AdamW } from '../engine/adamw.js';
import { replaceDirAtomic, writeFileAtomic } from '../engine/atomic.js';
import type { Model } from '../engine/model.js';
import { readSafetensorsHeader, readTensorF32, writeSafetensors } from '../engine/safetensors.js';
import type { Tokenizer } from '../tokenizer/index.js';

export const CHECKPOINT_VERSION = 1;

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

export async function saveCheckpoint(dir: string, parts: Record<string, CheckpointPart>, state: Omit<TrainerState, 'version'>): Promise<void> {
  await replaceDirAtomic(dir, async (tmp) => {
    for (const [name, part] of Object.entries(parts)) {
      const sub = join(tmp, name);
      await part.model.save(sub, { extraFiles: async (d) => part.tokenizer?.save(d) });
      if (part.optimizer) {
        const s = await part.optimizer.saveState();
        await writeSafetensors(
          join(sub, 'optimizer.safetensors'),
          [
            { name: 'exp_avg', shape: [s.m.length], data: s.m },
            { name: 'exp_avg_sq', shape: [s.v.length], data: s.v },
          ],
          { step: String(s.step), options: JSON.stringify(s.options), format: 'rlhf-adamw' },
        );
      }
    }
    await writeFileAtomic(join(tmp, 'trainer_state.json'), JSON.stringify({ version: CHECKPOINT_VERSION, ...state }, null, 2) + '\n');
  });
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
    throw new RlhfError(ErrorCode.FORMAT, `${path}: not a version-${CHECKPOINT_VERSION} trainer state (version ${JSON.stringify(state.version)})`);
  return state;
}

/** Loads the weights (and optimizer moments) of each part into the given live objects. */
export async function restoreCheckpoint(dir: string, parts: Record<string, { model: Model; optimizer?: AdamW }>): Promise<TrainerState> {
  const state = await readTrainerState(dir);
  for (const [name, part] of Object.entries(parts)) {
    const sub = join(dir, name);
    await part.model.loadWeights(sub);
    if (part.optimizer) {
      const h = await readSafetensorsHeader(join(sub, 'optimizer.safetensors'));
      const step = Number(h.metadata.step);
      if (!Number.isInteger(step) || step < 0) throw new RlhfError(ErrorCode.FORMAT, `${h.path}: metadata.step must be an integer, got ${h.metadata.step}`);
      const options = JSON.parse(h.metadata.options ?? '{}');
      await part.optimizer.loadState({ step, m: await readTensorF32(h, 'exp_avg'), v: await readTensorF32(h, 'exp_avg_sq'), options });
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
  const steps = names.map((n) => /^checkpoint-(\d+)$/.exec(n)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1])).sort((a, b) => b - a);
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

/** Removes all but the newest `keep` checkpoints. */
export async function pruneCheckpoints(outputDir: string, keep: number): Promise<void> {
  const names = (await readdir(outputDir)).filter((n) => /^checkpoint-\d+$/.test(n));
  names.sort((a, b) => Number(b.split('-')[1]) - Number(a.split('-')[1]));
  for (const n of names.slice(keep)) await rm(join(outputDir, n), { recursive: true, force: true });
}
