/**
 * Standalone SVG charts: a line chart (training curves), a bar chart (win rate per method, with a
 * reference line) and a labelled scatter plot (gold score against KL). Each returns one `<svg>`
 * element as a string, valid XML, with every piece of text escaped.
 */
import { checkNumber, checkObject, checkString, typeError } from '../validate.js';
import { c, chartArgs, color, dash, esc, fmt, frame, niceTicks, SVG_NS_ATTR, textWidth, ticksWithin } from './svg.js';
import type { BarChartOptions, LineChartOptions, Point, ScatterOptions, WinTieLossOptions } from './types.js';

/** Sorted by x, non-finite x dropped, non-finite y kept as NaN (a gap); longer than `max`: bucket means. */
function prepare(points: Point[], max: number): Point[] {
  const pts = points
    .filter((p) => Array.isArray(p) && Number.isFinite(p[0]))
    .map((p): Point => [p[0], Number.isFinite(p[1]) ? p[1] : NaN]);
  pts.sort((a, b) => a[0] - b[0]);
  if (pts.length <= max) return pts;
  const out: Point[] = [],
    size = Math.ceil(pts.length / max);
  for (let i = 0; i < pts.length; i += size) {
    const b = pts.slice(i, i + size),
      ys = b.map((p) => p[1]).filter((y) => !Number.isNaN(y));
    out.push([b.reduce((s, p) => s + p[0], 0) / b.length, ys.length ? ys.reduce((s, y) => s + y, 0) / ys.length : NaN]);
  }
  return out;
}

/**
 * Exponential moving average with TensorBoard's debiasing: s_t = w·s_{t−1} + (1 − w)·x_t divided by
 * 1 − w^t (t counts finite points); NaN points stay NaN and do not advance the average.
 */
export function smoothSeries(points: Point[], weight: number): Point[] {
  let acc = 0,
    n = 0;
  return points.map(([x, y]): Point => {
    if (!Number.isFinite(y)) return [x, NaN];
    acc = weight * acc + (1 - weight) * y;
    n++;
    return [x, weight > 0 ? acc / (1 - weight ** n) : y];
  });
}

function segmentsOf(points: Point[]): Point[][] {
  const segments: Point[][] = [];
  let cur: Point[] = [];
  for (const p of points) {
    if (Number.isNaN(p[1])) {
      if (cur.length) segments.push(cur);
      cur = [];
    } else cur.push(p);
  }
  if (cur.length) segments.push(cur);
  return segments;
}

/**
 * Line chart; NaN points split a line, isolated points and short series get markers. With
 * `smooth` (an EMA weight in [0, 1)) a series longer than 10 points is drawn twice: raw, faint,
 * and smoothed on top. A series without a finite point is not drawn and not in the legend; a note
 * under the plot names it. `notes` are printed under the plot, one line each.
 */
