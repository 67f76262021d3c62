/**
 * `scaling`: "Does RLHF Scale?" — the gold score of PPO against the number of responses sampled
 * per prompt during training (same iterations and prompts per iteration, so more samples = more
 * data). The claim: the score rises with more samples, then plateaus. The verdict measures the
 * rise: gold score at the largest n minus at n = 1 (per held-out prompt); the table shows each
 * doubling's gain, where a plateau would show. Below it, with CIs but no verdict of their own: PPO
 * with reward models of each size in scalingSizes and the base size (the paper: a larger reward
 * model helps the policy, modestly), and PPO on policies of each size with the base reward model,
 * as the gain over that size's own SFT policy (the paper: larger policies gain less from RLHF).
 */
import { svgIntervals } from '../charts.js';
import { fmt } from '../../report/svg.js';
import { ppo, sft, sizedSftEval } from '../methods.js';
import { sizedRm, sizeKey, sizeLabel } from '../sizes.js';
import type { PolicyEval } from '../setup.js';
import { mean } from '../stats.js';
import { differences, estimate, verdictOf, withCi, type Study } from '../types.js';

type Row = {
  sft: PolicyEval;
  arms: PolicyEval[];
  /** per size (scalingSizes, then the base size): PPO with that reward model, and its accuracy */
  rm?: Array<{ ppo: PolicyEval; accuracy: number }>;
  /** per size: PPO from that size's SFT policy, and that SFT policy */
  policy?: Array<{ ppo: PolicyEval; sft: PolicyEval }>;
};

export const scaling: Study<Row> = {
  name: 'scaling',
  usesBase: true,
  async runSeed({ base, settings }) {
    const arms: PolicyEval[] = [];
    for (const n of settings.scalingSamples) arms.push(await ppo(base!, { samplesPerPrompt: n }));
    const sizes = [...settings.scalingSizes, settings.model];
    const rm: NonNullable<Row['rm']> = [],
      policy: NonNullable<Row['policy']> = [];
    for (const size of sizes) {
      const r = await sizedRm(base!, size);
      r.model.dispose();
      rm.push({ ppo: await ppo(base!, { rmSize: size }), accuracy: r.accuracy });
      policy.push({ ppo: await ppo(base!, { policySize: size }), sft: await sizedSftEval(base!, size) });
    }
    return { sft: await sft(base!), arms, rm, policy };
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
    const sizes = [...settings.scalingSizes, settings.model];
    const sizeRows = perSeed[0].rm
      ? sizes.flatMap((m, i) => {
          const rmGain = estimate(
            differences(
              perSeed.map((r) => r.rm![i].ppo.gold),
              sftGold,
            ),
            `${name}/rm/${sizeKey(m)}`,
          );
          const polGain = estimate(
            differences(
              perSeed.map((r) => r.policy![i].ppo.gold),
              perSeed.map((r) => r.policy![i].sft.gold),
            ),
            `${name}/policy/${sizeKey(m)}`,
          );
          const acc = mean(perSeed.map((r) => r.rm![i].accuracy));
          return [
            {
              label: `reward model ${sizeLabel(m)}`,
              short: `RM ${m.layers}×${m.hidden}`,
              cells: [
                `RM accuracy ${fmt(100 * acc)}%`,
                withCi(rmGain),
                fmt(mean(perSeed.flatMap((r) => r.rm![i].ppo.kl))),
              ],
              e: rmGain,
            },
            {
              label: `policy ${sizeLabel(m)}`,
              short: `policy ${m.layers}×${m.hidden}`,
              cells: [
                `own SFT gold ${fmt(mean(perSeed.flatMap((r) => r.policy![i].sft.gold)))}`,
                withCi(polGain),
                fmt(mean(perSeed.flatMap((r) => r.policy![i].ppo.kl))),
              ],
              e: polGain,
            },
          ];
        })
      : [];
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
        columns: [
          'samples per prompt n, or size (layers × width)',
          'gold gain [95% CI]',
          'gain over the previous n [95% CI]; sizes: RM accuracy or own SFT gold',
          'KL(π‖π_sft)',
        ],
        rows: [
          ...per.map((p) => [String(p.n), withCi(p.vsSft), p.step ? withCi(p.step) : '—', fmt(p.kl)]),
          ...sizeRows.map((r) => [r.label, r.cells[1], r.cells[0], r.cells[2]]),
        ],
      },
      chart: svgIntervals({
        title: 'PPO gold gain by n, reward-model size, policy size (95% CI)',
        yLabel: 'gold score gain',
        rows: [
          ...per.map((p) => ({ label: `n = ${p.n}`, mean: p.vsSft.mean, lo: p.vsSft.ci[0], hi: p.vsSft.ci[1] })),
          ...sizeRows.map((r) => ({ label: r.short, mean: r.e.mean, lo: r.e.ci[0], hi: r.e.ci[1] })),
        ],
      }),
      notes: [
        'Every n trains for the same iterations over the same prompts per iteration: n = 8 sees 8× the responses of n = 1.',
        `Sizes (layers × width): ${sizes.map(sizeLabel).join(', ')}; each trained like the base (same data, steps, learning rates). Reward-model rows: PPO (n = ${settings.ppo.samplesPerPrompt}) from the base SFT policy with that reward model, gold − base SFT; third column: the reward model's accuracy on gold-labelled pairs. Policy rows: PPO from that size's SFT policy with the base reward model, gold − that SFT policy's gold (third column), KL to that SFT policy.`,
      ],
    };
  },
};
