/**
 * Experiment tracking beside metrics.jsonl: a trainer's events ('step', 'eval', 'rollout') go to
 * TensorBoard event files and/or an MLflow tracking server, and RL samples can be printed every
 * N iterations. Tags are `<stage>/<metric>` (`<stage>/eval/<metric>` for evaluations); an RL
 * iteration adds histograms `<stage>/rollout/{reward,advantage,kl,length}` and a Markdown table
 * of a few samples under `<stage>/samples`.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { RolloutEvent, TrainerEmitter } from '../train/events.js';
import { MlflowRun } from './mlflow.js';
import { histogramOf, TensorBoardWriter } from './tensorboard.js';

export {
  crc32c,
  decodeEvent,
  encodeEvent,
  histogramOf,
  maskedCrc32c,
  readEventFile,
  readRecords,
  TensorBoardWriter,
  tfRecord,
  type DecodedEvent,
  type DecodedValue,
  type Histogram,
  type SummaryValue,
} from './tensorboard.js';
export { MlflowRun, mlflowKey, type MlflowMetric } from './mlflow.js';

export interface TrackingOptions {
  /** write TensorBoard event files into this folder */
  tensorboardDir?: string;
  /** an MLflow run to log to (MlflowRun.create) */
  mlflow?: MlflowRun;
  /** print `samplesShown` samples every this many RL iterations as 'log' events (0: never) */
  printSamples?: number;
  /** samples per printout and per TensorBoard table (default 3) */
  samplesShown?: number;
  /** append the shown samples of every RL iteration to this JSONL file ({stage, step, samples}; `rlhf report` shows them) */
  samplesFile?: string;
}

export interface Tracking {
  /** where the TensorBoard events go (undefined without tensorboardDir) */
  readonly tensorboardPath?: string;
  /** Stops listening, flushes and closes every sink (MLflow: marks the run FINISHED). */
  close(status?: 'FINISHED' | 'FAILED' | 'KILLED'): Promise<void>;
}

const clip = (s: string, n: number) => (s.length > n ? s.slice(0, n - 1) + '…' : s);
const oneLine = (s: string) => JSON.stringify(s);
const mdCell = (s: string) => s.replace(/\|/g, '\\|').replace(/\r?\n/g, '↵');

/** The samples shown: the first `k` of the batch (one per prompt when groups exist). */
function shown(e: RolloutEvent, k: number): RolloutEvent['samples'] {
  const step = Math.max(1, e.samplesPerPrompt);
  const out: RolloutEvent['samples'] = [];
  for (let i = 0; i < e.samples.length && out.length < k; i += step) out.push(e.samples[i]);
  return out;
}

/** Whether every group of the batch (the whole batch when one sample per prompt) has zero reward variance. */
export function zeroRewardVariance(e: RolloutEvent): boolean {
  const g = e.samplesPerPrompt > 1 ? e.samplesPerPrompt : e.samples.length;
  for (let i = 0; i < e.samples.length; i += g) {
    const r = e.samples.slice(i, i + g).map((s) => s.reward);
    if (r.some((x) => x !== r[0])) return false;
  }
  return e.samples.length > 0;
}

/**
 * Subscribes the sinks to `emitter`. Also, for RL loops, one 'log' warning the first time a whole
 * batch has zero reward variance (no reward gradient), with the count of such iterations at close.
 */
export function attachTracking(emitter: TrainerEmitter, o: TrackingOptions): Tracking {
  const tb = o.tensorboardDir ? new TensorBoardWriter(o.tensorboardDir) : undefined;
  const ml = o.mlflow;
  const k = o.samplesShown ?? 3;
  let flat = 0,
    iterations = 0,
    stage = '';

  const onStep = (e: { stage: string; step: number; metrics: Record<string, number> }) => {
    const values = Object.fromEntries(Object.entries(e.metrics).map(([key, v]) => [`${e.stage}/${key}`, v]));
    tb?.scalars(e.step, values);
    ml?.metrics(e.step, values);
  };
  const onEval = (e: { stage: string; step: number; metrics: Record<string, number> }) =>
    onStep({ ...e, stage: `${e.stage}/eval` });
  const onRollout = (e: RolloutEvent) => {
    iterations++;
    stage = e.stage;
    if (zeroRewardVariance(e) && flat++ === 0)
      emitter.emit('log', {
        stage: e.stage,
        message: `warning: iteration ${e.step}: every ${e.samplesPerPrompt > 1 ? 'group' : 'batch'} has zero reward variance, so the reward gives no gradient (the reward source cannot tell these responses apart; later such iterations are only counted)`,
      });
    const pick = shown(e, k);
    if (o.samplesFile) {
      mkdirSync(dirname(o.samplesFile), { recursive: true });
      appendFileSync(
        o.samplesFile,
        JSON.stringify({
          stage: e.stage,
          step: e.step,
          samples: pick.map(({ prompt, response, reward, kl }) => ({ prompt, response, reward, kl })),
        }) + '\n',
      );
    }
    if (tb) {
      const h = (f: (s: RolloutEvent['samples'][number]) => number) => histogramOf(e.samples.map(f));
      tb.write(e.step, [
        { tag: `${e.stage}/rollout/reward`, histogram: h((s) => s.reward) },
        { tag: `${e.stage}/rollout/advantage`, histogram: h((s) => s.advantage) },
        { tag: `${e.stage}/rollout/kl`, histogram: h((s) => s.kl) },
        { tag: `${e.stage}/rollout/length`, histogram: h((s) => s.length) },
        {
          tag: `${e.stage}/samples`,
          text: [
            '| prompt | response | reward | KL |',
            '|---|---|---:|---:|',
            ...pick.map(
              (s) =>
                `| ${mdCell(clip(s.prompt, 200))} | ${mdCell(clip(s.response, 400))} | ${s.reward.toPrecision(4)} | ${s.kl.toPrecision(3)} |`,
            ),
          ].join('\n'),
        },
      ]);
    }
    if (o.printSamples && e.step % o.printSamples === 0) {
      const lines = pick.map(
        (s) =>
          `  prompt ${oneLine(clip(s.prompt, 80))}\n  → ${oneLine(clip(s.response, 120))}  reward ${s.reward.toPrecision(3)}  KL ${s.kl.toPrecision(3)}`,
      );
      emitter.emit('log', { stage: e.stage, message: `samples @ iteration ${e.step}:\n${lines.join('\n')}` });
    }
  };
  emitter.on('step', onStep);
  emitter.on('eval', onEval);
  emitter.on('rollout', onRollout);
  let closed = false;
  return {
    tensorboardPath: tb?.path,
    async close(status = 'FINISHED') {
      if (closed) return;
      closed = true;
      emitter.off('step', onStep);
      emitter.off('eval', onEval);
      emitter.off('rollout', onRollout);
      if (flat > 1)
        emitter.emit('log', {
          stage,
          message: `warning: ${flat} of ${iterations} iterations had zero reward variance in every group`,
        });
      tb?.close();
      await ml?.close(status);
    },
  };
}
