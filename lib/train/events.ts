/**
 * Progress events every trainer emits (the CLI renders them as progress bars and metrics JSONL):
 *   'step'       one optimizer step: metrics (loss, lr, gradNorm, tokensPerSecond, ...) and an ETA
 *   'eval'       an evaluation: metrics
 *   'checkpoint' a checkpoint was written (dir)
 *   'log'        a line of text worth showing (data stats, warnings; a warning starts with "warning: ")
 *   'skip'       an update skipped because its loss or gradients were not finite (also logged)
 *   'rollout'    RL loops: every sample of an iteration (prompt, response, reward, KL, advantage, length)
 */
import { EventEmitter } from 'node:events';

export interface StepEvent {
  stage: string;
  step: number;
  totalSteps: number;
  epoch?: number;
  etaSeconds: number;
  metrics: Record<string, number>;
}

export interface TrainerEvents {
  step: [StepEvent];
  eval: [{ stage: string; step: number; metrics: Record<string, number> }];
  checkpoint: [{ stage: string; step: number; dir: string }];
  log: [{ stage: string; message: string }];
  /** `consecutive`: skips in a row including this one; `total`: in the whole run */
  skip: [{ stage: string; step: number; reason: string; consecutive: number; total: number }];
  rollout: [RolloutEvent];
}

/** One RL iteration's samples, after scoring (`step` is the iteration just logged by 'step'). */
export interface RolloutEvent {
  stage: string;
  step: number;
  /** responses per prompt (a group: consecutive samples share a prompt) */
  samplesPerPrompt: number;
  samples: Array<{
    prompt: string;
    response: string;
    /** the raw reward r(x, y) */
    reward: number;
    /** KL(π_old ‖ reference) summed over the response's tokens, by the loop's KL estimator */
    kl: number;
    /** mean advantage over the response's tokens */
    advantage: number;
    /** tokens */
    length: number;
  }>;
}

/** EventEmitter with the trainer event names and payload types. */
export class TrainerEmitter extends EventEmitter<TrainerEvents> {}

/** Seconds-remaining estimate from the mean of the recent step durations. */
export class Eta {
  #times: number[] = [];
  #last = performance.now();
  tick(): void {
    const now = performance.now();
    this.#times.push((now - this.#last) / 1000);
    if (this.#times.length > 20) this.#times.shift();
    this.#last = now;
  }
  remaining(stepsLeft: number): number {
    if (!this.#times.length) return 0;
    return (stepsLeft * this.#times.reduce((a, b) => a + b, 0)) / this.#times.length;
  }
}
