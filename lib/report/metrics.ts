/**
 * Reads a metrics JSONL file (lib/train/metrics.ts: one `{stage, step, time, ...metrics}` object
 * per line) grouped by stage, in file order. A torn last line (a crash while appending) is
 * skipped; a bad line anywhere else is a format error. `null` (how JSON.stringify writes NaN and
 * Infinity) reads as NaN; booleans as 1/0; nested values are dropped.
 */
import { readFile } from 'node:fs/promises';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkString, options } from '../validate.js';
import type { MetricsByStage } from './types.js';

export interface ReadMetricsOptions {
  /** file every record under this stage name (for a run's own metrics file whose trainer uses a generic stage name, e.g. 'preference' for DPO) */
  stage?: string;
}

export async function readMetrics(path: string, opts?: ReadMetricsOptions): Promise<MetricsByStage> {
  checkString('readMetrics', 'path', path);
  const o = options('readMetrics', 'opts', opts);
  o.known(['stage']);
  const rename = o.has('stage') ? o.string('stage') : undefined;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new RlhfError(ErrorCode.IO, `readMetrics: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseMetrics(text, path, rename);
}

/** The parser behind readMetrics (`source` names the input in errors). */
export function parseMetrics(text: string, source = 'metrics', stage?: string): MetricsByStage {
  const out: MetricsByStage = {};
  const lines = text.split('\n');
  let last = lines.length - 1;
  while (last >= 0 && !lines[last].trim()) last--;
  for (let i = 0; i <= last; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (err) {
      if (i === last) break; // torn last line
      throw new RlhfError(
        ErrorCode.FORMAT,
        `readMetrics: ${source}:${i + 1} is not valid JSON (${(err as Error).message})`,
      );
    }
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) {
      if (i === last) break;
      throw new RlhfError(ErrorCode.FORMAT, `readMetrics: ${source}:${i + 1} is not a JSON object`);
    }
    const row: Record<string, number | string> = {};
    for (const [k, v] of Object.entries(rec as Record<string, unknown>)) {
      if (typeof v === 'number' || typeof v === 'string') row[k] = v;
      else if (v === null) row[k] = NaN;
      else if (typeof v === 'boolean') row[k] = v ? 1 : 0;
    }
    const name = stage ?? (typeof row.stage === 'string' && row.stage ? row.stage : 'unknown');
    (out[name] ??= []).push(row);
  }
  return out;
}
