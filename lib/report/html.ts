/**
 * The run report as ONE self-contained HTML page: inline CSS and inline SVG, no scripts, no
 * external fonts, images or links, so it opens offline and prints legibly. All text from the
 * summary (names, prompts, generations, settings) is escaped.
 */
import { checkObject, typeError } from '../validate.js';
import { svgLineChart, svgScatter, svgWinTieLoss } from './charts.js';
import { SMOOTHING, trainingCharts, type RunMetrics } from './curves.js';
import { bestPolicy, delta, duration, num, pct, policyNames, winTieLoss } from './format.js';
import { color, esc, SVG_NS_ATTR } from './svg.js';
import type { DemoSummary, MetricsByStage, RenderOptions } from './types.js';

export const REPORT_CSS = `
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
.table-wrap { overflow-x: auto; max-width: 100%; }
@media (max-width: 640px) { body { font-size: 14px; } main { padding: 16px 10px 30px; } table { font-size: 12.5px; } th, td { padding: 4px 6px; } th.n { white-space: normal; } }
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
tr.disagree td { background: #fff4e5; }
.flag { color: #b45309; font-size: 12px; white-space: nowrap; }
@media print {
  body { background: #fff; font-size: 11pt; }
  main { max-width: none; padding: 0; }
  .charts svg, .sample, table, .cards { break-inside: avoid; }
  h2 { break-after: avoid; }
}`;

/** Inline SVG in HTML needs no namespace; dropping it keeps the page free of URLs. */
export const inlineSvg = (svg: string): string => svg.split(SVG_NS_ATTR).join('');
const inline = inlineSvg;

function checkSummary(summary: unknown): DemoSummary {
  const s = checkObject('renderHtml', 'summary', summary);
  checkObject('renderHtml', 'summary.rm', s.rm);
  checkObject('renderHtml', 'summary.sft', s.sft);
  const policies = checkObject('renderHtml', 'summary.policies', s.policies);
  for (const [k, p] of Object.entries(policies)) checkObject('renderHtml', `summary.policies.${k}`, p);
  if (s.stages !== undefined && !Array.isArray(s.stages))
    throw typeError('renderHtml', 'summary.stages', 'an array', s.stages);
  if (s.samples !== undefined && !Array.isArray(s.samples))
    throw typeError('renderHtml', 'summary.samples', 'an array', s.samples);
  return s as unknown as DemoSummary;
}

function card(key: string, value: string, detail = ''): string {
  return `<div class="card"><div class="k">${esc(key)}</div><div class="v">${esc(value)}</div>${detail ? `<div class="d">${esc(detail)}</div>` : ''}</div>`;
}

