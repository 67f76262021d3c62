/**
 * From answers to preference pairs, with ChatGLM-RLHF's clean-up (docs/algorithms.md §2.1 step 3):
 *
 * 1. skips are not votes; an item's votes are A, B and tie (both good / both bad);
 * 2. majority vote: the item is kept only when A and B votes differ (equal counts, all-tie items
 *    included, are dropped as ties), and the winner's share of all votes is at least
 *    `minAgreement` (default 0.6: two of three agree; a lone "A" against a "tie" is dropped);
 * 3. preference cycles: per prompt the kept pairs form a graph winner → loser over response
 *    texts; every pair inside a cycle (a strongly connected component of ≥ 2 responses) is dropped.
 *
 * Plus an agreement report over the non-skip answers, ties merged into one category: pairwise
 * agreement, Fleiss' κ over items with ≥ 2 answers, Cohen's κ per annotator pair, per-annotator counts.
 */
import type { PreferenceRecord } from '../data/formats.js';
import { cohensKappa, fleissKappa, pairwiseAgreement } from './agreement.js';
import type { LabelDb, LabelRow } from './db.js';

export interface ExportOptions {
  /** the winner's least share of an item's votes (default 0.6) */
  minAgreement?: number;
}

export interface AgreementReport {
  items: number;
  labelledItems: number;
  answers: number;
  skips: number;
  /** fraction of answer pairs on the same item that agree (A / B / tie) */
  pairwiseAgreement: number | null;
  fleissKappa: number | null;
  cohensKappa: Array<{ annotators: [string, string]; items: number; agreement: number; kappa: number | null }>;
  annotators: Array<{
    name: string;
    answers: number;
    skips: number;
    ties: number;
    agreement: number | null;
    meanCohensKappa: number | null;
  }>;
}

export interface ExportResult {
  pairs: Array<PreferenceRecord & { votes: { chosen: number; rejected: number; tie: number } }>;
  dropped: { unlabelled: number; ties: number; disagreement: number; cycles: number };
  report: AgreementReport;
}

const merged = (a: string) => (a === 'tie_good' || a === 'tie_bad' ? 'tie' : a);

export function exportPreferences(db: LabelDb, o: ExportOptions = {}): ExportResult {
  const minAgreement = o.minAgreement ?? 0.6;
  if (!(minAgreement >= 0 && minAgreement <= 1))
    throw new RangeError(`exportPreferences: expected options.minAgreement in [0, 1], received ${minAgreement}`);
  const items = db.items();
  const labels = db.labels();
  const byItem = new Map<number, LabelRow[]>();
  for (const l of labels) if (l.answer !== 'skip') byItem.set(l.itemId, [...(byItem.get(l.itemId) ?? []), l]);

  const dropped = { unlabelled: 0, ties: 0, disagreement: 0, cycles: 0 };
  type Kept = {
    item: (typeof items)[number];
    winner: 'a' | 'b';
    votes: { chosen: number; rejected: number; tie: number };
  };
  const kept: Kept[] = [];
  for (const item of items) {
    const votes = byItem.get(item.id) ?? [];
    if (votes.length === 0) {
      dropped.unlabelled++;
      continue;
    }
    const nA = votes.filter((v) => v.answer === 'a').length;
    const nB = votes.filter((v) => v.answer === 'b').length;
    const nTie = votes.length - nA - nB;
    if (nA === nB) {
      dropped.ties++;
      continue;
    }
    const winner = nA > nB ? 'a' : 'b';
    if (Math.max(nA, nB) / votes.length < minAgreement) {
      dropped.disagreement++;
      continue;
    }
    kept.push({ item, winner, votes: { chosen: Math.max(nA, nB), rejected: Math.min(nA, nB), tie: nTie } });
  }

  // cycles per prompt
  const byPrompt = new Map<string, Kept[]>();
  for (const k of kept) byPrompt.set(k.item.promptKey, [...(byPrompt.get(k.item.promptKey) ?? []), k]);
  const inCycle = new Set<Kept>();
  for (const group of byPrompt.values()) {
    const edges = group.map(
      (k) => (k.winner === 'a' ? [k.item.a, k.item.b] : [k.item.b, k.item.a]) as [string, string],
    );
    const component = stronglyConnected(edges);
    group.forEach((k, i) => {
      const [w, l] = edges[i];
      if (component.get(w) === component.get(l)) inCycle.add(k);
    });
  }
  dropped.cycles = inCycle.size;
  const pairs = kept
    .filter((k) => !inCycle.has(k))
    .map((k) => ({
      prompt: k.item.prompt,
      chosen: k.winner === 'a' ? k.item.a : k.item.b,
      rejected: k.winner === 'a' ? k.item.b : k.item.a,
      votes: k.votes,
    }));
  return { pairs, dropped, report: agreementReport(items.length, labels, byItem) };
}

