/** Number and duration formatting shared by the HTML and Markdown renderers. */
import { fmt } from './svg.js';
import type { DemoSummary, PolicySummary } from './types.js';

export const num = (v: unknown, digits = 3): string => (typeof v === 'number' ? fmt(v, digits) : 'n/a');

/** 0.625 → "62.5%" */
export const pct = (v: unknown): string =>
  typeof v === 'number' && Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : 'n/a';

/** 42.3 → "42.3 s", 192 → "3 min 12 s", 7380 → "2 h 03 min" */
export function duration(s: unknown): string {
  if (typeof s !== 'number' || !Number.isFinite(s) || s < 0) return 'n/a';
  if (s < 60) return `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** Policies in a stable, readable order: the usual pipeline order first, then alphabetical. */
export function policyNames(summary: DemoSummary): string[] {
  const order = ['ppo', 'grpo', 'dpo', 'exo'];
  const rank = (s: string) => (order.includes(s) ? order.indexOf(s) : order.length);
  return Object.keys(summary.policies ?? {}).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** The policy with the highest win rate (undefined when there is none with a finite one). */
export function bestPolicy(summary: DemoSummary): { name: string; policy: PolicySummary } | undefined {
  let best: { name: string; policy: PolicySummary } | undefined;
  for (const name of policyNames(summary)) {
    const p = summary.policies[name];
    if (p && Number.isFinite(p.winRate) && (!best || p.winRate > best.policy.winRate)) best = { name, policy: p };
  }
  return best;
}

/** A signed difference: "+0.42" / "−0.1" */
export function delta(v: number, base: number): string {
  if (!Number.isFinite(v) || !Number.isFinite(base)) return '';
  const d = v - base;
  return `${d >= 0 ? '+' : '−'}${fmt(Math.abs(d))}`;
}

/** The three parts of a pairwise comparison that sum to 1: wins (ties not counted), ties, losses. */
export function winTieLoss(p: PolicySummary): { win: number; tie: number; loss: number } {
  const tie = typeof p.tieRate === 'number' ? p.tieRate : NaN;
  return { win: p.winRate - tie / 2, tie, loss: p.lossRate };
}