function policyTable(s: DemoSummary, names: string[]): string {
  const sftGold = s.sft.goldScore;
  const rows = names.map((name, i) => {
    const p = s.policies[name];
    const w = winTieLoss(p);
    return `<tr data-policy="${esc(name)}"><td><span class="swatch" style="background:${color(i)}"></span>${esc(name)}</td><td class="n win">${pct(w.win)}</td><td class="n tie">${pct(w.tie)}</td><td class="n loss">${pct(w.loss)}</td><td class="n rate">${pct(p.winRate)}</td><td class="n">${num(p.goldScore)} <span class="note">(${esc(delta(p.goldScore, sftGold))})</span></td><td class="n">${num(p.kl)}</td><td class="n">${num(p.length)}</td></tr>`;
  });
  const sftLength = typeof s.sft.length === 'number' ? num(s.sft.length) : '—';
  rows.unshift(
    `<tr class="base"><td>sft (baseline)</td><td class="n">—</td><td class="n">—</td><td class="n">—</td><td class="n">—</td><td class="n">${num(sftGold)}</td><td class="n">0</td><td class="n">${sftLength}</td></tr>`,
  );
  return `<div class="table-wrap"><table class="policies"><thead><tr><th>policy</th><th class="n">win</th><th class="n">tie</th><th class="n">loss</th><th class="n">win rate (ties ½)</th><th class="n">gold score (vs SFT)</th><th class="n">KL(π‖SFT), k1</th><th class="n">length (chars)</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
}

function resultCharts(s: DemoSummary, names: string[]): string {
  if (!names.length) return '';
  const wtl = svgWinTieLoss({
    title: 'Against SFT: win / tie / loss (gold judge)',
    rows: names.map((n) => ({ label: n, ...winTieLoss(s.policies[n]) })),
    width: 460,
  });
  const scatter = svgScatter({
    title: 'Gold score against KL from SFT',
    xLabel: 'KL(policy ‖ SFT) per response (k1)',
    yLabel: 'mean gold score',
    points: [
      { label: 'sft', x: 0, y: s.sft.goldScore, color: '#777777' },
      ...names.map((n, i) => ({ label: n, x: s.policies[n].kl, y: s.policies[n].goldScore, color: color(i) })),
    ],
    width: 460,
    height: 300,
  });
  return `<div class="charts">${inline(wtl)}${inline(scatter)}</div>`;
}

/** Reward-model score (the proxy) and gold score of the RL rollouts over training, each as the change from the first iteration. */
function proxyGoldSection(s: DemoSummary): string {
  const entries = Object.entries(s.proxyGold ?? {}).filter(([, rows]) => Array.isArray(rows) && rows.length > 0);
  if (!entries.length) return '';
  const charts = entries.map(([name, rows]) => {
    const first = rows[0];
    return svgLineChart({
      title: `${name}: proxy (RM) vs gold reward`,
      xLabel: 'iteration',
      yLabel: 'change from iteration 1',
      series: [
        { name: 'RM score (proxy, optimised)', points: rows.map((r) => [r.step, r.proxy - first.proxy]) },
        { name: 'gold score (true objective)', points: rows.map((r) => [r.step, r.gold - first.gold]) },
      ],
      width: 460,
      height: 300,
      smooth: SMOOTHING,
    });
  });
  return `<h2>Reward-model over-optimisation</h2><p class="note">Mean scores of each iteration's rollouts. The policy climbs the reward model's score; when the gold score stops following (or falls), the policy exploits the reward model's errors (Gao et al. 2022). The two scores have different units: each line is its change from the first iteration.</p><div class="charts">${charts.map(inline).join('')}</div>`;
}

function stagesTable(s: DemoSummary): string {
  const stages = (s.stages ?? []).filter((x) => x && typeof x === 'object');
  if (!stages.length) return '';
  const rows = stages.map(
    (x) =>
      `<tr><td>${esc(x.name)}</td><td class="n">${duration(x.seconds)}</td><td class="n">${typeof x.seconds === 'number' && s.seconds > 0 ? pct(x.seconds / s.seconds) : ''}</td><td><code>${esc(x.line ?? '')}</code></td></tr>`,
  );
  return `<h2>Stages</h2><table class="stages"><thead><tr><th>stage</th><th class="n">time</th><th class="n">share</th><th>summary</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function samplesSection(s: DemoSummary, names: string[], max: number): string {
  const samples = (s.samples ?? []).filter((x) => x && typeof x === 'object').slice(0, max);
  if (!samples.length) return '';
  const order = ['sft', ...names];
  const hasRm = samples.some((x) => Object.values(x.responses ?? {}).some((r) => typeof r?.rm === 'number'));
  let disagreements = 0;
  const blocks = samples.map((x) => {
    const keys = Object.keys(x.responses ?? {}).sort(
      (a, b) =>
        (order.includes(a) ? order.indexOf(a) : order.length) - (order.includes(b) ? order.indexOf(b) : order.length) ||
        a.localeCompare(b),
    );
    const base = x.responses?.sft;
    const rows = keys.map((k) => {
      const r = x.responses[k];
      // RM and gold disagree when they order this response and SFT's differently
      const disagree =
        hasRm &&
        k !== 'sft' &&
        base &&
        typeof r?.rm === 'number' &&
        typeof base.rm === 'number' &&
        Math.sign(r.rm - base.rm) !== Math.sign(r.gold - base.gold) &&
        r.text !== base.text;
      if (disagree) disagreements++;
      const flag = disagree
        ? ` <span class="flag">${(r.rm as number) > (base!.rm as number) ? 'RM prefers it, gold does not' : 'gold prefers it, RM does not'}</span>`
        : '';
      return `<tr${disagree ? ' class="disagree"' : ''}><td>${esc(k)}${flag}</td><td><pre>${esc(r?.text ?? '')}</pre></td><td class="n">${num(r?.gold)}</td>${hasRm ? `<td class="n">${num(r?.rm)}</td>` : ''}</tr>`;
    });
    return `<div class="sample"><div class="prompt">${esc(x.prompt)}</div><table><thead><tr><th>policy</th><th>response</th><th class="n">gold</th>${hasRm ? '<th class="n">RM</th>' : ''}</tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
  });
  const more =
    (s.samples ?? []).length > samples.length
      ? `<p class="note">${samples.length} of ${(s.samples ?? []).length} examples shown.</p>`
      : '';
  const intro = hasRm
    ? `<p class="note">One sample per policy and prompt. Highlighted: the reward model and the gold function order the response and SFT's differently (${disagreements} of the rows shown).</p>`
    : '';
  return `<h2>Example generations</h2>${intro}${blocks.join('')}${more}`;
}

