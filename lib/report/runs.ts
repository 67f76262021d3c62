/**
 * The report of any run folders (`rlhf report RUN_DIR…`): what each folder holds is found on disk.
 *
 *   summary.json with `policies`   an `rlhf demo` folder: the demo report, with the metrics.jsonl
 *                                  of its stage folders (sft/, rm/, ppo/, …)
 *   metrics.jsonl                  a training command's --output folder (its stage from the records)
 *   <sub>/metrics.jsonl            stage folders one level down (named by the folder)
 *   samples.jsonl                  RL samples logged during training (prompt, response, reward, KL)
 *
 * One demo folder gives the demo report; anything else gives the runs report: a table of the runs
 * with each stage's final metrics, the training curves (overlaid, one series per run, when there
 * are several), each demo's policy comparison, and the first and last logged RL samples per run.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pathExists } from '../io/atomic.js';
import { ErrorCode, RlhfError } from '../errors.js';
import { trainingCharts, stageLabel, orderStages } from './curves.js';
import { renderHtml, REPORT_CSS, inlineSvg } from './html.js';
import { num, pct, policyNames, winTieLoss } from './format.js';
import { readMetrics } from './metrics.js';
import { svgWinTieLoss } from './charts.js';
import { esc } from './svg.js';
import type { DemoSummary, MetricsByStage, RenderOptions, RunSamples } from './types.js';

export interface RunData {
  /** shown in legends and tables: the folder's name (made unique) */
  name: string;
  dir: string;
  summary?: DemoSummary;
  metrics: MetricsByStage;
  samples: RunSamples[];
}

async function readSamples(path: string): Promise<RunSamples[]> {
  if (!(await pathExists(path))) return [];
  const out: RunSamples[] = [];
  const lines = (await readFile(path, 'utf8')).split('\n');
  lines.forEach((l, i) => {
    if (!l.trim()) return;
    try {
      const r = JSON.parse(l);
      if (r && typeof r.stage === 'string' && typeof r.step === 'number' && Array.isArray(r.samples)) out.push(r);
    } catch (err) {
      if (i < lines.length - 2)
        throw new RlhfError(ErrorCode.FORMAT, `${path}:${i + 1} is not valid JSON (${(err as Error).message})`);
    }
  });
  return out;
}

/** Reads one run folder; an RlhfError (IO) when it holds none of the files above. */
export async function loadRun(dir: string): Promise<RunData> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    throw new RlhfError(ErrorCode.IO, `report: cannot read the run folder ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const run: RunData = { name: basename(dir), dir, metrics: {}, samples: [] };
  if (entries.includes('summary.json')) {
    try {
      const s = JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8'));
      if (s && typeof s === 'object' && s.policies && typeof s.policies === 'object') run.summary = s;
    } catch (err) {
      throw new RlhfError(
        ErrorCode.FORMAT,
        `report: ${join(dir, 'summary.json')} is not valid JSON (${(err as Error).message})`,
      );
    }
  }
  if (entries.includes('metrics.jsonl')) Object.assign(run.metrics, await readMetrics(join(dir, 'metrics.jsonl')));
  run.samples.push(...(await readSamples(join(dir, 'samples.jsonl'))));
  for (const sub of entries.sort()) {
    const m = join(dir, sub, 'metrics.jsonl');
    if (!(await pathExists(m))) continue;
    // a stage folder: its records under the folder's name (the demo's sft/, rm/, ppo/, …)
    Object.assign(run.metrics, await readMetrics(m, { stage: sub }));
    run.samples.push(...(await readSamples(join(dir, sub, 'samples.jsonl'))));
  }
  if (!run.summary && !Object.keys(run.metrics).length)
    throw new RlhfError(
      ErrorCode.IO,
      `report: ${dir} holds no metrics.jsonl (here or one folder down) and no demo summary.json`,
    );
  return run;
}

/** Every folder read, names made unique ("run", "run (2)"). */
export async function loadRuns(dirs: string[]): Promise<RunData[]> {
  const runs: RunData[] = [];
  for (const d of dirs) runs.push(await loadRun(d));
  const seen = new Map<string, number>();
  for (const r of runs) {
    const n = (seen.get(r.name) ?? 0) + 1;
    seen.set(r.name, n);
    if (n > 1) r.name = `${r.name} (${n})`;
  }
  return runs;
}

/** The last finite value of `key` in a stage's records. */
function last(rows: Array<Record<string, number | string>>, key: string): number | undefined {
  for (let i = rows.length - 1; i >= 0; i--)
    if (typeof rows[i][key] === 'number' && Number.isFinite(rows[i][key])) return rows[i][key] as number;
  return undefined;
}

const FINAL_KEYS: Array<[string, string]> = [
  ['loss', 'loss'],
  ['evalLoss', 'eval loss'],
  ['accuracy', 'accuracy'],
  ['evalAccuracy', 'eval accuracy'],
  ['rewardMean', 'reward'],
  ['kl', 'KL'],
  ['margin', 'margin'],
];

function runsTable(runs: RunData[]): string {
  const rows: string[] = [];
  for (const r of runs)
    for (const stage of orderStages(Object.keys(r.metrics))) {
      const rows0 = r.metrics[stage];
      const steps = rows0.reduce((m, x) => Math.max(m, typeof x.step === 'number' ? x.step : 0), 0);
      const finals = FINAL_KEYS.map(([k, label]) => [label, last(rows0, k)] as const)
        .filter(([, v]) => v !== undefined)
        .map(([label, v]) => `${label} ${num(v)}`);
      rows.push(
        `<tr><td>${esc(r.name)}</td><td>${esc(stageLabel(stage))} <span class="note">(${esc(stage)})</span></td><td class="n">${steps}</td><td>${esc(finals.join(', ') || '—')}</td></tr>`,
      );
    }
  return `<div class="table-wrap"><table class="runs"><thead><tr><th>run</th><th>stage</th><th class="n">steps</th><th>final values</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
}

