/**
 * `rlhf study`'s report.html: one self-contained page (the run report's CSS, inline SVG, no
 * scripts, no external resources) with the verdicts up front and, per study, its plot, table and
 * notes. Every text is escaped. Timings are not on the page: the same seeds and thread count give
 * the same page byte for byte.
 */
import { inlineSvg, REPORT_CSS } from '../report/html.js';
import { esc, fmt } from '../report/svg.js';
import type { StudyOutcome } from './types.js';

export interface StudyReportInput {
  preset: string;
  seeds: number[];
  description: string;
  outcomes: StudyOutcome[];
}

const table = (columns: string[], rows: string[][]): string =>
  `<div class="table-wrap"><table><thead><tr>${columns.map((c) => `<th>${esc(c)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((v) => `<td>${esc(v)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table></div>`;

const CSS = `${REPORT_CSS}
.verdict { padding: 8px 12px; border-radius: 6px; margin: 8px 0; }
.verdict.yes { background: #e8f5ee; border-left: 4px solid #009E73; }
.verdict.no { background: #fdf0e6; border-left: 4px solid #D55E00; }
.badge { font-weight: 600; white-space: nowrap; }`;

export function renderStudyReport(input: StudyReportInput): string {
  const overview = table(
    ['study', 'claim', 'measured effect [95% CI]', 'verdict'],
    input.outcomes.map((o) => [
      o.name,
      o.claim,
      `${o.effectLabel}: ${fmt(o.effect)} [${fmt(o.ci[0])}, ${fmt(o.ci[1])}]`,
      o.reproduced ? 'reproduced' : 'not reproduced',
    ]),
  );
  const sections = input.outcomes.map(
    (o) => `<section id="${esc(o.name)}">
<h2>${esc(o.title)} <span class="note">(${esc(o.name)})</span></h2>
<p class="note">Source: ${esc(o.source)}. Seeds: ${esc(o.seeds.join(', '))}.</p>
<div class="verdict ${o.reproduced ? 'yes' : 'no'}"><span class="badge">${o.reproduced ? 'Reproduced' : 'Not reproduced'}.</span> ${esc(o.verdict)}</div>
<div class="charts">${inlineSvg(o.chart)}</div>
${table(o.table.columns, o.table.rows)}
${o.notes.map((n) => `<p class="note">${esc(n)}</p>`).join('\n')}
</section>`,
  );
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>rlhf study report</title><style>${CSS}</style></head>
<body><main>
<h1>What the papers claim, and what we measured</h1>
<p class="sub">Preset ${esc(input.preset)}, seeds ${esc(input.seeds.join(', '))}. ${esc(input.description)}</p>
${overview}
${sections.join('\n')}
<footer>rlhf study: every figure above is a mean over seeds and prompts with a 95% percentile bootstrap interval (seeds resampled, then prompts within each seed). A claim is reproduced when the interval lies entirely on the side of zero the claim predicts.</footer>
</main></body></html>
`;
}
