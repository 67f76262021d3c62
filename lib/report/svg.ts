/**
 * SVG building blocks shared by the charts: escaping, number formatting, "nice" axis ticks
 * (steps of 1, 2 or 5 × 10^k), the colour-blind-safe palette and the chart frame (title, legend,
 * grid, axes, tick and axis labels). Everything is plain strings; no DOM.
 */
import { checkNumber, checkObject, checkString, typeError } from '../validate.js';

/** The namespace attribute of a standalone SVG (renderHtml drops it: inline SVG in HTML needs none). */
export const SVG_NS_ATTR = ' xmlns="http://www.w3.org/2000/svg"';

/** Okabe–Ito colours (yellow left out: too faint on white). Past 8 series the lines also get dashes. */
export const PALETTE = [
  '#0072B2',
  '#E69F00',
  '#009E73',
  '#D55E00',
  '#CC79A7',
  '#56B4E9',
  '#000000',
  '#999999',
] as const;
const DASHES = ['', '6 3', '2 3', '8 3 2 3'];

export function color(i: number): string {
  return PALETTE[i % PALETTE.length];
}
export function dash(i: number): string {
  return DASHES[Math.floor(i / PALETTE.length) % DASHES.length];
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for XML/HTML content and attribute values; control characters other than tab/newline are dropped. */
export function esc(value: unknown): string {
  return (
    String(value)
      .replace(/[&<>"']/g, (c) => ESCAPES[c])
      // eslint-disable-next-line no-control-regex -- XML 1.0 forbids these characters; they are removed
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
  );
}

/** A coordinate with one decimal, never "-0" or "NaN". */
export function c(n: number): string {
  if (!Number.isFinite(n)) return '0';
  const r = Math.round(n * 10) / 10;
  return String(r === 0 ? 0 : r);
}

/** Three significant digits, exponent notation for very large or small magnitudes; 'n/a' for NaN/Infinity. */
export function fmt(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return 'n/a';
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3))
    return v
      .toExponential(digits - 1)
      .replace(/\.?0+e/, 'e')
      .replace('e+', 'e');
  const s = String(Number(v.toPrecision(digits)));
  return s === '-0' ? '0' : s;
}

export interface Ticks {
  min: number;
  max: number;
  step: number;
  values: number[];
}

/** About `target` ticks at multiples of 1, 2 or 5 × 10^k (at least `minStep`) covering [lo, hi]; widens a zero-width or empty range. */
export function niceTicks(lo: number, hi: number, target = 5, minStep = 0): Ticks {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) ((lo = 0), (hi = 1));
  if (lo > hi) [lo, hi] = [hi, lo];
  if (hi - lo <= Math.max(Math.abs(lo), Math.abs(hi)) * 1e-12) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    ((lo -= pad), (hi += pad));
  }
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = Math.max(minStep, (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag);
  const i0 = Math.floor(lo / step + 1e-9),
    i1 = Math.ceil(hi / step - 1e-9);
  const values: number[] = [];
  for (let i = i0; i <= i1; i++) values.push(clean(i * step));
  return { min: values[0], max: values[values.length - 1], step, values };
}

/** Ticks for a fixed domain: the nice values inside [lo, hi], the domain kept as given. */
export function ticksWithin(lo: number, hi: number, target = 5): Ticks {
  const t = niceTicks(lo, hi, target);
  const eps = t.step * 1e-9;
  return { min: lo, max: hi, step: t.step, values: t.values.filter((v) => v >= lo - eps && v <= hi + eps) };
}

function clean(v: number): number {
  const r = Number(v.toPrecision(12));
  return r === 0 ? 0 : r;
}

/** A tick label with as many decimals as the step needs. */
export function tickLabel(v: number, step: number): string {
  const a = Math.max(Math.abs(v), step);
  if (a >= 1e6 || step < 1e-4) return fmt(v, 3);
  const decimals = Math.max(0, Math.min(8, -Math.floor(Math.log10(step) + 1e-9)));
  const s = v.toFixed(decimals);
  return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s;
}

/** Approximate rendered width of `text` at `size` px (sans-serif average glyph ~0.58 em). */
export function textWidth(text: string, size = 12): number {
  return text.length * size * 0.58;
}

export interface LegendEntry {
  name: string;
  color: string;
  dash?: string;
}

export interface FrameOptions {
  width: number;
  height: number;
  title: string;
  xLabel: string;
  yLabel: string;
  y: Ticks;
  /** numeric x axis; leave out for a categorical one (the caller draws category labels) */
  x?: Ticks;
  legend?: LegendEntry[];
  /** extra room under the x-axis label (notes), px */
  bottomSpace?: number;
}

export interface Frame {
  left: number;
  top: number;
  right: number;
  bottom: number;
  sx: (x: number) => number;
  sy: (y: number) => number;
  /** the opening of the SVG through the axes; append marks, then `end` */
  head: string[];
  end: string;
}

