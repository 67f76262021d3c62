/**
 * Learning-rate schedules: linear warmup then cosine decay to a floor, or constant.
 *
 *   lr(s) = peak · s / warmup                                            s < warmup
 *   lr(s) = floor + (peak − floor) · ½ (1 + cos(π · (s − warmup) / (total − warmup)))   otherwise
 * `s` counts optimizer steps from 0 (the lr of the first update is lr(0)). Past `total`: floor.
 */
import { options } from '../validate.js';

export interface ScheduleOptions {
  kind?: 'cosine' | 'constant' | 'linear';
  peak: number;
  warmupSteps?: number;
  totalSteps: number;
  /** final lr as a fraction of the peak (default 0.1) */
  minRatio?: number;
}

export type Schedule = (step: number) => number;

export function makeSchedule(opts: ScheduleOptions): Schedule {
  const o = options('makeSchedule', 'options', opts);
  o.known(['kind', 'peak', 'warmupSteps', 'totalSteps', 'minRatio']);
  const kind = o.oneOf('kind', ['cosine', 'constant', 'linear'] as const, 'cosine');
  const peak = o.number('peak', { min: 0 });
  const total = o.int('totalSteps', { min: 1 });
  const warmup = o.int('warmupSteps', { min: 0, max: total }, 0);
  const floor = peak * o.number('minRatio', { min: 0, max: 1 }, 0.1);
  return (step: number) => {
    // warmup starts at peak/warmup (step 0 still moves the weights)
    if (step < warmup) return (peak * (step + 1)) / warmup;
    if (kind === 'constant') return peak;
    const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
    if (kind === 'linear') return floor + (peak - floor) * (1 - progress);
    return floor + (peak - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}

/**
 * A training loop's length and learning rate: `maxSteps`, or `epochs` of
 * ceil(microBatchesPerEpoch / gradAccum) optimizer steps; warmup capped at the total.
 */
export function loopSchedule(
  o: { maxSteps?: number; epochs: number; gradAccum: number; lr: number; warmupSteps: number; minLrRatio: number },
  microBatchesPerEpoch: number,
): { totalSteps: number; schedule: Schedule } {
  const totalSteps = o.maxSteps ?? Math.ceil(microBatchesPerEpoch / o.gradAccum) * o.epochs;
  return {
    totalSteps,
    schedule: makeSchedule({
      peak: o.lr,
      warmupSteps: Math.min(o.warmupSteps, totalSteps),
      totalSteps,
      minRatio: o.minLrRatio,
    }),
  };
}
