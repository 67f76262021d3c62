/** The contract between `rlhf study`'s runner (lib/study/runner.ts) and each study (one file each). */
import { fmt } from '../report/svg.js';
import type { SeedBase, StudySettings } from './setup.js';
import type { JudgeModel } from '../rewards/longreward/index.js';
import { hierarchicalBootstrap, type Estimate } from './stats.js';

/** What a study concludes: one entry of summary.json plus what the report shows. */
export interface StudyOutcome {
  name: string;
  title: string;
  /** the paper's claim, one sentence */
  claim: string;
  /** where the claim comes from */
  source: string;
  /** what `effect` measures, with its unit and the sign the claim predicts */
  effectLabel: string;
  effect: number;
  ci: [number, number];
  /** the 95% interval excludes zero on the side the claim predicts */
  reproduced: boolean;
  seeds: number[];
  /** claim, measured effect, interval, reproduced or not: one line */
  verdict: string;
  table: { columns: string[]; rows: string[][] };
  /** one standalone SVG */
  chart: string;
  notes: string[];
}

/**
 * A judge model a study asks instead of its built-in one, with an identity: runs scored by
 * different judges are cached apart (the identity names the cache entry), and the report names it.
 */
export interface StudyJudge {
  model: JudgeModel;
  /** e.g. "judge-model at http://127.0.0.1:8000/v1": same identity, same cached runs */
  id: string;
}

export interface Study<T> {
  name: string;
  /** needs the per-seed demo base (SFT, pairs, reward model); false for synthetic studies */
  usesBase: boolean;
  /** what one seed contributes (trained and evaluated runs are cached by the helpers in setup.ts) */
  runSeed(ctx: {
    seed: number;
    settings: StudySettings;
    base?: SeedBase;
    cacheDir: string;
    /** one line per finished stage inside a seed (progress) */
    log?: (line: string) => void;
    /** a served judge in place of a study's built-in one (longreward); absent: the built-in judge */
    judge?: StudyJudge;
  }): Promise<T>;
  summarize(perSeed: T[], seeds: number[], settings: StudySettings): StudyOutcome;
}

/** Per seed, per prompt differences a − b. */
export const differences = (a: number[][], b: number[][]): number[][] =>
  a.map((row, s) => row.map((v, i) => v - b[s][i]));

/** mean and 95% CI over seeds and prompts (bootstrap seeded by the study's name: reproducible). */
export function estimate(cells: number[][], name: string): Estimate;
export function estimate<T>(cells: T[][], name: string, statistic: (g: T[][]) => number): Estimate;
export function estimate<T>(cells: T[][], name: string, statistic?: (g: T[][]) => number): Estimate {
  let h = 0;
  for (const ch of name) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
  return hierarchicalBootstrap(cells, statistic, { seed: h });
}

/** "1.23 [0.5, 2.1]" */
export const withCi = (e: Estimate, scale = 1): string =>
  `${fmt(e.mean * scale)} [${fmt(e.ci[0] * scale)}, ${fmt(e.ci[1] * scale)}]`;

/**
 * The outcome's verdict fields: `direction` +1 when the claim predicts a positive effect.
 * Reproduced when the whole interval lies on the predicted side of zero.
 */
export function verdictOf(
  o: { name: string; claim: string; effectLabel: string; seeds: number[]; items: string },
  e: Estimate,
  direction: 1 | -1,
  scale = 1,
): Pick<StudyOutcome, 'effect' | 'ci' | 'reproduced' | 'verdict'> {
  const [lo, hi] = e.ci;
  const reproduced = direction > 0 ? lo > 0 : hi < 0;
  const opposite = direction > 0 ? hi < 0 : lo > 0;
  const status = reproduced
    ? 'reproduced: the 95% interval excludes zero'
    : opposite
      ? 'not reproduced: the 95% interval excludes zero on the other side'
      : 'not reproduced: the 95% interval includes zero';
  return {
    effect: e.mean * scale,
    ci: [lo * scale, hi * scale],
    reproduced,
    verdict: `${o.name}: ${o.claim} Measured ${o.effectLabel} ${withCi(e, scale)} (${o.seeds.length} seeds × ${o.items}); ${status}.`,
  };
}
