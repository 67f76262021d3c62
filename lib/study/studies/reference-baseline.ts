/**
 * `reference-baseline`: PPO with ChatGLM-RLHF's reward r(x,y) − r(x,y_ref) (y_ref sampled from the
 * reference per prompt) against the plain r(x,y). The claim: the shaped reward starts near zero
 * and the KL to the reference grows more slowly. The verdict measures the final KL(π‖π_sft) on the
 * held-out prompts (plain minus baseline: positive when the baseline slows the drift).
 */
import { svgLineChart } from '../../report/charts.js';
import { fmt } from '../../report/svg.js';
import { ppo } from '../methods.js';
import type { PolicyEval } from '../setup.js';
import { mean, slope } from '../stats.js';
import { differences, estimate, verdictOf, withCi, type Study } from '../types.js';

type Row = { reference: PolicyEval; none: PolicyEval };

export const referenceBaseline: Study<Row> = {
  name: 'reference-baseline',
  usesBase: true,
  async runSeed({ base }) {
    return { reference: await ppo(base!, { baseline: 'reference' }), none: await ppo(base!, { baseline: 'none' }) };
  },
  summarize(perSeed, seeds) {
    const name = 'reference-baseline';
    const arms = ['reference', 'none'] as const;
    const label = { reference: 'r(x,y) − r(x,y_ref)', none: 'plain r(x,y)' };
    const kl = estimate(
      differences(
        perSeed.map((r) => r.none.kl),
        perSeed.map((r) => r.reference.kl),
      ),
      `${name}/kl`,
    );
    const per = arms.map((a) => {
      const curves = perSeed.map((r) => r[a].curve ?? []);
      return {
        a,
        start: mean(curves.map((c) => c[0]?.shapedReward ?? NaN)),
        klSlope: mean(
          curves.map((c) =>
            slope(
              c.map((p) => p.step),
              c.map((p) => p.kl),
            ),
          ),
        ),
        kl: mean(perSeed.flatMap((r) => r[a].kl)),
        gold: estimate(
          perSeed.map((r) => r[a].gold),
          `${name}/${a}/gold`,
        ),
      };
    });
    const steps = perSeed[0].reference.curve?.length ?? 0;
    const klCurve = (a: (typeof arms)[number]) =>
      Array.from({ length: steps }, (_, i): [number, number] => [
        i + 1,
        mean(perSeed.map((r) => r[a].curve?.[i]?.kl ?? NaN)),
      ]);
    const claim =
      'Subtracting the reference response’s reward makes PPO’s reward start near zero and its KL grow more slowly.';
    const effectLabel = 'final KL(π‖π_sft) per response, plain minus reference baseline (nats)';
    return {
      name,
      title: 'PPO reward with and without the reference baseline',
      claim,
      source: 'ChatGLM-RLHF (arXiv 2404.00934) §2.4',
      effectLabel,
      ...verdictOf({ name, claim, effectLabel, seeds, items: `${perSeed[0].none.kl.length} held-out prompts` }, kl, 1),
      seeds,
      table: {
        columns: [
          'reward',
          'shaped reward, iteration 1',
          'KL growth per iteration (rollouts)',
          'final KL(π‖π_sft)',
          'gold score [95% CI]',
        ],
        rows: per.map((p) => [label[p.a], fmt(p.start), fmt(p.klSlope), fmt(p.kl), withCi(p.gold)]),
      },
      chart: svgLineChart({
        title: 'KL to the reference of PPO’s rollouts, mean over seeds',
        xLabel: 'iteration',
        yLabel: 'KL per response (nats)',
        series: arms.map((a) => ({ name: label[a], points: klCurve(a) })),
      }),
      notes: [
        'KL growth per iteration: least-squares slope of the rollouts’ KL (the trainer’s estimator) over iterations, mean over seeds.',
      ],
    };
  },
};