function agreementReport(items: number, labels: LabelRow[], byItem: Map<number, LabelRow[]>): AgreementReport {
  const cats = ['a', 'b', 'tie'];
  const multi = [...byItem.values()].filter((v) => v.length >= 2);
  const names = [...new Set(labels.map((l) => l.annotator))].sort();
  const cohen: AgreementReport['cohensKappa'] = [];
  for (let i = 0; i < names.length; i++)
    for (let j = i + 1; j < names.length; j++) {
      const x: string[] = [];
      const y: string[] = [];
      for (const v of byItem.values()) {
        const p = v.find((l) => l.annotator === names[i]);
        const q = v.find((l) => l.annotator === names[j]);
        if (p && q) {
          x.push(merged(p.answer));
          y.push(merged(q.answer));
        }
      }
      if (x.length)
        cohen.push({
          annotators: [names[i], names[j]],
          items: x.length,
          agreement: x.filter((c, k) => c === y[k]).length / x.length,
          kappa: cohensKappa(x, y),
        });
    }
  const annotators = names.map((name) => {
    const mine = labels.filter((l) => l.annotator === name);
    let pairs = 0;
    let same = 0;
    for (const v of byItem.values()) {
      const me = v.find((l) => l.annotator === name);
      if (!me) continue;
      for (const other of v)
        if (other.annotator !== name) {
          pairs++;
          if (merged(other.answer) === merged(me.answer)) same++;
        }
    }
    const kappas = cohen.filter((c) => c.annotators.includes(name) && c.kappa !== null).map((c) => c.kappa!);
    return {
      name,
      answers: mine.filter((l) => l.answer !== 'skip').length,
      skips: mine.filter((l) => l.answer === 'skip').length,
      ties: mine.filter((l) => merged(l.answer) === 'tie').length,
      agreement: pairs ? same / pairs : null,
      meanCohensKappa: kappas.length ? kappas.reduce((a, b) => a + b, 0) / kappas.length : null,
    };
  });
  return {
    items,
    labelledItems: byItem.size,
    answers: labels.filter((l) => l.answer !== 'skip').length,
    skips: labels.filter((l) => l.answer === 'skip').length,
    pairwiseAgreement: pairwiseAgreement(multi.map((v) => v.map((l) => merged(l.answer)))),
    fleissKappa: fleissKappa(multi.map((v) => cats.map((c) => v.filter((l) => merged(l.answer) === c).length))),
    cohensKappa: cohen,
    annotators,
  };
}

/** Tarjan's algorithm: a component id for every node of the directed graph given by `edges`. */
export function stronglyConnected(edges: ReadonlyArray<readonly [string, string]>): Map<string, number> {
  const adj = new Map<string, string[]>();
  for (const [u, v] of edges) {
    adj.set(u, [...(adj.get(u) ?? []), v]);
    if (!adj.has(v)) adj.set(v, []);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const comp = new Map<string, number>();
  let counter = 0;
  let comps = 0;
  const visit = (u: string) => {
    index.set(u, counter);
    low.set(u, counter++);
    stack.push(u);
    onStack.add(u);
    for (const v of adj.get(u)!) {
      if (!index.has(v)) {
        visit(v);
        low.set(u, Math.min(low.get(u)!, low.get(v)!));
      } else if (onStack.has(v)) low.set(u, Math.min(low.get(u)!, index.get(v)!));
    }
    if (low.get(u) === index.get(u)) {
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.set(w, comps);
      } while (w !== u);
      comps++;
    }
  };
  for (const u of adj.keys()) if (!index.has(u)) visit(u);
  return comp;
}
