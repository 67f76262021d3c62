/**
 * `rlhf study`: runs the studies (lib/study/studies/, most valuable first) over several seeds,
 * sharing one demo base per seed and every cached run between studies, and writes summary.json
 * and report.html into the output folder. Finished pieces (per-seed bases, trained-and-evaluated
 * policies, per-study results) are written atomically under <output>/runs/ and reused, so an
 * interrupted study resumes without redoing them; the same seeds and thread count give the same
 * summary and report.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { pathExists, writeFileAtomic } from '../io/atomic.js';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkInt, checkString, rangeError, typeError } from '../validate.js';
import { renderStudyReport } from './report.js';
import { prepareBase, seedDir, STUDY_PRESETS, type PresetName, type SeedBase, type StudySettings } from './setup.js';
import { alignment } from './studies/alignment.js';
import { dpoLength } from './studies/dpo-length.js';
import { exoFrontier } from './studies/exo-frontier.js';
import { exoVsDpo } from './studies/exo-vs-dpo.js';
import { lengthBalance } from './studies/length-balance.js';
import { longreward } from './studies/longreward.js';
import { ptx } from './studies/ptx.js';
import { referenceBaseline } from './studies/reference-baseline.js';
import { scaling } from './studies/scaling.js';
import type { Study, StudyJudge, StudyOutcome } from './types.js';

/** Every study, most valuable first (the default order and set). */
export const STUDIES: ReadonlyArray<Study<unknown>> = [
  alignment,
  referenceBaseline,
  ptx,
  dpoLength,
  lengthBalance,
  exoVsDpo,
  exoFrontier,
  scaling,
  longreward,
] as unknown as ReadonlyArray<Study<unknown>>;

export const STUDY_NAMES: readonly string[] = STUDIES.map((s) => s.name);

/** summary.json */
export interface StudySummary {
  preset: PresetName;
  studies: Record<
    string,
    Pick<StudyOutcome, 'claim' | 'effect' | 'ci' | 'reproduced' | 'seeds' | 'effectLabel' | 'verdict'>
  >;
}

export interface RunStudiesOptions {
  output: string;
  /** study names (default: all, in STUDY_NAMES order) */
  names?: string[];
  /** default: the preset's */
  seeds?: number;
  preset?: PresetName;
  /** one line per finished piece (progress) */
  log?: (line: string) => void;
  /** settings override (tests) */
  settings?: StudySettings;
  /** a served judge for the longreward study in place of the task's gold function (cached apart) */
  judge?: StudyJudge;
}

export async function runStudies(opts: RunStudiesOptions): Promise<{
  summary: StudySummary;
  outcomes: StudyOutcome[];
  seconds: Record<string, number>;
}> {
  const fn = 'runStudies';
  checkString(fn, 'options.output', opts.output);
  if (opts.judge !== undefined) {
    if (typeof opts.judge?.model?.complete !== 'function')
      throw typeError(
        fn,
        'options.judge.model',
        'a JudgeModel (an object with complete(prompt, options))',
        opts.judge?.model,
      );
    checkString(fn, 'options.judge.id', opts.judge.id);
  }
  const preset = opts.preset ?? 'small';
  if (!(preset in STUDY_PRESETS)) throw rangeError(fn, 'options.preset', '"small" or "full"', preset);
  const settings = opts.settings ?? STUDY_PRESETS[preset];
  const seedCount = opts.seeds ?? settings.seeds;
  checkInt(fn, 'options.seeds', seedCount, { min: 1, max: 100 });
  const names = opts.names?.length ? opts.names : STUDY_NAMES;
  if (!Array.isArray(names)) throw typeError(fn, 'options.names', 'an array of study names', names);
  for (const [i, n] of names.entries())
    if (!STUDY_NAMES.includes(n)) throw rangeError(fn, `options.names[${i}]`, `one of ${STUDY_NAMES.join(', ')}`, n);
  const studies = STUDIES.filter((s) => names.includes(s.name));
  const seeds = Array.from({ length: seedCount }, (_, i) => i);
  const log = opts.log ?? (() => {});
  await checkSettings(join(opts.output, 'runs', settings.preset, 'settings.json'), settings);
  const bases = new Map<number, SeedBase>();
  const base = async (seed: number) => {
    if (!bases.has(seed)) bases.set(seed, await prepareBase(opts.output, settings, seed, log));
    return bases.get(seed)!;
  };
  const outcomes: StudyOutcome[] = [];
  const seconds: Record<string, number> = {};
  const total = studies.length * seeds.length;
  let done = 0;
  const t0 = performance.now();
  try {
    for (const study of studies) {
      const ts = performance.now();
      const perSeed: unknown[] = [];
      for (const seed of seeds) {
        const tr = performance.now();
        perSeed.push(
          await study.runSeed({
            seed,
            settings,
            base: study.usesBase ? await base(seed) : undefined,
            cacheDir: seedDir(opts.output, settings.preset, seed),
            log: (line) => log(`  ${study.name} seed ${seed}: ${line}`),
            judge: opts.judge,
          }),
        );
        done++;
        const elapsed = (performance.now() - t0) / 1000;
        log(
          `[${done}/${total}] ${study.name} seed ${seed} (${((performance.now() - tr) / 1000).toFixed(1)} s; about ${Math.round((elapsed / done) * (total - done))} s left)`,
        );
      }
      const outcome = study.summarize(perSeed, seeds, settings);
      seconds[study.name] = (performance.now() - ts) / 1000;
      outcomes.push(outcome);
      log(outcome.verdict);
    }
  } finally {
    for (const b of bases.values()) b.dispose();
  }
  const summary: StudySummary = {
    preset: settings.preset,
    studies: Object.fromEntries(
      outcomes.map((o) => [
        o.name,
        {
          claim: o.claim,
          effect: o.effect,
          ci: o.ci,
          reproduced: o.reproduced,
          seeds: o.seeds,
          effectLabel: o.effectLabel,
          verdict: o.verdict,
        },
      ]),
    ),
  };
  await mkdir(opts.output, { recursive: true });
  await writeFileAtomic(join(opts.output, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  await writeFileAtomic(
    join(opts.output, 'report.html'),
    renderStudyReport({
      preset: settings.preset,
      seeds,
      description:
        'The demo task (single-digit additions with a requested format, a hidden gold function as judge, a simulated annotator with 10% label noise); each seed trains its own SFT policy, preference pairs and reward model, then every method from that SFT policy. The longreward study has its own long-document task and policy (see its notes).',
      outcomes,
    }),
  );
  return { summary, outcomes, seconds };
}

/**
 * The cached runs under runs/<preset>/ belong to one set of settings: the first run records them,
 * a later run with other settings (another version's preset) is refused instead of mixing results.
 */
async function checkSettings(path: string, settings: StudySettings): Promise<void> {
  const text = JSON.stringify(settings, null, 2) + '\n';
  if (!(await pathExists(path))) {
    await mkdir(join(path, '..'), { recursive: true });
    await writeFileAtomic(path, text);
    return;
  }
  if ((await readFile(path, 'utf8')) !== text)
    throw new RlhfError(
      ErrorCode.INVALID_STATE,
      `${path}: the runs in this folder were made with other ${settings.preset} settings; use another --output (or delete ${join(path, '..')})`,
    );
}
