/**
 * The study report's interval plot: one dot per row at its mean and a whisker over its 95%
 * confidence interval, against a zero line (what "the interval excludes zero" looks like). Built
 * on the run report's SVG frame (lib/report/svg.ts); every text is escaped there or here.
 */
import { wrapText } from '../report/charts.js';
import { c, color, esc, fmt, frame, niceTicks } from '../report/svg.js';

export interface IntervalRow {
  label: string;
  mean: number;
  lo: number;
  hi: number;
}

export function svgIntervals(o: {
  title: string;
  yLabel: string;
  rows: IntervalRow[];
  width?: number;
  height?: number;
}): string {
  const W = o.width ?? 640,
    H = o.height ?? 300;
  const finite = o.rows.flatMap((r) => [r.lo, r.hi, r.mean]).filter(Number.isFinite);
  const y = niceTicks(Math.min(0, ...finite), Math.max(0, ...finite), 5);
  const f = frame({ width: W, height: H, title: o.title, xLabel: '', yLabel: o.yLabel, y });
  const n = Math.max(1, o.rows.length);
  const band = (f.right - f.left) / n;
  const marks: string[] = [];
  o.rows.forEach((r, i) => {
    const x = f.left + band * (i + 0.5);
    const col = color(i);
    if (Number.isFinite(r.lo) && Number.isFinite(r.hi))
      marks.push(
        `<line x1="${c(x)}" y1="${c(f.sy(r.lo))}" x2="${c(x)}" y2="${c(f.sy(r.hi))}" stroke="${col}" stroke-width="2"/>`,
        `<line x1="${c(x - 6)}" y1="${c(f.sy(r.lo))}" x2="${c(x + 6)}" y2="${c(f.sy(r.lo))}" stroke="${col}" stroke-width="2"/>`,
        `<line x1="${c(x - 6)}" y1="${c(f.sy(r.hi))}" x2="${c(x + 6)}" y2="${c(f.sy(r.hi))}" stroke="${col}" stroke-width="2"/>`,
      );
    if (Number.isFinite(r.mean)) {
      marks.push(
        `<circle cx="${c(x)}" cy="${c(f.sy(r.mean))}" r="4.5" fill="${col}"><title>${esc(`${r.label}: ${fmt(r.mean)} [${fmt(r.lo)}, ${fmt(r.hi)}]`)}</title></circle>`,
      );
      marks.push(
        `<text x="${c(x + 9)}" y="${c(f.sy(r.mean))}" dy="0.32em" font-size="11" fill="#333">${esc(fmt(r.mean))}</text>`,
      );
    }
    wrapText(r.label, band - 4, 11)
      .slice(0, 2)
      .forEach((line, k) =>
        marks.push(
          `<text x="${c(x)}" y="${c(f.bottom + 16 + 13 * k)}" text-anchor="middle" font-size="11" fill="#333">${esc(line)}</text>`,
        ),
      );
  });
  return [...f.head, ...marks, f.end].join('');
}