function demoComparison(runs: RunData[]): string {
  const demos = runs.filter((r) => r.summary);
  if (!demos.length) return '';
  const rows: string[] = [],
    bars: Array<{ label: string; win: number; tie: number; loss: number }> = [];
  for (const r of demos)
    for (const n of policyNames(r.summary!)) {
      const p = r.summary!.policies[n],
        w = winTieLoss(p);
      bars.push({ label: `${r.name} · ${n}`, ...w });
      rows.push(
        `<tr data-policy="${esc(`${r.name} · ${n}`)}"><td>${esc(r.name)}</td><td>${esc(n)}</td><td class="n win">${pct(w.win)}</td><td class="n tie">${pct(w.tie)}</td><td class="n loss">${pct(w.loss)}</td><td class="n rate">${pct(p.winRate)}</td><td class="n">${num(p.goldScore)}</td><td class="n">${num(p.kl)}</td></tr>`,
      );
    }
  const chart = svgWinTieLoss({ title: 'Against SFT: win / tie / loss (gold judge)', rows: bars, width: 640 });
  return `<h2>Policies against SFT</h2><div class="table-wrap"><table class="policies"><thead><tr><th>run</th><th>policy</th><th class="n">win</th><th class="n">tie</th><th class="n">loss</th><th class="n">win rate (ties ½)</th><th class="n">gold score</th><th class="n">KL(π‖SFT), k1</th></tr></thead><tbody>${rows.join('')}</tbody></table></div><div class="charts">${inlineSvg(chart)}</div>`;
}

function samplesTables(runs: RunData[]): string {
  const out: string[] = [];
  for (const r of runs) {
    const byStage = new Map<string, RunSamples[]>();
    for (const s of r.samples) byStage.set(s.stage, [...(byStage.get(s.stage) ?? []), s]);
    for (const [stage, list] of byStage) {
      const picks = list.length > 1 ? [list[0], list[list.length - 1]] : list;
      for (const it of picks) {
        const rows = it.samples.map(
          (x) =>
            `<tr><td><pre>${esc(x.prompt)}</pre></td><td><pre>${esc(x.response)}</pre></td><td class="n">${num(x.reward)}</td><td class="n">${num(x.kl)}</td></tr>`,
        );
        out.push(
          `<div class="sample"><div class="prompt">${esc(r.name)} · ${esc(stageLabel(stage))}, iteration ${it.step}</div><table><thead><tr><th>prompt</th><th>response</th><th class="n">reward</th><th class="n">KL</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`,
        );
      }
    }
  }
  return out.length
    ? `<h2>Samples during training</h2><p class="note">The first and the last logged iteration of each RL stage (samples.jsonl).</p>${out.join('')}`
    : '';
}

/** The report page of `runs`: the demo report for one demo folder, else the runs report. */
export function renderRunsHtml(runs: RunData[], opts: RenderOptions = {}): string {
  if (runs.length === 1 && runs[0].summary)
    return renderHtml(runs[0].summary, runs[0].metrics, {
      title: opts.title ?? `rlhf report: ${runs[0].name}`,
      ...opts,
    });
  const title = opts.title ?? (runs.length === 1 ? `rlhf report: ${runs[0].name}` : `rlhf report: ${runs.length} runs`);
  const when =
    opts.generatedAt instanceof Date ? opts.generatedAt.toISOString() : (opts.generatedAt ?? new Date().toISOString());
  const out: string[] = [];
  out.push(
    `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title><style>${REPORT_CSS}</style></head><body><main>`,
  );
  out.push(`<h1>${esc(title)}</h1><p class="sub">${runs.map((r) => `<code>${esc(r.dir)}</code>`).join(', ')}</p>`);
  out.push(`<h2>Runs</h2>`, runsTable(runs));
  out.push(demoComparison(runs));
  const curves = trainingCharts(
    runs.length === 1 ? runs[0].metrics : runs.map((r) => ({ name: r.name, metrics: r.metrics })),
    opts.maxPoints ?? 300,
  );
  if (curves.length) {
    out.push(
      `<h2>Training curves</h2><p class="note">Solid: exponential moving average; faint: the raw values.${runs.length > 1 ? ' One series per run.' : ''}</p>`,
    );
    for (const st of curves)
      out.push(
        `<h3>${esc(st.label)} <span class="note">(${esc(st.stage)})</span></h3><div class="charts">${st.charts.map(inlineSvg).join('')}</div>`,
      );
  }
  out.push(samplesTables(runs));
  out.push(
    `<footer>Generated by rlhf on ${esc(when)}. Self-contained: no scripts, no external resources.</footer></main></body></html>\n`,
  );
  return out.join('\n');
}
