/**
 * Training curves from the metrics JSONL: for each stage, one line chart per group of metric keys
 * that the stage's records actually contain (train and eval variants on the same axes).
 */
import { svgLineChart } from './charts.js';
import type { MetricsByStage, Point } from './types.js';

const STAGE_LABELS: Record<string, string> = {
  sft: 'SFT', rm: 'Reward model', reward: 'Reward model', ppo: 'PPO', grpo: 'GRPO', group: 'GRPO',
  dpo: 'DPO', exo: 'EXO', preference: 'Preference optimisation', eval: 'Evaluation',
};
const STAGE_ORDER = ['sft', 'rm', 'reward', 'ppo', 'grpo', 'group', 'dpo', 'exo', 'preference'];

/** Charts per stage, in this order; a chart is drawn when any of its keys has a number. */
const GROUPS: Array<{ title: string; keys: string[] }> = [
  { title: 'Loss', keys: ['loss', 'evalLoss'] },
  { title: 'Accuracy', keys: ['accuracy', 'evalAccuracy', 'correctnessAccuracy'] },
  { title: 'Reward', keys: ['rewardMean', 'shapedRewardMean'] },
  { title: 'KL to the reference', keys: ['kl', 'evalKl'] },
  { title: 'Policy loss', keys: ['policyLoss'] },
  { title: 'Value loss', keys: ['valueLoss'] },
  { title: 'Margin', keys: ['margin', 'evalMargin', 'meanMargin'] },
];

const SERIES_NAMES: Record<string, string> = {
  loss: 'train loss', evalLoss: 'eval loss', accuracy: 'train accuracy', evalAccuracy: 'eval accuracy',
  correctnessAccuracy: 'correctness accuracy', rewardMean: 'reward mean', shapedRewardMean: 'shaped reward (− KL penalty)',
  kl: 'KL per response', evalKl: 'eval KL', policyLoss: 'policy loss', valueLoss: 'value loss',
  margin: 'train margin', evalMargin: 'eval margin', meanMargin: 'train margin',
};

export function stageLabel(stage: string): string {
  return STAGE_LABELS[stage] ?? stage;
}

/** Known stages first (pipeline order), then the rest alphabetically. */
export function orderStages(names: string[]): string[] {
  const rank = (s: string) => (STAGE_ORDER.includes(s) ? STAGE_ORDER.indexOf(s) : STAGE_ORDER.length);
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function seriesOf(rows: Array<Record<string, number | string>>, key: string): Point[] {
  const pts: Point[] = [];
  rows.forEach((r, i) => {
    const v = r[key];
    if (typeof v === 'number') pts.push([typeof r.step === 'number' ? r.step : i + 1, v]);
  });
  return pts;
}

export interface StageCharts {
  stage: string;
  label: string;
  charts: string[];
}

/** The charts of every stage with at least one; stages without known metric keys are left out. */
export function trainingCharts(metrics: MetricsByStage, maxPoints = 300): StageCharts[] {
  const out: StageCharts[] = [];
  for (const stage of orderStages(Object.keys(metrics))) {
    const rows = Array.isArray(metrics[stage]) ? metrics[stage].filter((r) => r !== null && typeof r === 'object') : [];
    const label = stageLabel(stage);
    const iterations = rows.some((r) => typeof r.rewardMean === 'number');
    const charts: string[] = [];
    for (const g of GROUPS) {
      const series = g.keys
        .map((k) => ({ name: SERIES_NAMES[k] ?? k, points: seriesOf(rows, k) }))
        .filter((s) => s.points.length > 0);
      if (!series.length) continue;
      charts.push(svgLineChart({ title: `${label} · ${g.title}`, xLabel: iterations ? 'iteration' : 'step', yLabel: g.title, series, width: 460, height: 280, maxPoints }));
    }
    if (charts.length) out.push({ stage, label, charts });
  }
  return out;
}
