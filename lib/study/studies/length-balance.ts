/**
 * `length-balance`: ChatGLM-RLHF's bucket balancing of the reward model's pairs by length
 * difference (the base reward model) against the same reward model trained on all pairs. The
 * claim: balancing removes the length bias. Measured on held-out gold-labelled pairs whose gold
 * ordering does not depend on length (the gold difference keeps its sign and stays ≥ 0.05 with the
 * concision term removed): the correlation over pairs of the reward-score difference with the
 * length difference (characters), |ρ| unbalanced minus |ρ| balanced (positive: balancing helps).
 * Also the other half of the claim's motive: the length of the policy's answers after PPO with each
 * reward model (the balanced one's PPO is the alignment study's).
 */
import { join } from 'node:path';
import { goldScore, type TaskPrompt } from '../../demo/task.js';
import { fmt } from '../../report/svg.js';
import { RewardModel } from '../../rewards/reward-model.js';
import { svgIntervals } from '../charts.js';
import { ppo, sft } from '../methods.js';
import { cached } from '../setup.js';
import { unbalancedRm } from '../sizes.js';
import { mean, pearson } from '../stats.js';
import { differences, estimate, verdictOf, withCi, type Study } from '../types.js';

/** one held-out pair: score differences (chosen − rejected) of both reward models, length difference */
interface PairCell {
  balanced: number;
  unbalanced: number;
  length: number;
}

/** per seed: the held-out pairs, and per held-out prompt the mean answer length (characters) of each policy */
interface Row {
  pairs: PairCell[];
  length: { sft: number[]; balanced: number[]; unbalanced: number[] };
}

const absCorr = (k: 'balanced' | 'unbalanced') => (groups: PairCell[][]) =>
  mean(
    groups.map((g) =>
      Math.abs(
        pearson(
          g.map((p) => p[k]),
          g.map((p) => p.length),
        ),
      ),
    ),
  );

export const lengthBalance: Study<Row> = {
  name: 'length-balance',
  usesBase: true,
  async runSeed({ base }) {
    const b = base!;
    const pairs = await cached(join(b.dir, 'studies', 'length-balance.json'), async () => {
      const byText = new Map<string, TaskPrompt>(b.train.map((p) => [p.text, p]));
      const kept = b.goldPairs.filter((pair) => {
        const p = byText.get((pair.prompt as Array<{ content: string }>)[0].content)!;
        const c = goldScore(p, pair.chosen),
          r = goldScore(p, pair.rejected);
        const rest = c.total - c.concise - (r.total - r.concise);
        return rest >= 0.05 && c.total > r.total;
      });
      const rm = await unbalancedRm(b);
      const unbalanced = new RewardModel(rm, b.tokenizer, { batchSize: 64 });
      const texts = kept.flatMap((p) => [
        { prompt: p.prompt, response: p.chosen },
        { prompt: p.prompt, response: p.rejected },
      ]);
      const sb = await b.reward.scoreText(texts),
        su = await unbalanced.scoreText(texts);
      rm.dispose();
      return kept.map((p, i) => ({
        balanced: sb[2 * i] - sb[2 * i + 1],
        unbalanced: su[2 * i] - su[2 * i + 1],
        length: p.chosen.length - p.rejected.length,
      }));
    });
    const [s, balanced, unbalanced] = [await sft(b), await ppo(b), await ppo(b, { rmUnbalanced: true })];
    return { pairs, length: { sft: s.length, balanced: balanced.length, unbalanced: unbalanced.length } };
  },
  summarize(rows, seeds) {
    const name = 'length-balance';
    const perSeed = rows.map((r) => r.pairs);
    const len = (k: keyof Row['length']) => mean(rows.flatMap((r) => r.length[k]));
    const lengthDiff = estimate(
      differences(
        rows.map((r) => r.length.unbalanced),
        rows.map((r) => r.length.balanced),
      ),
      `${name}/ppo-length`,
    );
    const effect = estimate(perSeed, `${name}/effect`, (g) => absCorr('unbalanced')(g) - absCorr('balanced')(g));
    const corr = (k: 'balanced' | 'unbalanced') =>
      estimate(perSeed, `${name}/${k}`, (g) =>
        mean(
          g.map((x) =>
            pearson(
              x.map((p) => p[k]),
              x.map((p) => p.length),
            ),
          ),
        ),
      );
    const acc = (k: 'balanced' | 'unbalanced') => mean(perSeed.map((g) => mean(g.map((p) => (p[k] > 0 ? 1 : 0)))));
    const cb = corr('balanced'),
      cu = corr('unbalanced');
    const claim = 'Balancing the reward model’s pairs by length difference removes its length bias.';
    const effectLabel = '|correlation of score difference with length difference|, unbalanced minus balanced';
    const n = Math.round(mean(perSeed.map((g) => g.length)));
    return {
      name,
      title: 'Reward model with and without length balancing',
      claim,
      source: 'ChatGLM-RLHF (arXiv 2404.00934) §2.2',
      effectLabel,
      ...verdictOf({ name, claim, effectLabel, seeds, items: `about ${n} held-out pairs` }, effect, 1),
      seeds,
      table: {
        columns: [
          'reward model',
          'correlation with length difference [95% CI]',
          'accuracy on these pairs',
          'answer length after PPO (characters)',
        ],
        rows: [
          ['length-balanced', withCi(cb), `${fmt(100 * acc('balanced'))}%`, fmt(len('balanced'))],
          ['all pairs', withCi(cu), `${fmt(100 * acc('unbalanced'))}%`, fmt(len('unbalanced'))],
        ],
      },
      chart: svgIntervals({
        title: 'Correlation of the reward difference with the length difference, 95% CI',
        yLabel: 'Pearson correlation',
        rows: [
          { label: 'length-balanced', mean: cb.mean, lo: cb.ci[0], hi: cb.ci[1] },
          { label: 'all pairs', mean: cu.mean, lo: cu.ci[0], hi: cu.ci[1] },
        ],
      }),
      notes: [
        'Pairs: fresh SFT samples on the training prompts labelled by the gold function, never trained on, kept when their gold ordering holds without the concision term.',
        'The annotator prefers shorter answers on this task (concision is part of the gold score), so an unbalanced reward model can learn “shorter is better” as a shortcut.',
        `The policy’s answers after PPO (characters, mean over held-out prompts): ${fmt(len('balanced'))} with the length-balanced reward model, ${fmt(len('unbalanced'))} with the one trained on all pairs (SFT: ${fmt(len('sft'))}); unbalanced minus balanced ${withCi(lengthDiff)}.`,
      ],
    };
  },
};
