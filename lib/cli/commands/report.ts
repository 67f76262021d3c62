/** rlhf report: one HTML page for any run folders (a demo, a training command's --output, several to compare). */
import { resolve } from 'node:path';
import { writeRunReport } from '../../report/index.js';
import { CliError, type CommandHandler, type CommandSpec } from '../framework/index.js';

export const reportSpec: CommandSpec = {
  name: 'report',
  summary: 'an HTML report of one or more run folders: curves from metrics.jsonl, samples, comparisons across runs',
  description:
    "Each RUN_DIR is an `rlhf demo` folder (summary.json: the demo report) or a training command's --output folder (metrics.jsonl here or one folder down, samples.jsonl of RL runs). Several folders are compared: their curves share axes, one series per run. The page is self-contained (no scripts, no external resources).",
  positional: { name: 'RUN_DIR', describe: 'run folders, one or more', variadic: true },
  flags: {
    output: { type: 'path', default: 'report.html', placeholder: 'file', describe: 'where the page goes' },
    title: { type: 'string', placeholder: 'text', describe: 'page title (default: "rlhf report: <run>")' },
  },
  examples: ['rlhf report rlhf-demo', 'rlhf report runs/ppo runs/grpo --output compare.html'],
};

export const reportCommand: CommandHandler = async (o, ctx) => {
  const dirs = (o.RUN_DIR as string[] | undefined) ?? [];
  if (!dirs.length) throw new CliError('give one or more run folders: rlhf report RUN_DIR…');
  const output = resolve(o.output as string);
  const runs = await writeRunReport(dirs, output, o.title ? { title: o.title as string } : {});
  const stages = runs.reduce((n, r) => n + Object.keys(r.metrics).length, 0);
  ctx.stdout.write(
    `report: ${output} (${runs.length} run${runs.length === 1 ? '' : 's'}, ${stages} stage${stages === 1 ? '' : 's'} of metrics)\n`,
  );
  return 0;
};