export function svgLineChart(options: LineChartOptions): string {
  const fn = 'svgLineChart';
  const { o, W, H } = chartArgs(fn, options, 'series');
  const max = o.maxPoints === undefined ? 300 : checkNumber(fn, 'options.maxPoints', o.maxPoints, { min: 2 });
  const smooth = o.smooth === undefined ? 0 : checkNumber(fn, 'options.smooth', o.smooth, { min: 0, max: 0.999 });
  const given =
    o.notes === undefined ? [] : (o.notes as unknown[]).map((n, i) => checkString(fn, `options.notes[${i}]`, n, false));
  const all = (o.series as unknown[]).map((s, i) => {
    const so = checkObject(fn, `options.series[${i}]`, s);
    const name = checkString(fn, `options.series[${i}].name`, so.name, false);
    if (!Array.isArray(so.points)) throw typeError(fn, `options.series[${i}].points`, 'an array of [x, y]', so.points);
    const raw = prepare(so.points as Point[], max);
    return { name, index: i, raw, points: smooth > 0 && raw.length > 10 ? smoothSeries(raw, smooth) : raw };
  });
  const series = all.filter((s) => s.raw.some((p) => !Number.isNaN(p[1])));
  const hidden = all.filter((s) => !series.includes(s)).map((s) => s.name);
  if (hidden.length) given.push(`not plotted (no data): ${hidden.join(', ')}`);
  const notes = given.flatMap((n) => wrapText(n, W - 24, NOTE_SIZE));
  const finite = series.flatMap((s) => s.raw.filter((p) => !Number.isNaN(p[1])));
  const xs = finite.map((p) => p[0]),
    ys = finite.map((p) => p[1]);
  const integral = xs.every((x) => Number.isInteger(x)); // steps and iterations: no fractional ticks
  const noteSpace = NOTE_LINE * notes.length;
  const xt = finite.length
    ? niceTicks(Math.min(...xs), Math.max(...xs), Math.max(3, Math.round(W / 110)), integral ? 1 : 0)
    : niceTicks(0, 1);
  const yt = finite.length
    ? niceTicks(Math.min(...ys), Math.max(...ys), Math.max(3, Math.round((H - noteSpace) / 60)))
    : niceTicks(0, 1);
  const legend = series.map((s) => ({ name: s.name, color: color(s.index), dash: dash(s.index) }));
  const f = frame({
    width: W,
    height: H,
    title: o.title as string,
    xLabel: (o.xLabel as string) ?? '',
    yLabel: (o.yLabel as string) ?? '',
    x: xt,
    y: yt,
    legend,
    bottomSpace: noteSpace,
  });
  const marks: string[] = [];
  const pathOf = (segments: Point[][]) =>
    segments
      .filter((g) => g.length > 1)
      .map((g) => g.map((p, j) => `${j ? 'L' : 'M'}${c(f.sx(p[0]))} ${c(f.sy(p[1]))}`).join(''))
      .join('');
  for (const s of series) {
    const i = s.index;
    const da = dash(i) ? ` stroke-dasharray="${dash(i)}"` : '';
    const parts: string[] = [];
    const smoothed = s.points !== s.raw;
    if (smoothed) {
      const rd = pathOf(segmentsOf(s.raw));
      if (rd)
        parts.push(
          `<path class="raw" d="${rd}" fill="none" stroke="${color(i)}" stroke-opacity="0.25" stroke-width="1" stroke-linejoin="round"${da}/>`,
        );
    }
    const segments = segmentsOf(s.points);
    const d = pathOf(segments);
    if (d)
      parts.push(
        `<path${smoothed ? ' class="smoothed"' : ''} d="${d}" fill="none" stroke="${color(i)}" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round"${da}/>`,
      );
    const dots = s.points.length <= 40 ? segments.flat() : segments.filter((g) => g.length === 1).flat();
    for (const p of dots)
      parts.push(`<circle cx="${c(f.sx(p[0]))}" cy="${c(f.sy(p[1]))}" r="2.8" fill="${color(i)}"/>`);
    marks.push(
      `<g class="series" data-name="${esc(s.name)}"${smoothed ? ` data-smoothing="${smooth}"` : ''}>${parts.join('')}</g>`,
    );
  }
  if (!finite.length)
    marks.push(
      `<text class="empty" x="${c((f.left + f.right) / 2)}" y="${c((f.top + f.bottom) / 2)}" text-anchor="middle" fill="#777">no data</text>`,
    );
  notes.forEach((n, k) =>
    marks.push(
      `<text class="note" x="12" y="${c(H - noteSpace + 10 + NOTE_LINE * k)}" font-size="${NOTE_SIZE}" fill="#666">${esc(n)}</text>`,
    ),
  );
  return [...f.head, ...marks, f.end].join('');
}

/** note text under a line chart: font size and line pitch, px (the pitch leaves room for Greek and math glyphs from fallback fonts) */
export const NOTE_SIZE = 10;
export const NOTE_LINE = 16;

/** Greedy word wrap to lines of at most `width` px at `size`, measured with a wide glyph estimate (0.7 em: Greek and math symbols come from wider fallback fonts) so lines never overrun. */
export function wrapText(text: string, width: number, size: number): string[] {
  const max = Math.max(8, Math.floor(width / (size * 0.7)));
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const w = word.length > max ? word.slice(0, max - 1) + '…' : word;
    if (!line) line = w;
    else if (line.length + 1 + w.length <= max) line += ' ' + w;
    else (lines.push(line), (line = w));
  }
  if (line) lines.push(line);
  return lines;
}

