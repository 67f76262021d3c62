/**
 * `ptx`: PPO with the next-token (PTX) term on the SFT data at λ ∈ ptxCoefs. The claim: the term
 * keeps the policy close to the SFT data (less forgetting) at little cost in reward. The verdict
 * measures the per-token NLL of SFT demonstrations, λ = 0 minus the largest λ (positive: PTX
 * reduces forgetting); the gold score of each λ is in the table.
 */
import { svgScatter } from '../../report/charts.js';
import { fmt } from '../../report/svg.js';
import { ppo, sft } from '../methods.js';
import type { PolicyEval } from '../setup.js';
import { mean } from '../stats.js';
import { differences, estimate, verdictOf, withCi, type Study } from '../types.js';

type Row = { sft: PolicyEval; arms: PolicyEval[] };

export const ptx: Study<Row> = {
  name: 'ptx',
  usesBase: true,
  async runSeed({ base, settings }) {
    const arms: PolicyEval[] = [];
    for (const coef of settings.ptxCoefs) arms.push(await ppo(base!, { ptxCoef: coef }));
    return { sft: await sft(base!), arms };
  },
  summarize(perSeed, seeds, settings) {
    const name = 'ptx';
    const coefs = settings.ptxCoefs;
    const last = coefs.length - 1;
    const nll = (i: number) => perSeed.map((r) => r.arms[i].nll!);
    const effect = estimate(differences(nll(0), nll(last)), `${name}/nll`);
    const per = coefs.map((c, i) => ({
      c,
      nll: estimate(nll(i), `${name}/${c}/nll`),
      gold: estimate(
        perSeed.map((r) => r.arms[i].gold),
        `${name}/${c}/gold`,
      ),
      kl: mean(perSeed.flatMap((r) => r.arms[i].kl)),
    }));
    const sftNll = mean(perSeed.flatMap((r) => r.sft.nll!));
    const sftGold = mean(perSeed.flatMap((r) => r.sft.gold));
    const claim = `The next-token term on SFT data (λ = ${coefs[last]}) reduces forgetting: a lower NLL of the SFT demonstrations than PPO without it.`;
    const effectLabel = `per-token NLL of SFT demonstrations, λ = 0 minus λ = ${coefs[last]} (nats)`;
    return {
      name,
      title: 'PTX term against forgetting',
      claim,
      source: 'ChatGLM-RLHF (arXiv 2404.00934) §2.5',
      effectLabel,
      ...verdictOf(
        { name, claim, effectLabel, seeds, items: `${perSeed[0].sft.nll!.length} SFT demonstrations` },
        effect,
        1,
      ),
      seeds,
      table: {
        columns: ['policy', 'NLL of SFT demonstrations [95% CI]', 'gold score [95% CI]', 'KL(π‖π_sft)'],
        rows: [
          ['sft', fmt(sftNll), fmt(sftGold), '0'],
          ...per.map((p) => [`ppo λ = ${p.c}`, withCi(p.nll), withCi(p.gold), fmt(p.kl)]),
        ],
      },
      chart: svgScatter({
        title: 'Gold score against NLL of the SFT data (forgetting), mean over seeds',
        xLabel: 'NLL of SFT demonstrations (nats per token)',
        yLabel: 'gold score',
        points: [
          { label: 'sft', x: sftNll, y: sftGold },
          ...per.map((p) => ({ label: `λ=${p.c}`, x: p.nll.mean, y: p.gold.mean })),
        ],
      }),
      notes: [
        'NLL: the demonstrations of the SFT set’s first pass over the first training prompts, response tokens and eos.',
      ],
    };
  },
};
