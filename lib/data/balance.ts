/**
 * Bucket-based length balancing of preference pairs (ChatGLM-RLHF; docs/algorithms.md §2.2, property 16).
 * Reward models learn "longer is better" when chosen responses are longer more often than not. For
 * each pair let d = len(chosen) − len(rejected); pairs are grouped by |d| into buckets
 * [e_0, e_1), [e_1, e_2), ... and in every bucket the larger of W = {d > 0} ("chosen longer") and
 * S = {d < 0} ("chosen shorter") is cut to a random subset of size min(|W|, |S|). Equal-length
 * pairs (d = 0) are all kept. Afterwards, within every band of length difference, length alone
 * predicts the label no better than chance: "the longer response is chosen" is right on exactly
 * half of the kept non-equal pairs.
 *
 * The bucket edges of the paper are not published; the default [0, 50, 100, 200, 400, 800, ∞)
 * tokens is the spec's example. The subset is seeded: the same (lengths, edges, seed) always keep
 * the same pairs.
 */
import { checkInt, checkNumber, checkObject, options, rangeError, typeError } from '../validate.js';
import { hashSeed, mulberry32, shuffleInPlace } from './shuffle.js';

/** Default bucket edges on |len(chosen) − len(rejected)|, in tokens. */
export const DEFAULT_BALANCE_EDGES: readonly number[] = Object.freeze([0, 50, 100, 200, 400, 800, Infinity]);

/** What {@link balanceByLength} did, bucket by bucket. */
export interface BalanceReport {
  /** the bucket edges used: bucket b holds |d| in [edges[b], edges[b+1]) */
  edges: number[];
  buckets: Array<{
    range: [number, number];
    chosenLongerBefore: number;
    chosenShorterBefore: number;
    equalBefore: number;
    chosenLongerAfter: number;
    chosenShorterAfter: number;
    equalAfter: number;
  }>;
  keptPairs: number;
  totalPairs: number;
}

/** Random-stream id for the subset draw (data order uses stream 0, see shuffle.ts). */
const BALANCE_STREAM = 0x62616c;

function readEdges(fn: string, value: unknown): number[] {
  if (value === undefined) return [...DEFAULT_BALANCE_EDGES];
  const expectation = 'an increasing list of numbers starting at 0 and ending at Infinity';
  if (!Array.isArray(value) || value.length < 2) throw typeError(fn, 'options.edges', expectation, value);
  value.forEach((e, i) => checkNumber(fn, `options.edges[${i}]`, e, { min: 0, allowInfinity: true }));
  const edges = value as number[];
  if (edges[0] !== 0 || edges[edges.length - 1] !== Infinity || edges.some((e, i) => i > 0 && e <= edges[i - 1]))
    throw rangeError(fn, 'options.edges', expectation, `[${edges.join(', ')}]`);
  return [...edges];
}

/**
 * Balances preference pairs by length difference. `lengths[i]` are the token lengths of pair i's
 * chosen and rejected responses (non-negative numbers). Returns the indices of the kept pairs in
 * ascending (original) order and a per-bucket report. Guarantee (property 16): in every bucket,
 * `chosenLongerAfter === chosenShorterAfter`, and `equalAfter === equalBefore`.
 *
 * @param opts.edges bucket edges: strictly increasing, first 0, last Infinity (default
 *   {@link DEFAULT_BALANCE_EDGES})
 * @param opts.seed seed of the random subsets, an integer >= 0 (default 0)
 */
export function balanceByLength(
  lengths: Array<{ chosen: number; rejected: number }>,
  opts?: { edges?: number[]; seed?: number },
): { kept: number[]; report: BalanceReport } {
  const fn = 'balanceByLength';
  if (!Array.isArray(lengths)) throw typeError(fn, 'lengths', 'an array of {chosen, rejected} lengths', lengths);
  const o = options(fn, 'options', opts);
  o.known(['edges', 'seed']);
  const edges = readEdges(fn, o.obj.edges);
  const seed = o.int('seed', { min: 0, max: Number.MAX_SAFE_INTEGER }, 0);

  const B = edges.length - 1;
  const longer: number[][] = Array.from({ length: B }, () => []);
  const shorter: number[][] = Array.from({ length: B }, () => []);
  const equal: number[][] = Array.from({ length: B }, () => []);
  lengths.forEach((l, i) => {
    const p = checkObject(fn, `lengths[${i}]`, l);
    const d =
      checkNumber(fn, `lengths[${i}].chosen`, p.chosen, { min: 0 }) -
      checkNumber(fn, `lengths[${i}].rejected`, p.rejected, { min: 0 });
    let b = 0;
    while (Math.abs(d) >= edges[b + 1]) b++; // terminates: the last edge is Infinity
    (d > 0 ? longer : d < 0 ? shorter : equal)[b].push(i);
  });

  const kept: number[] = [];
  const buckets: BalanceReport['buckets'] = [];
  for (let b = 0; b < B; b++) {
    const m = Math.min(longer[b].length, shorter[b].length);
    const keepLonger = subset(longer[b], m, seed, b);
    const keepShorter = subset(shorter[b], m, seed, b);
    kept.push(...keepLonger, ...keepShorter, ...equal[b]);
    buckets.push({
      range: [edges[b], edges[b + 1]],
      chosenLongerBefore: longer[b].length,
      chosenShorterBefore: shorter[b].length,
      equalBefore: equal[b].length,
      chosenLongerAfter: keepLonger.length,
      chosenShorterAfter: keepShorter.length,
      equalAfter: equal[b].length,
    });
  }
  kept.sort((a, b) => a - b);
  return { kept, report: { edges, buckets, keptPairs: kept.length, totalPairs: lengths.length } };
}

/** A seeded random subset of `m` of `items` (all of them when m >= items.length). */
function subset(items: number[], m: number, seed: number, bucket: number): number[] {
  if (m >= items.length) return items;
  const order = shuffleInPlace(Int32Array.from(items), mulberry32(hashSeed(seed, bucket, BALANCE_STREAM)));
  return Array.from(order.subarray(0, m));
}

const showEdge = (e: number) => (e === Infinity ? 'inf' : String(e));

/**
 * The report as an aligned text table for logs and the CLI, one row per bucket plus a total, e.g.
 *
 *   |d| bucket  longer  shorter  equal  ->  longer  shorter  equal
 *   [0, 50)        120       80     10  ->      80       80     10
 *   ...
 *   kept 1234 of 2000 pairs (61.7%)
 */
export function formatBalanceReport(r: BalanceReport): string {
  checkObject('formatBalanceReport', 'r', r);
  checkInt('formatBalanceReport', 'r.totalPairs', r.totalPairs, { min: 0 });
  const header = ['|d| bucket', 'longer', 'shorter', 'equal', '->', 'longer', 'shorter', 'equal'];
  const rows = r.buckets.map((b) => [
    `[${showEdge(b.range[0])}, ${showEdge(b.range[1])})`,
    String(b.chosenLongerBefore),
    String(b.chosenShorterBefore),
    String(b.equalBefore),
    '->',
    String(b.chosenLongerAfter),
    String(b.chosenShorterAfter),
    String(b.equalAfter),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const line = (cells: string[]) =>
    cells.map((s, c) => (c === 0 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join('  ');
  const pct = r.totalPairs ? ((100 * r.keptPairs) / r.totalPairs).toFixed(1) : '0.0';
  return [line(header), ...rows.map(line), `kept ${r.keptPairs} of ${r.totalPairs} pairs (${pct}%)`].join('\n');
}
