/** rlhf study: the seed papers' claims reproduced in miniature on the demo task, over several seeds, with CIs. */
import { join, resolve } from 'node:path';
import { runStudies, STUDY_NAMES } from '../../study/runner.js';
import { STUDY_PRESETS, type PresetName } from '../../study/setup.js';
import type { StudyJudge } from '../../study/types.js';
import { OpenAIJudge } from '../../rewards/longreward/index.js';
import { CliError, formatDuration, type CommandHandler, type CommandSpec } from '../framework/index.js';
import { applyThreads, COMMON_FLAGS } from './shared.js';

export const studySpec: CommandSpec = {
  name: 'study',
  summary: "the papers' claims reproduced in miniature: several seeds, 95% confidence intervals, one report",
  description: `Studies: ${STUDY_NAMES.join(', ')} (default: all, in this order). Each runs the methods on the demo task (longreward: on its own long-document task and policy) with N seeds, reports the mean and a 95% bootstrap interval over seeds and prompts, and a verdict: reproduced when the interval excludes zero on the side the claim predicts. Writes report.html and summary.json into --output; finished runs are kept under <output>/runs/ and an interrupted study resumes without redoing them. The same seeds and thread count give the same report. --preset small: about 2.5 minutes of CPU for the demo-task studies and 3 seeds before the size and β arms were added, and about 1.3 minutes of CPU per seed for longreward (documents of 2000 byte tokens). --preset full: the demo's default sizes and 5 seeds; each seed trains about 20 policies where "rlhf demo" trains 4 in 4.5 minutes on 2 idle cores, so expect one to two hours (an estimate, not measured); progress lines give the time left as it goes, and an interrupted run resumes.`,
  positional: { name: 'STUDY', describe: 'study names (default: all)', variadic: true, names: true },
  flags: {
    output: {
      type: 'path',
      default: 'rlhf-study',
      placeholder: 'dir',
      describe: 'where report.html, summary.json and the runs go',
    },
    preset: { type: 'enum', values: ['small', 'full'], default: 'small', describe: 'model and run sizes' },
    seeds: { type: 'int', min: 1, max: 100, describe: 'number of seeds (default: 3 for small, 5 for full)' },
    threads: COMMON_FLAGS.threads,
    judgeUrl: {
      type: 'string',
      placeholder: 'url',
      describe:
        "longreward: a served judge's OpenAI-compatible base URL in place of the task's gold function, e.g. http://127.0.0.1:8000/v1",
    },
    judgeModel: { type: 'string', placeholder: 'name', describe: 'longreward: the served judge model name' },
    judgeKeyEnv: {
      type: 'string',
      default: 'OPENAI_API_KEY',
      placeholder: 'VAR',
      describe: "environment variable holding the judge's API key (unset: no Authorization header)",
    },
  },
  examples: [
    'rlhf study',
    'rlhf study alignment exo-vs-dpo --seeds 5',
    'rlhf study --preset full --output study-full',
    'rlhf study longreward --judge-url http://127.0.0.1:8000/v1 --judge-model judge',
  ],
};

export const studyCommand: CommandHandler = async (o, ctx) => {
  applyThreads(o);
  const names = (o.STUDY as string[] | undefined) ?? [];
  for (const n of names)
    if (!STUDY_NAMES.includes(n)) throw new CliError(`unknown study "${n}"; the studies are ${STUDY_NAMES.join(', ')}`);
  const preset = o.preset as PresetName;
  const out = resolve(o.output as string);
  const seeds = (o.seeds as number | undefined) ?? STUDY_PRESETS[preset].seeds;
  const count = names.length || STUDY_NAMES.length;
  let judge: StudyJudge | undefined;
  if (o.judgeUrl !== undefined || o.judgeModel !== undefined) {
    if (o.judgeUrl === undefined || o.judgeModel === undefined)
      throw new CliError('--judge-url and --judge-model go together');
    if (names.length > 0 && !names.includes('longreward'))
      throw new CliError('--judge-url serves the longreward study only; name longreward among the studies');
    judge = {
      id: `${o.judgeModel as string} at ${o.judgeUrl as string}`,
      // replies are cached under the output folder, so an interrupted study does not ask again
      model: new OpenAIJudge({
        baseURL: o.judgeUrl as string,
        model: o.judgeModel as string,
        apiKeyEnv: o.judgeKeyEnv as string,
        cacheDir: join(out, 'judge-cache'),
      }),
    };
  }
  ctx.stderr.write(
    `rlhf study --preset ${preset}: ${count} stud${count === 1 ? 'y' : 'ies'} × ${seeds} seeds, results in ${out} (finished runs there are reused)\n`,
  );
  const t0 = performance.now();
  const r = await runStudies({
    output: out,
    names,
    seeds,
    preset,
    judge,
    log: (line) => ctx.stderr.write(line + '\n'),
  });
  ctx.stdout.write(
    [
      '',
      ...r.outcomes.map((x) => `${x.reproduced ? 'reproduced    ' : 'not reproduced'}  ${x.verdict}`),
      '',
      `time per study (wall, runs shared with earlier studies not counted again): ${Object.entries(r.seconds)
        .map(([k, v]) => `${k} ${formatDuration(v)}`)
        .join(', ')}`,
      `total ${formatDuration((performance.now() - t0) / 1000)}`,
      `report:  ${join(out, 'report.html')}`,
      `summary: ${join(out, 'summary.json')}`,
      '',
    ].join('\n'),
  );
  return 0;
};
