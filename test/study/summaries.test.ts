// The verdicts of the model-trained studies on synthetic per-seed runs with a known answer: a
// clear effect in the claimed direction is "reproduced", no effect is "not reproduced" with an
// interval around zero, an effect the other way says so — for scaling and exo-frontier (too
// costly for the shared small-preset run) and for dpo-length.
import t from 'tap';
import { rng } from '../../lib/demo/task.js';
import type { PolicyEval } from '../../lib/study/setup.js';
import { STUDY_PRESETS } from '../../lib/study/setup.js';
import { dpoLength } from '../../lib/study/studies/dpo-length.js';
import { exoFrontier } from '../../lib/study/studies/exo-frontier.js';
import { scaling } from '../../lib/study/studies/scaling.js';

const settings = STUDY_PRESETS.small;
const seeds = [0, 1, 2];
const PROMPTS = 60;

/** A synthetic evaluation: gold = shift + noise per prompt (sd 0.5), length = len + noise. */
function fake(seed: number, shift: number, len = 10): PolicyEval {
  const r = rng(seed);
  const noise = () => r() - 0.5;
  return {
    gold: Array.from({ length: PROMPTS }, () => shift + noise()),
    win: Array.from({ length: PROMPTS }, () => 0.5),
    kl: Array.from({ length: PROMPTS }, () => 0.5 + 0.1 * r()),
    length: Array.from({ length: PROMPTS }, () => len + 2 * noise()),
    nll: Array.from({ length: PROMPTS }, () => 1),
    examples: [],
  };
}

t.test('scaling: rising, flat', async (t) => {
  const rows = (step: number) =>
    seeds.map((s) => ({
      sft: fake(100 + s, 0),
      arms: settings.scalingSamples.map((_, i) => fake(10 * s + i, step * i)),
    }));
  const up = scaling.summarize(rows(0.5), seeds, settings);
  t.equal(up.reproduced, true, up.verdict);
  t.ok(Math.abs(up.effect - 0.5 * (settings.scalingSamples.length - 1)) < 0.2, `effect ${up.effect}`);
  t.equal(up.table.rows.length, settings.scalingSamples.length);
  const flat = scaling.summarize(rows(0), seeds, settings);
  t.equal(flat.reproduced, false, flat.verdict);
  t.ok(flat.ci[0] < 0 && flat.ci[1] > 0, 'the interval straddles zero');
  t.match(flat.verdict, /not reproduced: the 95% interval includes zero\.$/);
});

t.test('exo-frontier: EXO ahead, behind', async (t) => {
  const rows = (d: number) =>
    seeds.map((s) => ({
      sft: fake(100 + s, 0),
      exo: settings.frontierKs.map((_, i) => fake(10 * s + i, 1 + d)),
      dpo: settings.frontierKs.map((_, i) => fake(50 + 10 * s + i, 1)),
    }));
  const ahead = exoFrontier.summarize(rows(0.5), seeds, settings);
  t.equal(ahead.reproduced, true, ahead.verdict);
  t.ok(Math.abs(ahead.effect - 0.5) < 0.1, `effect ${ahead.effect}`);
  t.equal(ahead.table.rows.length, 2 * settings.frontierKs.length);
  const behind = exoFrontier.summarize(rows(-0.5), seeds, settings);
  t.equal(behind.reproduced, false);
  t.match(behind.verdict, /not reproduced: the 95% interval excludes zero on the other side\.$/);
  t.match(ahead.chart, /^<svg/);
});

t.test('dpo-length: longer DPO answers', async (t) => {
  const rows = (dpoLen: number) =>
    seeds.map((s) => ({ sft: fake(s, 0, 12), ppo: fake(20 + s, 0, 10), dpo: fake(40 + s, 0, dpoLen) }));
  const longer = dpoLength.summarize(rows(14), seeds, settings);
  t.equal(longer.reproduced, true, longer.verdict);
  t.ok(Math.abs(longer.effect - 4) < 0.5, `effect ${longer.effect}`);
  t.equal(dpoLength.summarize(rows(10), seeds, settings).reproduced, false);
});