/** Title, legend, grid lines, axes, tick labels and axis labels; returns the plot geometry. */
export function frame(o: FrameOptions): Frame {
  const { width: W, height: H } = o;
  const head: string[] = [];
  head.push(
    `<svg${SVG_NS_ATTR} class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif" font-size="12">`,
  );
  head.push(`<title>${esc(o.title)}</title>`, `<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  const maxTitle = Math.max(4, Math.floor((W - 16) / (14 * 0.58)));
  const title = o.title.length > maxTitle ? o.title.slice(0, maxTitle - 1) + '…' : o.title;
  head.push(
    `<text class="title" x="${c(W / 2)}" y="20" text-anchor="middle" font-size="14" font-weight="600" fill="#222">${esc(title)}</text>`,
  );
  // legend: entries laid out left to right, wrapping
  let top = 34;
  if (o.legend?.length) {
    let x = 12,
      row = 0;
    const items: string[] = [];
    for (const e of o.legend) {
      const w = 26 + textWidth(e.name, 11) + 14;
      if (x + w > W - 8 && x > 12) ((x = 12), row++);
      const y = 38 + row * 16;
      const d = e.dash ? ` stroke-dasharray="${e.dash}"` : '';
      items.push(
        `<line x1="${c(x)}" y1="${y - 4}" x2="${c(x + 20)}" y2="${y - 4}" stroke="${esc(e.color)}" stroke-width="2.5"${d}/>`,
      );
      items.push(`<text x="${c(x + 25)}" y="${y}" font-size="11" fill="#333">${esc(e.name)}</text>`);
      x += w;
    }
    head.push(`<g class="legend">${items.join('')}</g>`);
    top = 38 + row * 16 + 12;
  }
  const yLabels = o.y.values.map((v) => tickLabel(v, o.y.step));
  const left = 22 + Math.max(18, ...yLabels.map((s) => textWidth(s, 11))) + 8;
  const right = W - 16,
    bottom = H - (o.x ? 44 : 52) - (o.bottomSpace ?? 0);
  const span = (t: Ticks) => t.max - t.min || 1;
  const sy = (y: number) => bottom - ((y - o.y.min) / span(o.y)) * (bottom - top);
  const xt = o.x;
  const sx = xt ? (x: number) => left + ((x - xt.min) / span(xt)) * (right - left) : (x: number) => x;
  head.push(
    `<rect class="plot" x="${c(left)}" y="${c(top)}" width="${c(right - left)}" height="${c(bottom - top)}" fill="#fbfbfb" stroke="none"/>`,
  );
  const grid: string[] = [];
  o.y.values.forEach((v, i) => {
    const y = c(sy(v));
    grid.push(
      `<line x1="${c(left)}" y1="${y}" x2="${c(right)}" y2="${y}" stroke="${v === 0 ? '#999' : '#e4e4e4'}" stroke-width="1"/>`,
    );
    grid.push(
      `<text x="${c(left - 6)}" y="${y}" dy="0.32em" text-anchor="end" font-size="11" fill="#444">${esc(yLabels[i])}</text>`,
    );
  });
  if (xt)
    for (const v of xt.values) {
      const x = c(sx(v));
      grid.push(
        `<line x1="${x}" y1="${c(top)}" x2="${x}" y2="${c(bottom)}" stroke="${v === 0 ? '#999' : '#eeeeee'}" stroke-width="1"/>`,
      );
      grid.push(
        `<text x="${x}" y="${c(bottom + 18)}" text-anchor="middle" font-size="11" fill="#444">${esc(tickLabel(v, xt.step))}</text>`,
      );
    }
  head.push(`<g class="grid">${grid.join('')}</g>`);
  head.push(
    `<path class="axes" d="M${c(left)} ${c(top)}V${c(bottom)}H${c(right)}" fill="none" stroke="#555" stroke-width="1"/>`,
  );
  if (o.xLabel)
    head.push(
      `<text class="xlabel" x="${c((left + right) / 2)}" y="${H - 8 - (o.bottomSpace ?? 0)}" text-anchor="middle" fill="#333">${esc(o.xLabel)}</text>`,
    );
  if (o.yLabel)
    head.push(
      `<text class="ylabel" transform="translate(14 ${c((top + bottom) / 2)}) rotate(-90)" text-anchor="middle" fill="#333">${esc(o.yLabel)}</text>`,
    );
  return { left, top, right, bottom, sx, sy, head, end: '</svg>' };
}

/** Shared argument checks of the chart functions. */
export function chartArgs(
  fn: string,
  value: unknown,
  list: string,
): { o: Record<string, unknown>; W: number; H: number } {
  const o = checkObject(fn, 'options', value);
  checkString(fn, 'options.title', o.title, false);
  for (const k of ['xLabel', 'yLabel']) if (o[k] !== undefined) checkString(fn, `options.${k}`, o[k], false);
  if (!Array.isArray(o[list])) throw typeError(fn, `options.${list}`, 'an array', o[list]);
  const size = (k: string, d: number, min: number) => {
    return Math.round(o[k] === undefined ? d : checkNumber(fn, `options.${k}`, o[k], { min, max: 10000 }));
  };
  return { o, W: size('width', 640, 200), H: size('height', 320, 150) };
}
