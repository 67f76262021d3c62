/**
 * The run report as ONE self-contained HTML page: inline CSS and inline SVG, no scripts, no
 * external fonts, images or links, so it opens offline and prints legibly. All text from the
 * summary (names, prompts, generations, settings) is escaped.
 */
import { checkObject, typeError } from '../validate.js';
import { svgBarChart, svgScatter } from './charts.js';
import { trainingCharts } from './curves.js';
import { bestPolicy, delta, duration, num, pct, policyNames } from './format.js';
import { color, esc, SVG_NS_ATTR } from './svg.js';
import type { DemoSummary, MetricsByStage, RenderOptions } from './types.js';

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f7f9; color: #1d1f23; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 20px 40px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e2e4e8; }
h3 { font-size: 16px; margin: 20px 0 6px; }
p.sub { margin: 0 0 16px; color: #555; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { flex: 1 1 180px; border: 1px solid #dde0e5; border-radius: 8px; padding: 10px 14px; background: #fafbfc; }
.card .k { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: #60656e; }
.card .v { font-size: 24px; font-weight: 600; }
.card .d { font-size: 12px; color: #60656e; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 4px; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e6e8eb; text-align: left; vertical-align: top; }
th { background: #f1f3f5; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.base td { color: #555; font-style: italic; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.charts svg { flex: 0 1 auto; max-width: 100%; height: auto; border: 1px solid #eceef1; border-radius: 6px; }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; }
.sample { margin: 14px 0; border: 1px solid #e6e8eb; border-radius: 6px; padding: 8px 12px; }
.sample .prompt { font-weight: 600; margin-bottom: 6px; }
.note { color: #60656e; font-size: 13px; }
footer { margin-top: 36px; color: #777; font-size: 12px; }
@media print {
  body { background: #fff; font-size: 11pt; }
  main { max-width: none; padding: 0; }
  .charts svg, .sample, table, .cards { break-inside: avoid; }
  h2 { break-after: avoid; }
}`;

/** Inline SVG in HTML needs no namespace; dropping it keeps the page free of URLs. */
const inline = (svg: string) => svg.split(SVG_NS_ATTR).join('');

function checkSummary(summary: unknown): DemoSummary {
  const s = checkObject('renderHtml', 'summary', summary);
  checkObject('renderHtml', 'summary.rm', s.rm);
  checkObject('renderHtml', 'summary.sft', s.sft);
  const policies = checkObject('renderHtml', 'summary.policies', s.policies);
  for (const [k, p] of Object.entries(policies)) checkObject('renderHtml', `summary.policies.${k}`, p);
  if (s.stages !== undefined && !Array.isArray(s.stages)) throw typeError('renderHtml', 'summary.stages', 'an array', s.stages);
  if (s.samples !== undefined && !Array.isArray(s.samples)) throw typeError('renderHtml', 'summary.samples', 'an array', s.samples);
  return s as unknown as DemoSummary;
}

function card(key: string, value: string, detail = ''): string {
  return `<div class="card"><div class="k">${esc(key)}</div><div class="v">${esc(value)}</div>${detail ? `<div class="d">${esc(detail)}</div>` : ''}</div>`;
}

function policyTable(s: DemoSummary, names: string[]): string {
  const sftGold = s.sft.goldScore;
  const rows = names.map((name, i) => {
    const p = s.policies[name];
    return `<tr><td><span class="swatch" style="background:${color(i)}"></span>${esc(name)}</td><td class="n">${pct(p.winRate)}</td><td class="n">${pct(p.tieRate)}</td><td class="n">${pct(p.lossRate)}</td><td class="n">${num(p.goldScore)} <span class="note">(${esc(delta(p.goldScore, sftGold))})</span></td><td class="n">${num(p.kl)}</td><td class="n">${num(p.length)}</td></tr>`;
  });
  const sftLength = typeof s.sft.length === 'number' ? num(s.sft.length) : '—';
  rows.unshift(`<tr class="base"><td>sft (baseline)</td><td class="n">—</td><td class="n">—</td><td class="n">—</td><td class="n">${num(sftGold)}</td><td class="n">0</td><td class="n">${sftLength}</td></tr>`);
  return `<table class="policies"><thead><tr><th>policy</th><th class="n">win</th><th class="n">tie</th><th class="n">loss</th><th class="n">gold score (vs SFT)</th><th class="n">KL(π‖SFT)</th><th class="n">length (chars)</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function resultCharts(s: DemoSummary, names: string[]): string {
  if (!names.length) return '';
  const bars = svgBarChart({
    title: 'Win rate against SFT', yLabel: 'win rate (%), ties count half', yMin: 0, yMax: 100,
    bars: names.map((n, i) => ({ label: n, value: (s.policies[n].winRate ?? NaN) * 100, color: color(i) })),
    referenceLine: { value: 50, label: '50%: no better than SFT' }, format: (v) => `${v.toFixed(1)}%`, width: 460, height: 300,
  });
  const scatter = svgScatter({
    title: 'Gold score against KL from SFT', xLabel: 'KL(policy ‖ SFT) per response', yLabel: 'mean gold score',
    points: [{ label: 'sft', x: 0, y: s.sft.goldScore, color: '#777777' }, ...names.map((n, i) => ({ label: n, x: s.policies[n].kl, y: s.policies[n].goldScore, color: color(i) }))],
    width: 460, height: 300,
  });
  return `<div class="charts">${inline(bars)}${inline(scatter)}</div>`;
}

function stagesTable(s: DemoSummary): string {
  const stages = (s.stages ?? []).filter((x) => x && typeof x === 'object');
  if (!stages.length) return '';
  const rows = stages.map((x) => `<tr><td>${esc(x.name)}</td><td class="n">${duration(x.seconds)}</td><td class="n">${typeof x.seconds === 'number' && s.seconds > 0 ? pct(x.seconds / s.seconds) : ''}</td><td><code>${esc(x.line ?? '')}</code></td></tr>`);
  return `<h2>Stages</h2><table class="stages"><thead><tr><th>stage</th><th class="n">time</th><th class="n">share</th><th>summary</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function samplesSection(s: DemoSummary, names: string[], max: number): string {
  const samples = (s.samples ?? []).filter((x) => x && typeof x === 'object').slice(0, max);
  if (!samples.length) return '';
  const order = ['sft', ...names];
  const blocks = samples.map((x) => {
    const keys = Object.keys(x.responses ?? {}).sort((a, b) => (order.includes(a) ? order.indexOf(a) : order.length) - (order.includes(b) ? order.indexOf(b) : order.length) || a.localeCompare(b));
    const rows = keys.map((k) => `<tr><td>${esc(k)}</td><td><pre>${esc(x.responses[k]?.text ?? '')}</pre></td><td class="n">${num(x.responses[k]?.gold)}</td></tr>`);
    return `<div class="sample"><div class="prompt">${esc(x.prompt)}</div><table><thead><tr><th>policy</th><th>response</th><th class="n">gold</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
  });
  const more = (s.samples ?? []).length > samples.length ? `<p class="note">${samples.length} of ${(s.samples ?? []).length} examples shown.</p>` : '';
  return `<h2>Example generations</h2>${blocks.join('')}${more}`;
}

function settingsTable(s: DemoSummary): string {
  const entries = Object.entries(s.settings ?? {});
  if (!entries.length) return '';
  const rows = entries.map(([k, v]) => `<tr><td><code>${esc(k)}</code></td><td>${esc(String(v))}</td></tr>`);
  return `<h2>Settings</h2><table class="settings"><tbody>${rows.join('')}</tbody></table>`;
}

/** The full report page. `metrics` may be empty: charts without data are left out. */
export function renderHtml(summary: DemoSummary, metrics: MetricsByStage = {}, opts: RenderOptions = {}): string {
  const s = checkSummary(summary);
  checkObject('renderHtml', 'metrics', metrics);
  checkObject('renderHtml', 'opts', opts);
  const title = opts.title ?? 'RLHF run report';
  const names = policyNames(s);
  const best = bestPolicy(s);
  const when = opts.generatedAt instanceof Date ? opts.generatedAt.toISOString() : (opts.generatedAt ?? new Date().toISOString());
  const out: string[] = [];
  out.push(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title><style>${CSS}</style></head><body><main>`);
  out.push(`<h1>${esc(title)}</h1>`);
  if (s.task) out.push(`<p class="sub">${esc(s.task.description)}${typeof s.task.noise === 'number' ? ` Annotator label noise: ${esc(pct(s.task.noise))}.` : ''}</p>`);
  out.push(`<div class="cards">`);
  out.push(card('RM accuracy', pct(s.rm.accuracy), 'held-out preference pairs'));
  out.push(best ? card('Best win rate vs SFT', pct(best.policy.winRate), `${best.name}, gold score ${num(best.policy.goldScore)}`) : card('Best win rate vs SFT', 'n/a', 'no policy evaluated'));
  out.push(card('SFT gold score', num(s.sft.goldScore), 'the baseline'));
  out.push(card('Total time', duration(s.seconds), `${names.length} polic${names.length === 1 ? 'y' : 'ies'} evaluated`));
  out.push(`</div>`);
  out.push(`<h2>Policies against SFT</h2>`, policyTable(s, names));
  out.push(`<p class="note">Win/tie/loss: pairwise comparison of each policy's response with the SFT policy's on the same prompt, judged by the gold score (ties count half in the win rate). KL: per response, from the SFT policy.</p>`);
  out.push(resultCharts(s, names));
  const stages = trainingCharts(metrics, opts.maxPoints ?? 300);
  if (stages.length) {
    out.push(`<h2>Training curves</h2>`);
    for (const st of stages) out.push(`<h3>${esc(st.label)} <span class="note">(${esc(st.stage)})</span></h3><div class="charts">${st.charts.map(inline).join('')}</div>`);
  }
  out.push(stagesTable(s), samplesSection(s, names, opts.maxSamples ?? 8), settingsTable(s));
  out.push(`<footer>Generated by rlhf on ${esc(when)}. Self-contained: no scripts, no external resources.</footer></main></body></html>\n`);
  return out.join('\n');
}