/** `text` cut with "…" to fit `width` px at `size` (the estimate of textWidth). */
export function fitText(text: string, width: number, size: number): string {
  const maxChars = Math.max(4, Math.floor(width / (size * 0.58)));
  return text.length > maxChars ? text.slice(0, maxChars - 1) + '…' : text;
}

/**
 * Win / tie / loss of each policy as one horizontal bar of three parts summing to 100%, with the
 * win rate that counts ties half written beside it and a dashed line at 50%. Percent labels sit
 * inside a part only when they fit; every value is also in the bar's tooltip.
 */
export function svgWinTieLoss(options: WinTieLossOptions): string {
  const fn = 'svgWinTieLoss';
  const { o, W } = chartArgs(fn, options, 'rows');
  const rows = (o.rows as unknown[]).map((r, i) => {
    const ro = checkObject(fn, `options.rows[${i}]`, r);
    const label = checkString(fn, `options.rows[${i}].label`, ro.label, false);
    const v = (k: string) => (typeof ro[k] === 'number' && Number.isFinite(ro[k]) ? (ro[k] as number) : NaN);
    const win = v('win'),
      tie = v('tie'),
      loss = v('loss');
    const total = win + tie + loss;
    if (Number.isFinite(total) && Math.abs(total - 1) > 1e-6)
      throw new RangeError(`${fn}: expected options.rows[${i}] win + tie + loss to be 1, received ${total}`);
    return { label, win, tie, loss };
  });
  const labelW = Math.min(140, Math.max(40, ...rows.map((r) => textWidth(r.label, 12) + 12)));
  const rateW = 120,
    left = labelW + 8,
    right = W - rateW,
    barH = 22,
    gap = 12,
    top = 58;
  const H = top + rows.length * (barH + gap) + 34;
  const sx = (f: number) => left + f * (right - left);
  const parts = [
    { key: 'win', fill: '#009E73', text: '#fff' },
    { key: 'tie', fill: '#BBBBBB', text: '#222' },
    { key: 'loss', fill: '#D55E00', text: '#fff' },
  ] as const;
  const out: string[] = [];
  out.push(
    `<svg${SVG_NS_ATTR} class="chart wtl" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<title>${esc(o.title)}</title><rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(
    `<text class="title" x="${c(W / 2)}" y="20" text-anchor="middle" font-size="14" font-weight="600" fill="#222">${esc(fitText(o.title as string, W - 16, 14))}</text>`,
  );
  // legend
  let lx = left;
  const legend: string[] = [];
  for (const p of parts) {
    legend.push(
      `<rect x="${c(lx)}" y="31" width="12" height="12" fill="${p.fill}"/><text x="${c(lx + 16)}" y="41" font-size="11" fill="#333">${p.key}</text>`,
    );
    lx += 16 + textWidth(p.key, 11) + 16;
  }
  legend.push(`<text x="${c(W - 8)}" y="41" text-anchor="end" font-size="11" fill="#333">win rate (ties ½)</text>`);
  out.push(`<g class="legend">${legend.join('')}</g>`);
  rows.forEach((r, i) => {
    const y = top + i * (barH + gap);
    const g: string[] = [];
    const rate = r.win + r.tie / 2;
    g.push(
      `<title>${esc(r.label)}: win ${pctText(r.win)}, tie ${pctText(r.tie)}, loss ${pctText(r.loss)}; win rate with ties counted half ${pctText(rate)}</title>`,
    );
    g.push(
      `<text class="label" x="${c(labelW)}" y="${c(y + barH / 2)}" dy="0.32em" text-anchor="end" fill="#222">${esc(fitText(r.label, labelW - 4, 12))}</text>`,
    );
    let x0 = 0;
    for (const p of parts) {
      const v = r[p.key];
      if (!Number.isFinite(v)) continue;
      const w = sx(x0 + v) - sx(x0);
      g.push(`<rect class="${p.key}" x="${c(sx(x0))}" y="${y}" width="${c(w)}" height="${barH}" fill="${p.fill}"/>`);
      const t = pctText(v);
      if (w >= textWidth(t, 11) + 6)
        g.push(
          `<text class="part" x="${c(sx(x0) + w / 2)}" y="${c(y + barH / 2)}" dy="0.32em" text-anchor="middle" font-size="11" fill="${p.text}">${t}</text>`,
        );
      x0 += v;
    }
    if (!Number.isFinite(r.win + r.tie + r.loss))
      g.push(`<text x="${c(left + 4)}" y="${c(y + barH / 2)}" dy="0.32em" font-size="11" fill="#777">n/a</text>`);
    g.push(
      `<text class="rate" x="${c(W - 8)}" y="${c(y + barH / 2)}" dy="0.32em" text-anchor="end" font-weight="600" fill="#222">${Number.isFinite(rate) ? pctText(rate) : 'n/a'}</text>`,
    );
    const data = (v: number) => (Number.isFinite(v) ? String(v) : '');
    out.push(
      `<g class="wtl-row" data-label="${esc(r.label)}" data-win="${data(r.win)}" data-tie="${data(r.tie)}" data-loss="${data(r.loss)}" data-rate="${data(rate)}">${g.join('')}</g>`,
    );
  });
  const yEnd = top + rows.length * (barH + gap) - gap + 4;
  out.push(
    `<line class="ref" x1="${c(sx(0.5))}" y1="${top - 4}" x2="${c(sx(0.5))}" y2="${c(yEnd)}" stroke="#222" stroke-width="1" stroke-dasharray="4 3"/>`,
  );
  out.push(
    `<text class="ref-label" x="${c(sx(0.5))}" y="${c(yEnd + 14)}" text-anchor="middle" font-size="10.5" fill="#444">50%</text>`,
  );
  for (const f of [0, 1])
    out.push(
      `<text x="${c(sx(f))}" y="${c(yEnd + 14)}" text-anchor="${f ? 'end' : 'start'}" font-size="10.5" fill="#444">${f * 100}%</text>`,
    );
  if (!rows.length)
    out.push(`<text class="empty" x="${c(W / 2)}" y="${top + 10}" text-anchor="middle" fill="#777">no data</text>`);
  out.push('</svg>');
  return out.join('');
}

const pctText = (v: number) => (Number.isFinite(v) ? `${(100 * v).toFixed(1)}%` : 'n/a');

/** Bar chart with optional error bars and a dashed reference line (e.g. 50% win rate). */
export function svgBarChart(options: BarChartOptions): string {
  const fn = 'svgBarChart';
  const { o, W, H } = chartArgs(fn, options, 'bars');
  const bars = (o.bars as unknown[]).map((b, i) => {
    const bo = checkObject(fn, `options.bars[${i}]`, b);
    const label = checkString(fn, `options.bars[${i}].label`, bo.label, false);
    if (typeof bo.value !== 'number') throw typeError(fn, `options.bars[${i}].value`, 'a number', bo.value);
    const error = bo.error === undefined ? 0 : checkNumber(fn, `options.bars[${i}].error`, bo.error, { min: 0 });
    return {
      label,
      value: Number.isFinite(bo.value) ? bo.value : NaN,
      error,
      color: bo.color === undefined ? color(i) : checkString(fn, `options.bars[${i}].color`, bo.color),
    };
  });
  const ref = o.referenceLine === undefined ? undefined : checkObject(fn, 'options.referenceLine', o.referenceLine);
  const refValue = ref ? checkNumber(fn, 'options.referenceLine.value', ref.value) : undefined;
  const refLabel = ref ? checkString(fn, 'options.referenceLine.label', ref.label, false) : '';
  if (o.format !== undefined && typeof o.format !== 'function')
    throw typeError(fn, 'options.format', 'a function', o.format);
  const show = o.format === undefined ? (v: number) => fmt(v) : (o.format as (v: number) => string);
  const vals = bars.filter((b) => !Number.isNaN(b.value)).flatMap((b) => [b.value - b.error, b.value + b.error]);
  if (refValue !== undefined) vals.push(refValue);
  const yMin = o.yMin === undefined ? undefined : checkNumber(fn, 'options.yMin', o.yMin);
  const yMax = o.yMax === undefined ? undefined : checkNumber(fn, 'options.yMax', o.yMax);
  const lo = yMin ?? Math.min(0, ...vals),
    hi = yMax ?? Math.max(0, ...vals);
  if (hi < lo || (hi === lo && yMin !== undefined && yMax !== undefined))
    throw new RangeError(`${fn}: expected options.yMax (${hi}) to be above options.yMin (${lo})`);
  const target = Math.max(3, Math.round(H / 60));
  const yt = yMin !== undefined && yMax !== undefined ? ticksWithin(lo, hi, target) : niceTicks(lo, hi, target);
  const f = frame({
    width: W,
    height: H,
    title: o.title as string,
    xLabel: '',
    yLabel: (o.yLabel as string) ?? '',
    y: yt,
  });
  const clamp = (v: number) => Math.min(yt.max, Math.max(yt.min, v));
  const band = (f.right - f.left) / Math.max(1, bars.length),
    bw = Math.min(band * 0.62, 90);
  const base = f.sy(clamp(0));
  const marks: string[] = [];
  bars.forEach((b, i) => {
    const cx = f.left + band * (i + 0.5);
    const parts: string[] = [`<title>${esc(b.label)}: ${esc(Number.isNaN(b.value) ? 'n/a' : show(b.value))}</title>`];
    let labelY = base - 6;
    if (!Number.isNaN(b.value)) {
      const y = f.sy(clamp(b.value));
      parts.push(
        `<rect x="${c(cx - bw / 2)}" y="${c(Math.min(y, base))}" width="${c(bw)}" height="${c(Math.abs(base - y))}" fill="${esc(b.color)}" fill-opacity="0.85"/>`,
      );
      labelY = b.value >= 0 ? f.sy(clamp(b.value + b.error)) - 6 : f.sy(clamp(b.value - b.error)) + 14;
      if (b.error > 0) {
        const y0 = c(f.sy(clamp(b.value - b.error))),
          y1 = c(f.sy(clamp(b.value + b.error)));
        parts.push(
          `<path class="err" d="M${c(cx)} ${y0}V${y1}M${c(cx - 6)} ${y0}H${c(cx + 6)}M${c(cx - 6)} ${y1}H${c(cx + 6)}" stroke="#222" stroke-width="1.2" fill="none"/>`,
        );
      }
    }
    parts.push(
      `<text class="value" x="${c(cx)}" y="${c(Math.max(f.top + 10, Math.min(f.bottom - 4, labelY)))}" text-anchor="middle" font-size="11" fill="#222" paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">${esc(Number.isNaN(b.value) ? 'n/a' : show(b.value))}</text>`,
    );
    const maxChars = Math.max(3, Math.floor(band / (12 * 0.58)));
    const text = b.label.length > maxChars ? b.label.slice(0, maxChars - 1) + '…' : b.label;
    parts.push(
      `<text class="label" x="${c(cx)}" y="${c(f.bottom + 16)}" text-anchor="middle" fill="#222">${esc(text)}</text>`,
    );
    marks.push(`<g class="bar">${parts.join('')}</g>`);
  });
  if (refValue !== undefined && refValue >= yt.min && refValue <= yt.max) {
    const y = c(f.sy(refValue));
    marks.push(
      `<line class="ref" x1="${c(f.left)}" y1="${y}" x2="${c(f.right)}" y2="${y}" stroke="#c00" stroke-width="1.5" stroke-dasharray="6 4"/>`,
    );
    if (refLabel)
      marks.push(
        `<text class="ref-label" x="${c(f.right - 4)}" y="${c(f.sy(refValue) - 5)}" text-anchor="end" font-size="11" fill="#c00" paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">${esc(refLabel)}</text>`,
      );
  }
  if (!bars.length)
    marks.push(
      `<text class="empty" x="${c((f.left + f.right) / 2)}" y="${c((f.top + f.bottom) / 2)}" text-anchor="middle" fill="#777">no data</text>`,
    );
  return [...f.head, ...marks, f.end].join('');
}

