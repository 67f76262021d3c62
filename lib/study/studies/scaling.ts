/**
 * `scaling`: "Does RLHF Scale?" — the gold score of PPO against the number of responses sampled
 * per prompt during training (same iterations and prompts per iteration, so more samples = more
 * data). The claim: the score rises with more samples, then plateaus. The verdict measures the
 * rise: gold score at the largest n minus at n = 1 (per held-out prompt); the table shows each
 * doubling's gain, where a plateau would show. Reward-model and policy size are not varied here.
 */
import { svgIntervals } from '../charts.js';
import { fmt } from '../../report/svg.js';
import { ppo, sft } from '../methods.js';
import type { PolicyEval } from '../setup.js';
import { mean } from '../stats.js';
import { differences, estimate, verdictOf, withCi, type Study } from '../types.js';

type Row = { sft: PolicyEval; arms: PolicyEval[] };

export const scaling: Study<Row> = {
  name: 'scaling',
  usesBase: true,
  async runSeed({ base, settings }) {
    const arms: PolicyEval[] = [];
    for (const n of settings.scalingSamples) arms.push(await ppo(base!, { samplesPerPrompt: n }));
    return { sft: await sft(base!), arms };
  },
  summarize(perSeed, seeds, settings) {
    const name = 'scaling';
    const ns = settings.scalingSamples;
    const gold = (i: number) => perSeed.map((r) => r.arms[i].gold);
    const sftGold = perSeed.map((r) => r.sft.gold);
    const effect = estimate(differences(gold(ns.length - 1), gold(0)), `${name}/rise`);
    const per = ns.map((n, i) => ({
      n,
      vsSft: estimate(differences(gold(i), sftGold), `${name}/${n}`),
      step: i > 0 ? estimate(differences(gold(i), gold(i - 1)), `${name}/${n}/step`) : undefined,
      kl: mean(perSeed.flatMap((r) => r.arms[i].kl)),
    }));
    const claim = `More responses sampled per prompt raise the policy’s score, with diminishing returns (a plateau).`;
    const effectLabel = `gold score of PPO at ${ns.at(-1)} samples per prompt minus at ${ns[0]}`;
    return {
      name,
      title: 'Samples per prompt: does RLHF scale?',
      claim,
      source: 'Does RLHF Scale? (arXiv 2412.06000)',
      effectLabel,
      ...verdictOf(
        { name, claim, effectLabel, seeds, items: `${perSeed[0].sft.gold.length} held-out prompts` },
        effect,
        1,
      ),
      seeds,
      table: {
        columns: ['samples per prompt', 'gold − SFT gold [95% CI]', 'gain over the previous n [95% CI]', 'KL(π‖π_sft)'],
        rows: per.map((p) => [String(p.n), withCi(p.vsSft), p.step ? withCi(p.step) : '—', fmt(p.kl)]),
      },
      chart: svgIntervals({
        title: 'PPO gold score over SFT by samples per prompt, 95% CI',
        yLabel: 'gold score − SFT',
        rows: per.map((p) => ({ label: `n = ${p.n}`, mean: p.vsSft.mean, lo: p.vsSft.ci[0], hi: p.vsSft.ci[1] })),
      }),
      notes: [
        'Every n trains for the same iterations over the same prompts per iteration: n = 8 sees 8× the responses of n = 1.',
        'Not measured here: reward-model size and policy size.',
      ],
    };
  },
};
