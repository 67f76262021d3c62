/**
 * Training curves from the metrics JSONL: for each stage, one line chart per group of metric keys
 * that the stage's records actually contain (train and eval variants on the same axes). Per-step
 * curves are smoothed (EMA, the raw series faint). Charts explain what could mislead: the KL chart
 * names its estimator and says when values below zero are estimation noise or when KL is measured
 * but not in the loss; PPO's clip fraction and approx-KL say why they are flat after a single
 * on-policy pass. With several runs, each chart overlays the runs (one series per run and key).
 */
import { NOTE_LINE, NOTE_SIZE, svgLineChart, wrapText } from './charts.js';
import type { MetricsByStage, Point } from './types.js';

const STAGE_LABELS: Record<string, string> = {
  sft: 'SFT',
  rm: 'Reward model',
  reward: 'Reward model',
  prm: 'Process reward model',
  ppo: 'PPO',
  grpo: 'GRPO',
  group: 'GRPO',
  dpo: 'DPO',
  exo: 'EXO',
  preference: 'Preference optimisation',
  eval: 'Evaluation',
};
const STAGE_ORDER = ['sft', 'rm', 'reward', 'prm', 'ppo', 'grpo', 'group', 'dpo', 'exo', 'preference'];

/** Charts per stage, in this order; a chart is drawn when any of its keys has a number. */
const GROUPS: Array<{ title: string; keys: string[] }> = [
  { title: 'Loss', keys: ['loss', 'evalLoss'] },
  { title: 'Accuracy', keys: ['accuracy', 'evalAccuracy', 'correctnessAccuracy'] },
  { title: 'Reward', keys: ['rewardMean', 'shapedRewardMean'] },
  { title: 'KL to the reference', keys: ['kl', 'evalKl'] },
  { title: 'Policy loss', keys: ['policyLoss'] },
  { title: 'Clip fraction and approx. KL', keys: ['clipFraction', 'approxKl'] },
  { title: 'Value loss', keys: ['valueLoss'] },
  { title: 'Margin', keys: ['margin', 'evalMargin', 'meanMargin'] },
];

const SERIES_NAMES: Record<string, string> = {
  loss: 'train loss',
  evalLoss: 'eval loss',
  accuracy: 'train accuracy',
  evalAccuracy: 'eval accuracy',
  correctnessAccuracy: 'correctness accuracy',
  rewardMean: 'reward mean',
  shapedRewardMean: 'shaped reward (− KL penalty)',
  kl: 'KL per response',
  evalKl: 'eval KL',
  policyLoss: 'policy loss',
  valueLoss: 'value loss',
  clipFraction: 'clip fraction',
  approxKl: 'approx. KL (old ‖ new)',
  margin: 'train margin',
  evalMargin: 'eval margin',
  meanMargin: 'train margin',
};

const ESTIMATORS: Record<number, string> = {
  1: 'k1 = Σ (log π − log π_ref): unbiased, a single sample can be negative',
  2: 'k2 = Σ ½(log π − log π_ref)²: biased, ≥ 0',
  3: 'k3 = Σ (r − 1 − log r), r = π_ref/π: unbiased, ≥ 0',
};

/** The EMA weight of the training curves (TensorBoard's default). */
export const SMOOTHING = 0.6;

export function stageLabel(stage: string): string {
  return STAGE_LABELS[stage] ?? stage;
}

/** Known stages first (pipeline order), then the rest alphabetically. */
export function orderStages(names: string[]): string[] {
  const rank = (s: string) => (STAGE_ORDER.includes(s) ? STAGE_ORDER.indexOf(s) : STAGE_ORDER.length);
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

type Row = Record<string, number | string>;

function seriesOf(rows: Row[], key: string): Point[] {
  const pts: Point[] = [];
  rows.forEach((r, i) => {
    const v = r[key];
    if (typeof v === 'number') pts.push([typeof r.step === 'number' ? r.step : i + 1, v]);
  });
  return pts;
}

const numbers = (rows: Row[], key: string) =>
  rows.map((r) => r[key]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));