/** Scatter plot with one labelled point per entry; labels are nudged apart vertically. */
export function svgScatter(options: ScatterOptions): string {
  const fn = 'svgScatter';
  const { o, W, H } = chartArgs(fn, options, 'points');
  const all = (o.points as unknown[]).map((p, i) => {
    const po = checkObject(fn, `options.points[${i}]`, p);
    const label = checkString(fn, `options.points[${i}].label`, po.label, false);
    if (typeof po.x !== 'number' || typeof po.y !== 'number')
      throw typeError(fn, `options.points[${i}]`, 'a point with numbers x and y', p);
    return {
      label,
      x: po.x,
      y: po.y,
      color: po.color === undefined ? color(i) : checkString(fn, `options.points[${i}].color`, po.color),
    };
  });
  const pts = all.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const range = (v: number[]) => {
    if (!v.length) return niceTicks(0, 1);
    const lo = Math.min(...v),
      hi = Math.max(...v),
      pad = (hi - lo) * 0.08;
    return niceTicks(lo >= 0 ? Math.max(0, lo - pad) : lo - pad, hi + pad, 5); // non-negative data (KL) keeps a 0 origin
  };
  const f = frame({
    width: W,
    height: H,
    title: o.title as string,
    xLabel: (o.xLabel as string) ?? '',
    yLabel: (o.yLabel as string) ?? '',
    x: range(pts.map((p) => p.x)),
    y: range(pts.map((p) => p.y)),
  });
  // each label right of its point (left when it would cross the plot's edge); a label whose box
  // meets an earlier one moves down a line until it is clear
  const W11 = (t: string) => t.length * 11 * 0.66; // generous: overlap checks must not underestimate
  const placed = pts
    .map((p) => {
      const px = f.sx(p.x),
        py = f.sy(p.y),
        leftSide = px + 8 + W11(p.label) > f.right;
      const x0 = leftSide ? px - 8 - W11(p.label) : px + 8;
      return { ...p, px, py, leftSide, x0, x1: x0 + W11(p.label), ly: py + 4 };
    })
    .sort((a, b) => a.py - b.py || a.px - b.px);
  for (let i = 1; i < placed.length; i++) {
    for (let moved = true, guard = 0; moved && guard < placed.length; guard++) {
      moved = false;
      for (let j = 0; j < i; j++) {
        const a = placed[i],
          b = placed[j];
        if (a.x0 < b.x1 + 4 && b.x0 < a.x1 + 4 && Math.abs(a.ly - b.ly) < 14) ((a.ly = b.ly + 14), (moved = true));
      }
    }
  }
  const marks = placed.map((p) => {
    const lx = p.leftSide ? p.px - 8 : p.px + 8;
    return `<g class="point"><title>${esc(p.label)}: ${esc(fmt(p.x))}, ${esc(fmt(p.y))}</title><circle cx="${c(p.px)}" cy="${c(p.py)}" r="5.5" fill="${esc(p.color)}" stroke="#fff" stroke-width="1.5"/><text x="${c(lx)}" y="${c(p.ly)}" text-anchor="${p.leftSide ? 'end' : 'start'}" font-size="11" fill="#222" paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">${esc(p.label)}</text></g>`;
  });
  const hidden = all.filter((p) => !pts.includes(p)).map((p) => p.label);
  if (hidden.length)
    marks.push(
      `<text class="note" x="${c(f.right - 4)}" y="${c(f.bottom - 6)}" text-anchor="end" font-size="10" fill="#777">not shown (non-finite): ${esc(hidden.join(', '))}</text>`,
    );
  if (!all.length)
    marks.push(
      `<text class="empty" x="${c((f.left + f.right) / 2)}" y="${c((f.top + f.bottom) / 2)}" text-anchor="middle" fill="#777">no data</text>`,
    );
  return [...f.head, ...marks, f.end].join('');
}
