/**
 * `alignment`: every method against SFT on the demo task under the gold judge — PPO (reference
 * baseline + PTX), GRPO, DPO and EXO-pref on the annotator's pairs, EXO-rw on K reward-scored SFT
 * samples per prompt, and best-of-n on the SFT policy. The verdict is ChatGLM-RLHF's headline: the
 * PPO policy wins more often than it loses against SFT (win rate above 50%, ties counting half).
 */
import { fmt } from '../../report/svg.js';
import { svgIntervals } from '../charts.js';
import { bestOfN, grpo, pairwise, ppo, rewardWeighted, sft } from '../methods.js';
import type { PolicyEval } from '../setup.js';
import { mean } from '../stats.js';
import { differences, estimate, verdictOf, withCi, type Study } from '../types.js';

type Row = Record<string, PolicyEval>;

export const alignment: Study<Row> = {
  name: 'alignment',
  usesBase: true,
  async runSeed({ base }) {
    const b = base!;
    return {
      sft: await sft(b),
      ppo: await ppo(b),
      grpo: await grpo(b),
      dpo: await pairwise(b, 'dpo'),
      'exo-pref': await pairwise(b, 'exo'),
      [`exo-rw (K=${b.settings.rw.k})`]: await rewardWeighted(b, 'exo-rw'),
      [`best-of-${b.settings.bestOfN}`]: await bestOfN(b),
    };
  },
  summarize(perSeed, seeds) {
    const name = 'alignment';
    const methods = Object.keys(perSeed[0]).filter((m) => m !== 'sft');
    const cells = (m: string, k: keyof PolicyEval) => perSeed.map((r) => r[m][k] as number[]);
    const rows = methods.map((m) => ({
      m,
      win: estimate(
        cells(m, 'win').map((row) => row.map((w) => w - 0.5)),
        `${name}/${m}/win`,
      ),
      gold: estimate(differences(cells(m, 'gold'), cells('sft', 'gold')), `${name}/${m}/gold`),
      kl: mean(cells(m, 'kl').flat()),
      length: mean(cells(m, 'length').flat()),
    }));
    const ppoRow = rows.find((r) => r.m === 'ppo')!;
    const claim = 'PPO beats the SFT policy in pairwise comparison (ChatGLM-RLHF: about 15% more wins).';
    const effectLabel = 'PPO win rate against SFT minus 50% (percentage points, ties half)';
    const prompts = perSeed[0].sft.gold.length;
    return {
      name,
      title: 'Alignment methods against SFT',
      claim,
      source: 'ChatGLM-RLHF (arXiv 2404.00934), EXO (arXiv 2402.00856)',
      effectLabel,
      ...verdictOf({ name, claim, effectLabel, seeds, items: `${prompts} held-out prompts` }, ppoRow.win, 1, 100),
      seeds,
      table: {
        columns: [
          'method',
          'win rate − 50% (pp) [95% CI]',
          'gold − SFT gold [95% CI]',
          'KL(π‖π_sft)',
          'length (chars)',
        ],
        rows: [
          ['sft', '—', `gold ${fmt(mean(cells('sft', 'gold').flat()))}`, '0', fmt(mean(cells('sft', 'length').flat()))],
          ...rows.map((r) => [r.m, withCi(r.win, 100), withCi(r.gold), fmt(r.kl), fmt(r.length)]),
        ],
      },
      chart: svgIntervals({
        title: 'Win rate against SFT minus 50% (gold judge), 95% CI',
        yLabel: 'percentage points',
        rows: rows.map((r) => ({ label: r.m, mean: 100 * r.win.mean, lo: 100 * r.win.ci[0], hi: 100 * r.win.ci[1] })),
      }),
      notes: [
        'Each policy answers every held-out prompt several times at temperature 1; answer k is compared with the SFT policy’s answer k by the gold function.',
        'best-of-n: the reward model picks the best of n fresh SFT samples; its KL is the analytic log n − (n−1)/n.',
      ],
    };
  },
};
