/**
 * `longreward`: LongReward's claim on a long-context task made in code (lib/study/longdoc.ts) —
 * DPO on preference pairs built by the four-dimension LongReward judge makes a policy more
 * faithful to the document than the SFT policy it starts from.
 *
 * Per seed: a tiny policy is SFT-trained on imperfect demonstrations (documents of a few thousand
 * byte tokens); it answers every training question K times; the LongReward pipeline
 * (lib/rewards/longreward: statement extraction, lexical retrieval over 128-token chunks, support
 * verdicts, per-chunk fact extraction, four ratings) scores each answer with the task's gold
 * function as the judge (LongDocGoldJudge, replaceable by a served model); buildPairs pairs the best
 * against the worst answer per question; DPO trains on those pairs from the SFT policy. Both
 * policies answer the held-out questions at temperature 1 and the gold function scores them.
 * Measured: faithfulness (0..10) of DPO minus SFT per held-out question; the other three dimensions
 * and how well the pipeline's faithfulness tracks the gold one are in the table.
 */
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { pathExists } from '../../io/atomic.js';
import { tinyConfig } from '../../engine/config.js';
import { Model } from '../../engine/model.js';
import { rng } from '../../demo/task.js';
import { tokenizePromptResponse } from '../../data/tokenize.js';
import { createHash } from 'node:crypto';
import { buildPairs, LexicalEmbedder, LongReward } from '../../rewards/longreward/index.js';
import { generateRollout } from '../../rollout/generate.js';
import { ByteTokenizer } from '../../tokenizer/index.js';
import { PreferenceTrainer } from '../../train/preference.js';
import { SFTTrainer } from '../../train/sft.js';
import { fmt } from '../../report/svg.js';
import { svgIntervals } from '../charts.js';
import { cached } from '../setup.js';
import { mean, pearson } from '../stats.js';
import { differences, estimate, verdictOf, withCi, type Study } from '../types.js';
import { LongDocGoldJudge } from '../longdoc-judge.js';
import {
  goldLongScore,
  longDocDemonstration,
  makeLongDocTasks,
  type LongDocScores,
  type LongDocTask,
} from '../longdoc.js';

const DIMS = ['faithfulness', 'completeness', 'helpfulness', 'logicality', 'total'] as const;
type Dim = (typeof DIMS)[number];
/** per held-out question: the mean gold score of each dimension over the policy's samples */
type PolicyScores = Record<Dim, number[]>;

interface Row {
  sft: PolicyScores;
  dpo: PolicyScores;
  /** per scored training answer: the pipeline's faithfulness and the gold one */
  pipelineFaith: number[];
  goldFaith: number[];
  /** pairs built, and how many of them the gold total orders the same way (ties excluded) */
  pairs: number;
  pairsAgreeing: number;
  pairsDecided: number;
  /** tokens of the longest prompt */
  promptTokens: number;
  examples: Array<{ question: string; sft: string; dpo: string }>;
  /** the served judge's identity (absent: the gold function) and the answers it never scored */
  judge?: string;
  unscored?: number;
}

async function answers(
  policy: Model,
  tok: ByteTokenizer,
  tasks: LongDocTask[],
  k: number,
  maxNewTokens: number,
  seed: number,
): Promise<string[][]> {
  const roll = await generateRollout({
    policy,
    tokenizer: tok,
    prompts: tasks.map((t) => ({ prompt: t.messages })),
    samplesPerPrompt: k,
    sampling: { maxNewTokens, temperature: 1 },
    seed,
    batchSize: 16,
  });
  const out = tasks.map(() => [] as string[]);
  for (const s of roll.samples) out[s.promptIndex].push(s.text);
  return out;
}

function goldTable(tasks: LongDocTask[], texts: string[][]): PolicyScores {
  const scores: LongDocScores[][] = texts.map((row, p) => row.map((a) => goldLongScore(tasks[p], a)));
  return Object.fromEntries(DIMS.map((d) => [d, scores.map((row) => mean(row.map((s) => s[d])))])) as PolicyScores;
}

