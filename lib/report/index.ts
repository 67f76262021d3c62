/**
 * The report of an `rlhf demo` run (and of any training run): `report.html`, one self-contained
 * page with the headline numbers, the policy table and SVG plots, and `summary.md`, a short
 * Markdown summary. Plain string generation, no dependencies.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkString } from '../validate.js';
import { renderHtml } from './html.js';
import { renderMarkdown } from './markdown.js';
import { loadRuns, renderRunsHtml } from './runs.js';
import type { DemoSummary, MetricsByStage, RenderOptions } from './types.js';

export { smoothSeries, svgBarChart, svgLineChart, svgScatter, svgWinTieLoss } from './charts.js';
export { chartNotes, SMOOTHING, trainingCharts } from './curves.js';
export { loadRun, loadRuns, renderRunsHtml, type RunData } from './runs.js';
export { renderHtml } from './html.js';
export { renderMarkdown } from './markdown.js';
export { parseMetrics, readMetrics, type ReadMetricsOptions } from './metrics.js';
export { niceTicks, PALETTE } from './svg.js';
export type * from './types.js';

/**
 * Writes `report.html` and `summary.md` into `dir` (created if missing), each atomically.
 * @returns the two paths
 * @throws RlhfError `ERR_RLHF_IO` naming the path that could not be written
 */
export async function writeReport(
  dir: string,
  summary: DemoSummary,
  metrics: MetricsByStage = {},
  opts: RenderOptions = {},
): Promise<{ html: string; markdown: string }> {
  checkString('writeReport', 'dir', dir);
  const html = renderHtml(summary, metrics, opts);
  const markdown = renderMarkdown(summary, { title: opts.title === undefined ? undefined : opts.title });
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new RlhfError(ErrorCode.IO, `writeReport: cannot create ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const paths = { html: join(dir, 'report.html'), markdown: join(dir, 'summary.md') };
  await writeFileAtomic(paths.html, html);
  await writeFileAtomic(paths.markdown, markdown);
  return paths;
}

/**
 * `rlhf report`: reads the run folders (see lib/report/runs.ts) and writes one HTML page to
 * `output` atomically. @returns the runs read
 */
export async function writeRunReport(
  dirs: string[],
  output: string,
  opts: RenderOptions = {},
): Promise<Awaited<ReturnType<typeof loadRuns>>> {
  if (!Array.isArray(dirs) || !dirs.length || !dirs.every((d) => typeof d === 'string'))
    throw new TypeError(
      `writeRunReport: expected dirs to be a non-empty array of folder paths, received ${JSON.stringify(dirs)}`,
    );
  checkString('writeRunReport', 'output', output);
  const runs = await loadRuns(dirs);
  await writeFileAtomic(output, renderRunsHtml(runs, opts));
  return runs;
}