/** The notes under a chart: what the reader needs to read it right. */
export function chartNotes(title: string, rows: Row[]): string[] {
  const notes: string[] = [];
  if (title === 'KL to the reference') {
    const est = [...new Set(numbers(rows, 'klEstimator'))];
    notes.push(
      est.length === 1 && ESTIMATORS[est[0]]
        ? `estimator ${ESTIMATORS[est[0]]}`
        : est.length > 1
          ? `estimators ${est.map((e) => `k${e}`).join(', ')}`
          : 'estimator not recorded',
    );
    if (numbers(rows, 'kl').some((v) => v < 0))
      notes.push('values below 0 are sampling noise of the estimate (true KL ≥ 0), shown as measured');
    const coef = numbers(rows, 'klCoef');
    if (coef.length && coef.every((v) => v === 0))
      notes.push('measured only: KL is not in the loss or reward here (β = 0)');
  }
  const clip = numbers(rows, 'clipFraction'),
    approx = numbers(rows, 'approxKl');
  const onePass = clip.length > 0 && clip.every((v) => v === 0) && approx.every((v) => Math.abs(v) < 1e-6);
  if (title === 'Clip fraction and approx. KL' && onePass)
    notes.push(
      'flat by construction: one on-policy pass per batch (1 epoch, 1 minibatch) keeps the ratio π/π_old at 1',
    );
  if (title === 'Policy loss' && onePass && numbers(rows, 'policyLoss').every((v) => Math.abs(v) < 1e-6))
    notes.push(
      '≈ 0 by construction: at ratio 1 (one on-policy pass) the loss is −mean(whitened advantage); its gradient is not 0',
    );
  return notes;
}

export interface StageCharts {
  stage: string;
  label: string;
  charts: string[];
}

/** Named runs' metrics: one series per run and key when there are several. */
export interface RunMetrics {
  name: string;
  metrics: MetricsByStage;
}

/** The charts of every stage with at least one; stages without known metric keys are left out. */
export function trainingCharts(metrics: MetricsByStage | RunMetrics[], maxPoints = 300): StageCharts[] {
  const runs: RunMetrics[] = Array.isArray(metrics) ? metrics : [{ name: '', metrics }];
  const rowsOf = (run: RunMetrics, stage: string): Row[] =>
    Array.isArray(run.metrics[stage]) ? run.metrics[stage].filter((r) => r !== null && typeof r === 'object') : [];
  const stages = orderStages([...new Set(runs.flatMap((r) => Object.keys(r.metrics ?? {})))]);
  const out: StageCharts[] = [];
  for (const stage of stages) {
    const label = stageLabel(stage);
    const all = runs.map((r) => ({ run: r.name, rows: rowsOf(r, stage) }));
    const iterations = all.some((a) => a.rows.some((r) => typeof r.rewardMean === 'number'));
    const charts: string[] = [];
    for (const g of GROUPS) {
      const series = all
        .flatMap((a) =>
          g.keys.map((k) => ({
            name: a.run
              ? g.keys.filter((key) => all.some((b) => b.rows.some((r) => key in r))).length > 1
                ? `${a.run} · ${SERIES_NAMES[k] ?? k}`
                : a.run
              : (SERIES_NAMES[k] ?? k),
            points: seriesOf(a.rows, k),
          })),
        )
        .filter((s) => s.points.length > 0);
      if (!series.length) continue;
      const notes = all.flatMap((a) =>
        chartNotes(g.title, a.rows).map((n) => (a.run && runs.length > 1 ? `${a.run}: ${n}` : n)),
      );
      const unique = [...new Set(notes)];
      const noteLines = unique.flatMap((n) => wrapText(n, 460 - 24, NOTE_SIZE)).length; // as svgLineChart wraps them
      charts.push(
        svgLineChart({
          title: `${label} · ${g.title}`,
          xLabel: iterations ? 'iteration' : 'step',
          yLabel: g.title,
          series,
          width: 460,
          height: 280 + NOTE_LINE * noteLines,
          maxPoints,
          smooth: SMOOTHING,
          notes: unique,
        }),
      );
    }
    if (charts.length) out.push({ stage, label, charts });
  }
  return out;
}
