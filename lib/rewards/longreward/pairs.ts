/**
 * Preference pairs from LongReward scores (docs/algorithms.md §5.6, property 22): one pair per prompt, the best
 * response against the worst by total score, for prompts with enough scored responses.
 */
import type { Prompt } from '../../data/formats.js';
import { checkNumber, checkString, options, typeError } from '../../validate.js';
import type { LongRewardScores } from './types.js';

/** One scored response. `prompt` is optional and copied to the pair (the first one seen per id). */
export interface ScoredResponse {
  promptId: string;
  response: string;
  scores: Pick<LongRewardScores, 'total'> & Partial<LongRewardScores>;
  prompt?: Prompt;
}

/**
 * A pair, compatible with `PreferenceRecord` when `prompt` is present. `margin` is the difference
 * of the two `total`s (0..40 scale; divide by 4 for the average scale).
 */
export interface LongRewardPair {
  promptId: string;
  prompt?: Prompt;
  chosen: string;
  rejected: string;
  margin: number;
}

/** Options of {@link buildPairs}. */
export interface BuildPairsOptions {
  /** Prompts with fewer scored responses give no pair. Default 5 (the official code), at least 2. */
  minResponses?: number;
  /**
   * Skip prompts whose best and worst totals are equal (no preference signal). Default false: the
   * official code keeps them.
   */
  dropTies?: boolean;
}

/**
 * Groups `scored` by `promptId` (pairs come out in order of each id's first appearance), skips
 * groups with fewer than `minResponses` responses, and pairs the highest `total` (chosen) with the
 * lowest (rejected). Equal totals are resolved as the official stable descending sort does: the
 * chosen response is the FIRST of the maximal ones, the rejected the LAST of the minimal ones, so a
 * prompt whose responses all tie still pairs two different responses. Ranking by `total` is ranking
 * by `average` (= total / 4), so either gives the same pairs.
 */
export function buildPairs(scored: readonly ScoredResponse[], options_?: BuildPairsOptions): LongRewardPair[] {
  const fn = 'buildPairs';
  if (!Array.isArray(scored)) throw typeError(fn, 'scored', 'an array of {promptId, response, scores}', scored);
  const o = options(fn, 'options', options_);
  o.known(['minResponses', 'dropTies']);
  const minResponses = o.int('minResponses', { min: 2 }, 5);
  const dropTies = o.bool('dropTies', false);

  const groups = new Map<string, ScoredResponse[]>();
  scored.forEach((item, i) => {
    if (item === null || typeof item !== 'object')
      throw typeError(fn, `scored[${i}]`, 'an object {promptId, response, scores}', item);
    checkString(fn, `scored[${i}].promptId`, item.promptId, false);
    checkString(fn, `scored[${i}].response`, item.response, false);
    if (item.scores === null || typeof item.scores !== 'object')
      throw typeError(fn, `scored[${i}].scores`, 'an object with a total', item.scores);
    checkNumber(fn, `scored[${i}].scores.total`, item.scores.total);
    const group = groups.get(item.promptId);
    if (group) group.push(item);
    else groups.set(item.promptId, [item]);
  });

  const pairs: LongRewardPair[] = [];
  for (const [promptId, group] of groups) {
    if (group.length < minResponses) continue;
    let best = group[0];
    let worst = group[0];
    for (const r of group) {
      if (r.scores.total > best.scores.total) best = r; // strict: the first maximal one wins
      if (r.scores.total <= worst.scores.total) worst = r; // non-strict: the last minimal one loses
    }
    const margin = best.scores.total - worst.scores.total;
    if (dropTies && margin === 0) continue;
    const prompt = group.find((r) => r.prompt !== undefined)?.prompt;
    const pair: LongRewardPair = { promptId, chosen: best.response, rejected: worst.response, margin };
    if (prompt !== undefined) pair.prompt = prompt;
    pairs.push(pair);
  }
  return pairs;
}