function settingsTable(s: DemoSummary): string {
  const entries = Object.entries(s.settings ?? {});
  if (!entries.length) return '';
  const rows = entries.map(([k, v]) => `<tr><td><code>${esc(k)}</code></td><td>${esc(String(v))}</td></tr>`);
  return `<h2>Settings</h2><table class="settings"><tbody>${rows.join('')}</tbody></table>`;
}

function curvesSection(metrics: MetricsByStage | RunMetrics[], maxPoints: number): string {
  const stages = trainingCharts(metrics, maxPoints);
  if (!stages.length) return '';
  const out = [
    `<h2>Training curves</h2><p class="note">Solid: exponential moving average (weight ${SMOOTHING}); faint: the raw values.</p>`,
  ];
  for (const st of stages)
    out.push(
      `<h3>${esc(st.label)} <span class="note">(${esc(st.stage)})</span></h3><div class="charts">${st.charts.map(inline).join('')}</div>`,
    );
  return out.join('');
}

/** The full report page. `metrics` may be empty: charts without data are left out. */
export function renderHtml(summary: DemoSummary, metrics: MetricsByStage = {}, opts: RenderOptions = {}): string {
  const s = checkSummary(summary);
  checkObject('renderHtml', 'metrics', metrics);
  checkObject('renderHtml', 'opts', opts);
  const title = opts.title ?? 'RLHF run report';
  const names = policyNames(s);
  const best = bestPolicy(s);
  const when =
    opts.generatedAt instanceof Date ? opts.generatedAt.toISOString() : (opts.generatedAt ?? new Date().toISOString());
  const out: string[] = [];
  out.push(
    `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title><style>${REPORT_CSS}</style></head><body><main>`,
  );
  out.push(`<h1>${esc(title)}</h1>`);
  if (s.task)
    out.push(
      `<p class="sub">${esc(s.task.description)}${typeof s.task.noise === 'number' ? ` Annotator label noise: ${esc(pct(s.task.noise))}.` : ''}</p>`,
    );
  out.push(`<div class="cards">`);
  out.push(card('RM accuracy', pct(s.rm.accuracy), 'held-out preference pairs'));
  out.push(
    best
      ? card('Best win rate vs SFT', pct(best.policy.winRate), `${best.name}, gold score ${num(best.policy.goldScore)}`)
      : card('Best win rate vs SFT', 'n/a', 'no policy evaluated'),
  );
  out.push(card('SFT gold score', num(s.sft.goldScore), 'the baseline'));
  out.push(
    card('Total time', duration(s.seconds), `${names.length} polic${names.length === 1 ? 'y' : 'ies'} evaluated`),
  );
  out.push(`</div>`);
  out.push(`<h2>Policies against SFT</h2>`, policyTable(s, names));
  out.push(
    `<p class="note">Win / tie / loss: pairwise comparison of each policy's response with the SFT policy's on the same prompt, judged by the gold score; the three sum to 100%. The win rate beside them counts ties half. KL: per response, from the SFT policy, a Monte-Carlo k1 estimate on the policy's own samples (unbiased; it can come out below 0 when the policy barely moved).</p>`,
  );
  out.push(resultCharts(s, names));
  out.push(proxyGoldSection(s));
  out.push(curvesSection(metrics, opts.maxPoints ?? 300));
  out.push(stagesTable(s), samplesSection(s, names, opts.maxSamples ?? 8), settingsTable(s));
  out.push(
    `<footer>Generated by rlhf on ${esc(when)}. Self-contained: no scripts, no external resources.</footer></main></body></html>\n`,
  );
  return out.join('\n');
}
