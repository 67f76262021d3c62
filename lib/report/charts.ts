/**
 * Standalone SVG charts: a line chart (training curves), a bar chart (win rate per method, with a
 * reference line) and a labelled scatter plot (gold score against KL). Each returns one `<svg>`
 * element as a string, valid XML, with every piece of text escaped.
 */
import { checkNumber, checkObject, checkString, typeError } from '../validate.js';
import { c, chartArgs, color, dash, esc, fmt, frame, niceTicks, textWidth, ticksWithin } from './svg.js';
import type { BarChartOptions, LineChartOptions, Point, ScatterOptions } from './types.js';

/** Sorted by x, non-finite x dropped, non-finite y kept as NaN (a gap); longer than `max`: bucket means. */
function prepare(points: Point[], max: number): Point[] {
  const pts = points.filter((p) => Array.isArray(p) && Number.isFinite(p[0])).map((p): Point => [p[0], Number.isFinite(p[1]) ? p[1] : NaN]);
  pts.sort((a, b) => a[0] - b[0]);
  if (pts.length <= max) return pts;
  const out: Point[] = [], size = Math.ceil(pts.length / max);
  for (let i = 0; i < pts.length; i += size) {
    const b = pts.slice(i, i + size), ys = b.map((p) => p[1]).filter((y) => !Number.isNaN(y));
    out.push([b.reduce((s, p) => s + p[0], 0) / b.length, ys.length ? ys.reduce((s, y) => s + y, 0) / ys.length : NaN]);
  }
  return out;
}

/** Line chart; NaN points split a line, isolated points and short series get markers. */
export function svgLineChart(options: LineChartOptions): string {
  const fn = 'svgLineChart';
  const { o, W, H } = chartArgs(fn, options, 'series');
  const max = o.maxPoints === undefined ? 300 : checkNumber(fn, 'options.maxPoints', o.maxPoints, { min: 2 });
  const series = (o.series as unknown[]).map((s, i) => {
    const so = checkObject(fn, `options.series[${i}]`, s);
    const name = checkString(fn, `options.series[${i}].name`, so.name, false);
    if (!Array.isArray(so.points)) throw typeError(fn, `options.series[${i}].points`, 'an array of [x, y]', so.points);
    return { name, points: prepare(so.points as Point[], max) };
  });
  const finite = series.flatMap((s) => s.points.filter((p) => !Number.isNaN(p[1])));
  const xs = finite.map((p) => p[0]), ys = finite.map((p) => p[1]);
  const integral = xs.every((x) => Number.isInteger(x)); // steps and iterations: no fractional ticks
  const xt = finite.length ? niceTicks(Math.min(...xs), Math.max(...xs), Math.max(3, Math.round(W / 110)), integral ? 1 : 0) : niceTicks(0, 1);
  const yt = finite.length ? niceTicks(Math.min(...ys), Math.max(...ys), Math.max(3, Math.round(H / 60))) : niceTicks(0, 1);
  const legend = series.map((s, i) => ({ name: s.points.some((p) => !Number.isNaN(p[1])) ? s.name : `${s.name} (no data)`, color: color(i), dash: dash(i) }));
  const f = frame({ width: W, height: H, title: o.title as string, xLabel: (o.xLabel as string) ?? '', yLabel: (o.yLabel as string) ?? '', x: xt, y: yt, legend });
  const marks: string[] = [];
  series.forEach((s, i) => {
    const segments: Point[][] = [];
    let cur: Point[] = [];
    for (const p of s.points) {
      if (Number.isNaN(p[1])) {
        if (cur.length) segments.push(cur);
        cur = [];
      } else cur.push(p);
    }
    if (cur.length) segments.push(cur);
    const d = segments.filter((g) => g.length > 1).map((g) => g.map((p, j) => `${j ? 'L' : 'M'}${c(f.sx(p[0]))} ${c(f.sy(p[1]))}`).join('')).join('');
    const da = dash(i) ? ` stroke-dasharray="${dash(i)}"` : '';
    const parts: string[] = [];
    if (d) parts.push(`<path d="${d}" fill="none" stroke="${color(i)}" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round"${da}/>`);
    const dots = s.points.length <= 40 ? segments.flat() : segments.filter((g) => g.length === 1).flat();
    for (const p of dots) parts.push(`<circle cx="${c(f.sx(p[0]))}" cy="${c(f.sy(p[1]))}" r="2.8" fill="${color(i)}"/>`);
    marks.push(`<g class="series" data-name="${esc(s.name)}">${parts.join('')}</g>`);
  });
  if (!finite.length) marks.push(`<text class="empty" x="${c((f.left + f.right) / 2)}" y="${c((f.top + f.bottom) / 2)}" text-anchor="middle" fill="#777">no data</text>`);
  return [...f.head, ...marks, f.end].join('');
}

