/**
 * `dpo-length`: ChatGLM-RLHF's observation that DPO's responses grow longer than PPO's, measured on
 * the alignment study's DPO and PPO policies (shared cached runs): characters per response, DPO
 * minus PPO, per held-out prompt.
 */
import { svgIntervals } from '../charts.js';
import { fmt } from '../../report/svg.js';
import { pairwise, ppo, sft } from '../methods.js';
import type { PolicyEval } from '../setup.js';
import { differences, estimate, verdictOf, withCi, type Study } from '../types.js';

type Row = { sft: PolicyEval; ppo: PolicyEval; dpo: PolicyEval };

export const dpoLength: Study<Row> = {
  name: 'dpo-length',
  usesBase: true,
  async runSeed({ base }) {
    return { sft: await sft(base!), ppo: await ppo(base!), dpo: await pairwise(base!, 'dpo') };
  },
  summarize(perSeed, seeds) {
    const name = 'dpo-length';
    const len = (k: keyof Row) => perSeed.map((r) => r[k].length);
    const effect = estimate(differences(len('dpo'), len('ppo')), `${name}/dpo-ppo`);
    const vsSft = (k: 'ppo' | 'dpo') => estimate(differences(len(k), len('sft')), `${name}/${k}-sft`);
    const abs = (k: keyof Row) => estimate(len(k), `${name}/${k}`);
    const claim = 'DPO’s responses are longer than PPO’s (PPO lengthens them only moderately).';
    const effectLabel = 'characters per response, DPO minus PPO';
    return {
      name,
      title: 'Response length: DPO against PPO',
      claim,
      source: 'ChatGLM-RLHF (arXiv 2404.00934), evaluation notes',
      effectLabel,
      ...verdictOf(
        { name, claim, effectLabel, seeds, items: `${perSeed[0].sft.length.length} held-out prompts` },
        effect,
        1,
      ),
      seeds,
      table: {
        columns: ['policy', 'characters per response [95% CI]', 'minus SFT [95% CI]'],
        rows: [
          ['sft', withCi(abs('sft')), '—'],
          ['ppo', withCi(abs('ppo')), withCi(vsSft('ppo'))],
          ['dpo', withCi(abs('dpo')), withCi(vsSft('dpo'))],
        ],
      },
      chart: svgIntervals({
        title: 'Length change in characters, 95% CI',
        yLabel: 'characters per response',
        rows: [
          { label: 'ppo − sft', ...ci(vsSft('ppo')) },
          { label: 'dpo − sft', ...ci(vsSft('dpo')) },
          { label: 'dpo − ppo', ...ci(effect) },
        ],
      }),
      notes: [
        `The demo task’s gold function penalises length (−0.1 per character beyond the ideal answer), so both methods are pushed towards shorter answers here; mean SFT length ${fmt(abs('sft').mean)} characters.`,
      ],
    };
  },
};

const ci = (e: { mean: number; ci: [number, number] }) => ({ mean: e.mean, lo: e.ci[0], hi: e.ci[1] });