export const longreward: Study<Row> = {
  name: 'longreward',
  usesBase: false,
  async runSeed({ seed, settings, cacheDir, log = () => {}, judge: served }) {
    const s = settings.longreward;
    const dir = join(cacheDir, 'longreward');
    // the SFT policy is the judge's input, shared by every judge; the result is per judge
    const result = served
      ? `result-judge-${createHash('sha256').update(served.id).digest('hex').slice(0, 16)}.json`
      : 'result.json';
    return cached(join(dir, result), async () => {
      const tok = new ByteTokenizer();
      const tasks = makeLongDocTasks(seed, s.trainPrompts + s.evalPrompts, s.doc);
      const train = tasks.slice(0, s.trainPrompts),
        evalTasks = tasks.slice(s.trainPrompts);
      const promptTokens = Math.max(...tasks.map((t) => tokenizePromptResponse(tok, t.messages, '').promptLength));
      const seqLen = promptTokens + s.maxNewTokens + 1;
      const sftDir = join(dir, 'sft');
      if (!(await pathExists(join(sftDir, 'config.json')))) {
        const r = rng(seed + 41);
        const rows = (ts: LongDocTask[]) =>
          ts.map((t) => ({
            kind: 'messages' as const,
            messages: [...t.messages, { role: 'assistant', content: longDocDemonstration(t, r, s.flaws) }],
          }));
        const short = makeLongDocTasks(seed + 1000, s.sft.shortDocs, {
          ...s.doc,
          chars: s.sft.shortChars,
          entitiesPerDoc: 2,
        });
        const { window, ...m } = s.model;
        const config = tinyConfig({
          family: 'mistral',
          vocab: tok.vocabSize,
          ...m,
          maxPositions: seqLen,
          eosTokenId: tok.eosId,
          padTokenId: tok.padId,
        });
        config.sliding_window = window;
        const model = await Model.create(config, { seed });
        const phase = (records: ReturnType<typeof rows>, lr: number) =>
          new SFTTrainer({
            model,
            tokenizer: tok,
            train: records,
            seqLen,
            batchSize: s.sft.batchSize,
            epochs: 1,
            lr,
            warmupSteps: 4,
            seed,
          }).train();
        const shortResult = await phase(rows(short), s.sft.lr);
        const longResult = await phase(rows(Array.from({ length: s.sft.repeats }, () => train).flat()), s.sft.longLr);
        log(
          `SFT loss ${shortResult.trainLoss.toFixed(3)} on ${short.length} short documents, then ${longResult.trainLoss.toFixed(3)} on the long ones`,
        );
        await mkdir(dir, { recursive: true });
        await model.save(sftDir, { extraFiles: (d) => tok.save(d) });
        model.dispose();
      }
      const sft = await Model.load(sftDir);
      const judge = served?.model ?? new LongDocGoldJudge();
      const scorer = new LongReward({ judge, embedder: new LexicalEmbedder(256), tokenizer: tok, language: 'en' });
      try {
        const sampled = await answers(sft, tok, train, s.samplesPerPrompt, s.maxNewTokens, seed + 5);
        const inputs = sampled.flatMap((row, p) =>
          row.map((answer) => ({ context: train[p].document, question: train[p].question, answer })),
        );
        const maybe = await scorer.scoreMany(inputs, { skipUnparseable: true });
        const scoredIdx = maybe.flatMap((x, i) => (x ? [i] : []));
        const judged = scoredIdx.map((i) => maybe[i]!);
        const unscored = inputs.length - scoredIdx.length;
        const questionOf = (i: number) => Math.floor(i / s.samplesPerPrompt);
        const gold = scoredIdx.map((i) => goldLongScore(train[questionOf(i)], inputs[i].answer));
        const pairs = buildPairs(
          scoredIdx.map((i, j) => ({
            promptId: String(questionOf(i)),
            response: inputs[i].answer,
            scores: judged[j],
            prompt: train[questionOf(i)].messages,
          })),
          { minResponses: 2, dropTies: true },
        );
        log(
          `${scoredIdx.length} SFT answers scored by the LongReward pipeline${unscored ? ` (${unscored} unparseable)` : ''}, ${pairs.length} pairs`,
        );
        let agreeing = 0,
          decided = 0;
        for (const pr of pairs) {
          const t = train[Number(pr.promptId)];
          const gc = goldLongScore(t, pr.chosen).total,
            gr = goldLongScore(t, pr.rejected).total;
          if (gc !== gr) ((decided += 1), (agreeing += gc > gr ? 1 : 0));
        }
        const policy = await sft.clone();
        try {
          if (pairs.length > 0)
            await new PreferenceTrainer({
              policy,
              reference: sft,
              tokenizer: tok,
              loss: 'dpo',
              beta: s.dpo.beta,
              train: pairs.map((p) => ({ prompt: p.prompt!, chosen: p.chosen, rejected: p.rejected })),
              seqLen,
              batchSize: s.dpo.batchSize,
              epochs: s.dpo.epochs,
              lr: s.dpo.lr,
              seed,
            }).train();
          log('DPO trained');
          const sftTexts = await answers(sft, tok, evalTasks, s.evalSamples, s.maxNewTokens, seed + 3);
          const dpoTexts = await answers(policy, tok, evalTasks, s.evalSamples, s.maxNewTokens, seed + 3);
          return {
            sft: goldTable(evalTasks, sftTexts),
            dpo: goldTable(evalTasks, dpoTexts),
            pipelineFaith: judged.map((j) => j.faithfulness),
            goldFaith: gold.map((g) => g.faithfulness),
            pairs: pairs.length,
            pairsAgreeing: agreeing,
            pairsDecided: decided,
            promptTokens,
            examples: [0, 1].map((i) => ({
              question: evalTasks[i].question,
              sft: sftTexts[i][0],
              dpo: dpoTexts[i][0],
            })),
            ...(served ? { judge: served.id, unscored } : {}),
          };
        } finally {
          policy.dispose();
        }
      } finally {
        sft.dispose();
      }
    });
  },
  summarize(perSeed, seeds, settings) {
    const name = 'longreward';
    const s = settings.longreward;
    const per = DIMS.map((d) => ({
      d,
      sft: mean(perSeed.flatMap((r) => r.sft[d])),
      dpo: mean(perSeed.flatMap((r) => r.dpo[d])),
      diff: estimate(
        differences(
          perSeed.map((r) => r.dpo[d]),
          perSeed.map((r) => r.sft[d]),
        ),
        `${name}/${d}`,
      ),
    }));
    const faith = per[0].diff;
    const claim =
      'DPO on pairs built by the LongReward judge (helpfulness, logicality, faithfulness, completeness) makes the policy more faithful to the long document than SFT.';
    const effectLabel = 'gold faithfulness (0..10), DPO minus SFT';
    const pairs = perSeed.reduce((a, r) => a + r.pairs, 0);
    const agree = perSeed.reduce((a, r) => a + r.pairsAgreeing, 0),
      decided = perSeed.reduce((a, r) => a + r.pairsDecided, 0);
    const corr = pearson(
      perSeed.flatMap((r) => r.pipelineFaith),
      perSeed.flatMap((r) => r.goldFaith),
    );
    const ex = perSeed[0].examples[0];
    return {
      name,
      title: 'LongReward: DPO on judge-built pairs against SFT on a long-document task',
      claim,
      source: 'LongReward (arXiv 2410.21252)',
      effectLabel,
      ...verdictOf(
        { name, claim, effectLabel, seeds, items: `${perSeed[0].sft.faithfulness.length} held-out questions` },
        faith,
        1,
      ),
      seeds,
      table: {
        columns: ['dimension (gold, 0..10; total 0..40)', 'SFT', 'DPO', 'DPO − SFT [95% CI]'],
        rows: per.map((p) => [p.d, fmt(p.sft), fmt(p.dpo), withCi(p.diff)]),
      },
      chart: svgIntervals({
        title: 'DPO minus SFT per gold dimension (0..10), 95% CI',
        yLabel: 'DPO − SFT',
        rows: per
          .filter((p) => p.d !== 'total')
          .map((p) => ({ label: p.d, mean: p.diff.mean, lo: p.diff.ci[0], hi: p.diff.ci[1] })),
      }),
      notes: [
        `Documents of about ${s.doc.chars} characters (prompts up to ${Math.max(...perSeed.map((r) => r.promptTokens))} byte tokens) with ${s.doc.entitiesPerDoc * 3} planted facts; ${s.trainPrompts} training and ${s.evalPrompts} held-out questions per seed; policy ${s.model.layers} layers × ${s.model.hidden} wide.`,
        `The pipeline scored ${s.samplesPerPrompt} SFT answers per training question; ${pairs} best-vs-worst pairs (ties dropped), of which the gold total orders ${agree} of ${decided} non-tied ones the same way. Pipeline faithfulness against gold faithfulness per answer: Pearson ${fmt(corr)}.`,
        perSeed[0].judge
          ? `Judge: ${perSeed[0].judge}, answering the pipeline's prompts (${perSeed.reduce((a, r) => a + (r.unscored ?? 0), 0)} answers left unscored after unparseable replies); retrieval by the lexical embedder over 128-token chunks, top 5.`
          : `Judge: the task's gold function answering the pipeline's own prompts (LongDocGoldJudge); retrieval by the lexical embedder over 128-token chunks, top 5. A served judge (rlhf study longreward --judge-url …) takes its place.`,
        `Example (seed ${seeds[0]}): “${ex.question}” SFT: “${ex.sft}” DPO: “${ex.dpo}”`,
      ],
    };
  },
};