/** Bar chart with optional error bars and a dashed reference line (e.g. 50% win rate). */
export function svgBarChart(options: BarChartOptions): string {
  const fn = 'svgBarChart';
  const { o, W, H } = chartArgs(fn, options, 'bars');
  const bars = (o.bars as unknown[]).map((b, i) => {
    const bo = checkObject(fn, `options.bars[${i}]`, b);
    const label = checkString(fn, `options.bars[${i}].label`, bo.label, false);
    if (typeof bo.value !== 'number') throw typeError(fn, `options.bars[${i}].value`, 'a number', bo.value);
    const error = bo.error === undefined ? 0 : checkNumber(fn, `options.bars[${i}].error`, bo.error, { min: 0 });
    return { label, value: Number.isFinite(bo.value) ? bo.value : NaN, error, color: bo.color === undefined ? color(i) : checkString(fn, `options.bars[${i}].color`, bo.color) };
  });
  const ref = o.referenceLine === undefined ? undefined : checkObject(fn, 'options.referenceLine', o.referenceLine);
  const refValue = ref ? checkNumber(fn, 'options.referenceLine.value', ref.value) : undefined;
  const refLabel = ref ? checkString(fn, 'options.referenceLine.label', ref.label, false) : '';
  if (o.format !== undefined && typeof o.format !== 'function') throw typeError(fn, 'options.format', 'a function', o.format);
  const show = o.format === undefined ? (v: number) => fmt(v) : (o.format as (v: number) => string);
  const vals = bars.filter((b) => !Number.isNaN(b.value)).flatMap((b) => [b.value - b.error, b.value + b.error]);
  if (refValue !== undefined) vals.push(refValue);
  const yMin = o.yMin === undefined ? undefined : checkNumber(fn, 'options.yMin', o.yMin);
  const yMax = o.yMax === undefined ? undefined : checkNumber(fn, 'options.yMax', o.yMax);
  const lo = yMin ?? Math.min(0, ...vals), hi = yMax ?? Math.max(0, ...vals);
  if (hi < lo || (hi === lo && yMin !== undefined && yMax !== undefined)) throw new RangeError(`${fn}: expected options.yMax (${hi}) to be above options.yMin (${lo})`);
  const target = Math.max(3, Math.round(H / 60));
  const yt = yMin !== undefined && yMax !== undefined ? ticksWithin(lo, hi, target) : niceTicks(lo, hi, target);
  const f = frame({ width: W, height: H, title: o.title as string, xLabel: '', yLabel: (o.yLabel as string) ?? '', y: yt });
  const clamp = (v: number) => Math.min(yt.max, Math.max(yt.min, v));
  const band = (f.right - f.left) / Math.max(1, bars.length), bw = Math.min(band * 0.62, 90);
  const base = f.sy(clamp(0));
  const marks: string[] = [];
  bars.forEach((b, i) => {
    const cx = f.left + band * (i + 0.5);
    const parts: string[] = [`<title>${esc(b.label)}: ${esc(Number.isNaN(b.value) ? 'n/a' : show(b.value))}</title>`];
    let labelY = base - 6;
    if (!Number.isNaN(b.value)) {
      const y = f.sy(clamp(b.value));
      parts.push(`<rect x="${c(cx - bw / 2)}" y="${c(Math.min(y, base))}" width="${c(bw)}" height="${c(Math.abs(base - y))}" fill="${esc(b.color)}" fill-opacity="0.85"/>`);
      labelY = b.value >= 0 ? f.sy(clamp(b.value + b.error)) - 6 : f.sy(clamp(b.value - b.error)) + 14;
      if (b.error > 0) {
        const y0 = c(f.sy(clamp(b.value - b.error))), y1 = c(f.sy(clamp(b.value + b.error)));
        parts.push(`<path class="err" d="M${c(cx)} ${y0}V${y1}M${c(cx - 6)} ${y0}H${c(cx + 6)}M${c(cx - 6)} ${y1}H${c(cx + 6)}" stroke="#222" stroke-width="1.2" fill="none"/>`);
      }
    }
    parts.push(`<text class="value" x="${c(cx)}" y="${c(Math.max(f.top + 10, Math.min(f.bottom - 4, labelY)))}" text-anchor="middle" font-size="11" fill="#222" paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">${esc(Number.isNaN(b.value) ? 'n/a' : show(b.value))}</text>`);
    const maxChars = Math.max(3, Math.floor(band / (12 * 0.58)));
    const text = b.label.length > maxChars ? b.label.slice(0, maxChars - 1) + '…' : b.label;
    parts.push(`<text class="label" x="${c(cx)}" y="${c(f.bottom + 16)}" text-anchor="middle" fill="#222">${esc(text)}</text>`);
    marks.push(`<g class="bar">${parts.join('')}</g>`);
  });
  if (refValue !== undefined && refValue >= yt.min && refValue <= yt.max) {
    const y = c(f.sy(refValue));
    marks.push(`<line class="ref" x1="${c(f.left)}" y1="${y}" x2="${c(f.right)}" y2="${y}" stroke="#c00" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    if (refLabel) marks.push(`<text class="ref-label" x="${c(f.right - 4)}" y="${c(f.sy(refValue) - 5)}" text-anchor="end" font-size="11" fill="#c00" paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">${esc(refLabel)}</text>`);
  }
  if (!bars.length) marks.push(`<text class="empty" x="${c((f.left + f.right) / 2)}" y="${c((f.top + f.bottom) / 2)}" text-anchor="middle" fill="#777">no data</text>`);
  return [...f.head, ...marks, f.end].join('');
}

/** Scatter plot with one labelled point per entry; labels are nudged apart vertically. */
export function svgScatter(options: ScatterOptions): string {
  const fn = 'svgScatter';
  const { o, W, H } = chartArgs(fn, options, 'points');
  const all = (o.points as unknown[]).map((p, i) => {
    const po = checkObject(fn, `options.points[${i}]`, p);
    const label = checkString(fn, `options.points[${i}].label`, po.label, false);
    if (typeof po.x !== 'number' || typeof po.y !== 'number') throw typeError(fn, `options.points[${i}]`, 'a point with numbers x and y', p);
    return { label, x: po.x, y: po.y, color: po.color === undefined ? color(i) : checkString(fn, `options.points[${i}].color`, po.color) };
  });
  const pts = all.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const range = (v: number[]) => {
    if (!v.length) return niceTicks(0, 1);
    const lo = Math.min(...v), hi = Math.max(...v), pad = (hi - lo) * 0.08;
    return niceTicks(lo >= 0 ? Math.max(0, lo - pad) : lo - pad, hi + pad, 5); // non-negative data (KL) keeps a 0 origin
  };
  const f = frame({ width: W, height: H, title: o.title as string, xLabel: (o.xLabel as string) ?? '', yLabel: (o.yLabel as string) ?? '', x: range(pts.map((p) => p.x)), y: range(pts.map((p) => p.y)) });
  const placed = pts.map((p) => ({ ...p, px: f.sx(p.x), py: f.sy(p.y), ly: f.sy(p.y) + 4 })).sort((a, b) => a.py - b.py);
  for (let i = 1; i < placed.length; i++)
    for (let j = 0; j < i; j++)
      if (Math.abs(placed[i].ly - placed[j].ly) < 13 && Math.abs(placed[i].px - placed[j].px) < 8 + textWidth(placed[j].label, 11)) placed[i].ly = placed[j].ly + 13;
  const marks = placed.map((p) => {
    const leftSide = p.px + 8 + textWidth(p.label, 11) > f.right;
    const lx = leftSide ? p.px - 8 : p.px + 8;
    return `<g class="point"><title>${esc(p.label)}: ${esc(fmt(p.x))}, ${esc(fmt(p.y))}</title><circle cx="${c(p.px)}" cy="${c(p.py)}" r="5.5" fill="${esc(p.color)}" stroke="#fff" stroke-width="1.5"/><text x="${c(lx)}" y="${c(p.ly)}" text-anchor="${leftSide ? 'end' : 'start'}" font-size="11" fill="#222" paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">${esc(p.label)}</text></g>`;
  });
  const hidden = all.filter((p) => !pts.includes(p)).map((p) => p.label);
  if (hidden.length) marks.push(`<text class="note" x="${c(f.right - 4)}" y="${c(f.bottom - 6)}" text-anchor="end" font-size="10" fill="#777">not shown (non-finite): ${esc(hidden.join(', '))}</text>`);
  if (!all.length) marks.push(`<text class="empty" x="${c((f.left + f.right) / 2)}" y="${c((f.top + f.bottom) / 2)}" text-anchor="middle" fill="#777">no data</text>`);
  return [...f.head, ...marks, f.end].join('');
}
