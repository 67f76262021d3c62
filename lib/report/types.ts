/**
 * Inputs of the run report (`rlhf demo` and any training run): the evaluation summary and the
 * metrics JSONL grouped by stage.
 */

/** One aligned policy evaluated against the SFT policy (pairwise, judged by the gold function). */
export interface PolicySummary {
  /** fraction of prompts where the policy's response scored higher than SFT's; ties count half */
  winRate: number;
  tieRate: number;
  lossRate: number;
  /** mean gold score of the policy's responses */
  goldScore: number;
  /** KL(policy ‖ SFT) per response */
  kl: number;
  /** mean response length, characters */
  length: number;
}

export interface DemoSummary {
  rm: { accuracy: number; [k: string]: number };
  sft: { goldScore: number; [k: string]: number };
  /** keys like ppo, dpo, exo, grpo */
  policies: Record<string, PolicySummary>;
  /** total wall time of the run */
  seconds: number;
  // optional context shown in the report
  task?: { description: string; noise: number };
  /** one summary line per stage */
  stages?: Array<{ name: string; seconds: number; line: string }>;
  /** example generations per policy (the SFT policy may be one of the keys) */
  samples?: Array<{ prompt: string; responses: Record<string, { text: string; gold: number; rm?: number }> }>;
  /** per RL policy and iteration: mean reward-model score (proxy) and gold score of its rollouts */
  proxyGold?: Record<string, Array<{ step: number; proxy: number; gold: number; kl?: number }>>;
  settings?: Record<string, string | number | boolean>;
}

/** Metrics JSONL records grouped by their `stage`; `null` values (NaN written by JSON.stringify) read as NaN. */
export type MetricsByStage = Record<string, Array<Record<string, number | string>>>;

export type Point = [x: number, y: number];

export interface LineSeries {
  name: string;
  /** NaN / non-finite y values (and missing points) break the line into separate segments */
  points: Point[];
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  /** default 640 */
  width?: number;
  /** default 320 */
  height?: number;
  /** series longer than this are averaged into this many buckets (default 300) */
  maxPoints?: number;
  /** EMA weight in [0, 1): series of more than 10 points drawn smoothed, the raw values faint (default 0: raw only) */
  smooth?: number;
  /** lines of text under the plot (estimator names, caveats) */
  notes?: string[];
}

export interface WinTieLossOptions {
  title: string;
  /** fractions in [0, 1]; win + tie + loss = 1 (NaN: n/a) */
  rows: Array<{ label: string; win: number; tie: number; loss: number }>;
  width?: number;
}

export interface Bar {
  label: string;
  value: number;
  /** half-width of an error bar (value ± error) */
  error?: number;
  /** CSS colour; default: the palette in order */
  color?: string;
}

export interface BarChartOptions {
  title: string;
  yLabel: string;
  bars: Bar[];
  yMin?: number;
  yMax?: number;
  /** a dashed horizontal line, e.g. {value: 50, label: 'parity'} */
  referenceLine?: { value: number; label: string };
  /** how bar values are printed above the bars (default: 3 significant digits) */
  format?: (v: number) => string;
  width?: number;
  height?: number;
}

export interface ScatterPoint {
  label: string;
  x: number;
  y: number;
  /** CSS colour; default: the palette in order */
  color?: string;
}

export interface ScatterOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  points: ScatterPoint[];
  width?: number;
  height?: number;
}

export interface RenderOptions {
  /** page title (default "RLHF run report") */
  title?: string;
  /** shown in the footer (default: now) */
  generatedAt?: Date | string;
  /** the most example prompts shown (default 8) */
  maxSamples?: number;
  /** points per training curve before bucket-averaging (default 300) */
  maxPoints?: number;
}

/** RL samples a run logged (samples.jsonl: one line per logged iteration). */
export interface RunSamples {
  stage: string;
  step: number;
  samples: Array<{ prompt: string; response: string; reward: number; kl: number }>;
}
