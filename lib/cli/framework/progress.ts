/**
 * Renders a trainer's events. On a TTY each stage is one line redrawn in place:
 *
 *   sft [##########··········]  500/1000  loss 1.23  lr 2e-5  tok/s 12.3k  eta 3:05
 *
 * with 'log', 'eval' and 'checkpoint' lines printed above it. Elsewhere (CI, pipes) the same text
 * without the bar, as plain lines at most every `every` steps plus the last step.
 */
import type { StepEvent, TrainerEmitter, TrainerEvents } from '../../train/events.js';

export interface OutStream {
  write(s: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** shown before the bar; default the event's stage */
  label?: string;
  /** which metric keys to show, in order; default every metric of the event */
  metrics?: string[];
  /** non-TTY: print a line at most every this many steps (default: ~10 lines per stage) */
  every?: number;
  /** TTY: redraw at most this often, in ms (default 100; the last step is always drawn) */
  minIntervalMs?: number;
}

export interface Progress {
  /** Ends the progress line, prints `summaryLine` (if any) and stops listening. */
  done(summaryLine?: string): void;
}

const BAR_WIDTH = 20;
const CLEAR = '\r\x1b[K';
const SHORT_NAMES: Record<string, string> = { tokensPerSecond: 'tok/s', learningRate: 'lr' };

/** `m:ss`, or `h:mm:ss` from an hour; `-:--` for unknown (NaN, negative, infinite). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600),
    m = Math.floor((s % 3600) / 60),
    sec = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

const trimZeros = (s: string) => s.replace(/(\.\d*?)0+(?=$|e)/, '$1').replace(/\.(?=$|e)/, '');

/**
 * Compact, 3 significant digits: 0.000123 -> 1.23e-4, 0.5 -> 0.5, 1.234 -> 1.23, 512 -> 512,
 * 12345 -> 12.3k, 2.5e6 -> 2.5M. Integers below 1000 print whole.
 */
export function formatNumber(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return '0';
  const a = Math.abs(x),
    sign = x < 0 ? '-' : '';
  if (a < 1e-3) return trimZeros(x.toExponential(2));
  if (Number.isInteger(x) && a < 1000) return String(x);
  if (a < 999.5) return trimZeros(x.toPrecision(3));
  if (a >= 999.5e12) return trimZeros(x.toExponential(2)).replace('e+', 'e');
  // 999.6k would round to "1.00e+3k": such values move up to the next suffix
  const [scale, suffix] =
    a >= 999.5e9 ? [1e12, 'T'] : a >= 999.5e6 ? [1e9, 'G'] : a >= 999.5e3 ? [1e6, 'M'] : [1e3, 'k'];
  return sign + trimZeros((a / scale).toPrecision(3)) + suffix;
}

function bar(step: number, total: number): string {
  const frac = total > 0 ? Math.min(1, Math.max(0, step / total)) : 0;
  const filled = Math.round(frac * BAR_WIDTH);
  return `[${'#'.repeat(filled)}${'·'.repeat(BAR_WIDTH - filled)}]`;
}

function metricsText(metrics: Record<string, number>, keys?: string[]): string {
  return (keys ?? Object.keys(metrics))
    .filter((k) => typeof metrics[k] === 'number')
    .map((k) => `${SHORT_NAMES[k] ?? k} ${formatNumber(metrics[k])}`)
    .join('  ');
}

export function attachProgress(emitter: TrainerEmitter, out: OutStream, opts: ProgressOptions = {}): Progress {
  const tty = !!out.isTTY;
  const minInterval = opts.minIntervalMs ?? 100;
  let last: StepEvent | undefined; // the latest step event
  let shown: StepEvent | undefined; // the latest one on screen (TTY: the drawn line; else: printed)
  let onScreen = false; // TTY: a progress line is drawn and not yet ended
  let lastDraw = 0;
  let finished = false;

  const width = () => Math.max(40, (out.columns ?? 100) - 1);
  const label = (stage: string) => opts.label ?? stage;
  const every = (e: StepEvent) => opts.every ?? Math.max(1, Math.ceil(e.totalSteps / 10));

  function line(e: StepEvent): string {
    const digits = String(e.totalSteps).length;
    const parts = [
      tty ? `${label(e.stage)} ${bar(e.step, e.totalSteps)}` : label(e.stage),
      `${String(e.step).padStart(tty ? digits : 0)}/${e.totalSteps}`,
      metricsText(e.metrics, opts.metrics),
      e.step >= e.totalSteps ? '' : `eta ${formatDuration(e.etaSeconds)}`,
    ];
    const text = parts.filter(Boolean).join('  ');
    return tty && text.length > width() ? text.slice(0, width() - 1) + '…' : text;
  }

  function draw(e: StepEvent): void {
    out.write(CLEAR + line(e));
    shown = e;
    onScreen = true;
    lastDraw = Date.now();
  }

  /** Ends the current TTY line so the next write starts on a fresh one. */
  function endLine(): void {
    if (onScreen) out.write('\n');
    onScreen = false;
  }

  /** A line above the progress line (TTY) or a plain line. */
  function print(text: string): void {
    if (tty && onScreen) {
      out.write(CLEAR + text + '\n');
      if (last) draw(last);
    } else out.write(text + '\n');
  }

  const onStep = (e: StepEvent) => {
    const previous = last;
    last = e;
    if (tty) {
      if (previous && previous.stage !== e.stage) {
        if (shown !== previous) draw(previous); // the previous stage's final state stays on screen
        endLine();
      }
      if (!onScreen || e.step >= e.totalSteps || Date.now() - lastDraw >= minInterval) draw(e);
      return;
    }
    if (previous && previous.stage !== e.stage && shown !== previous) out.write(line(previous) + '\n');
    const n = every(e);
    const before = previous && previous.stage === e.stage && shown?.stage === e.stage ? shown.step : -Infinity;
    if (e.step >= e.totalSteps || Math.floor(e.step / n) > Math.floor(before / n)) {
      out.write(line(e) + '\n');
      shown = e;
    }
  };
  const onEval = (e: TrainerEvents['eval'][0]) =>
    print(`${label(e.stage)} eval @ step ${e.step}: ${metricsText(e.metrics)}`);
  const onCheckpoint = (e: TrainerEvents['checkpoint'][0]) =>
    print(`${label(e.stage)} checkpoint @ step ${e.step}: ${e.dir}`);
  const onLog = (e: TrainerEvents['log'][0]) => print(`${label(e.stage)}: ${e.message}`);

  emitter.on('step', onStep);
  emitter.on('eval', onEval);
  emitter.on('checkpoint', onCheckpoint);
  emitter.on('log', onLog);

  return {
    done(summaryLine?: string) {
      if (finished) return;
      finished = true;
      emitter.off('step', onStep);
      emitter.off('eval', onEval);
      emitter.off('checkpoint', onCheckpoint);
      emitter.off('log', onLog);
      if (last && shown !== last) {
        // the final state was throttled away (TTY) or fell between printed lines (stopped early)
        if (tty) draw(last);
        else out.write(line(last) + '\n');
      }
      endLine();
      if (summaryLine) out.write(summaryLine + '\n');
    },
  };
}
