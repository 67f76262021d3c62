/** rlhf eval: a policy against a baseline policy, judged by a reward model or a rule. */
import { loadPromptFile, writeJsonl } from '../../data/index.js';
import { generateRolloutInChunks } from '../../rollout/chunked.js';
import { TrainerEmitter } from '../../train/events.js';
import { sequenceBatch } from '../../rollout/sequences.js';
import type { Model } from '../../engine/model.js';
import { checkScores } from '../../rewards/types.js';
import { attachProgress, type CommandSpec, type CommandHandler } from '../framework/index.js';
import { applyThreads, COMMON_FLAGS, MODEL_FLAGS, loadModel, resolveReward, REWARD_FLAGS } from './shared.js';

export const evalSpec: CommandSpec = {
  name: 'eval',
  summary: 'compare a policy with a baseline: win/tie/loss under a judge, mean score, KL, response length',
  description:
    "Both policies answer every prompt --samples times (sample k against sample k); the judge (a reward model or a rule) scores each response. KL(policy‖baseline) per response is estimated on the policy's own samples.",
  flags: {
    policy: { type: 'checkpoint', required: true, placeholder: 'dir', describe: 'the policy to evaluate' },
    baseline: {
      type: 'checkpoint',
      required: true,
      placeholder: 'dir',
      describe: 'the policy to compare against (e.g. the SFT model)',
    },
    prompts: { type: 'path', required: true, placeholder: 'prompts.jsonl', describe: 'held-out prompts' },
    ...REWARD_FLAGS,
    samples: { type: 'int', min: 1, default: 4, describe: 'responses per prompt and policy' },
    maxNewTokens: { type: 'int', min: 1, default: 64, describe: 'longest response' },
    output: {
      type: 'path',
      placeholder: 'result.json',
      describe: 'also write the result and every compared pair (JSONL next to it)',
    },
    ...MODEL_FLAGS,
    ...COMMON_FLAGS,
  },
  examples: [
    'rlhf eval --policy runs/ppo/model --baseline runs/sft/model --prompts eval-prompts.jsonl --reward-rule demo-gold --samples 8',
  ],
};

export const evalCommand: CommandHandler = async (o, ctx) => {
  applyThreads(o);
  const prompts = await loadPromptFile(o.prompts as string);
  const { reward } = await resolveReward(o);
  const { model: policy, tokenizer } = await loadModel(o.policy as string, '--policy');
  const { model: baseline } = await loadModel(o.baseline as string, '--baseline');
  const sampling = { maxNewTokens: o.maxNewTokens as number, temperature: 1 };
  const emitter = new TrainerEmitter();
  const progress = attachProgress(emitter, ctx.stderr);
  const run = async (m: Model) => {
    const r = await generateRolloutInChunks(
      { policy: m, tokenizer, prompts, samplesPerPrompt: o.samples as number, sampling, seed: o.seed as number },
      { emitter, stage: m === policy ? 'eval (policy)' : 'eval (baseline)', chunks: 10 },
    );
    const requests = r.samples.map((s) => ({
      prompt: prompts[s.promptIndex].prompt,
      response: s.text,
      promptIds: s.promptIds,
      responseIds: s.responseIds,
      record: prompts[s.promptIndex],
    }));
    return { r, scores: checkScores(reward, await reward.score(requests), requests.length) };
  };
  const a = await run(policy),
    b = await run(baseline);
  progress.done();
  let win = 0,
    tie = 0,
    loss = 0,
    kl = 0;
  a.scores.forEach((s, i) => (Math.abs(s - b.scores[i]) < 1e-9 ? tie++ : s > b.scores[i] ? win++ : loss++));
  for (let i = 0; i < a.r.samples.length; i += 64) {
    const part = a.r.samples.slice(i, i + 64);
    const sb = sequenceBatch(part, tokenizer.padId);
    const f = await baseline.forward({
      tokens: sb.tokens,
      targets: sb.targets,
      batch: sb.batch,
      seqLen: sb.seqLen,
      lengths: sb.lengths,
      saveForBackward: false,
    });
    part.forEach((s, j) => s.logprobs.forEach((lp, t) => (kl += lp - f.logprobs[sb.responseStart[j] + t])));
  }
  const n = a.scores.length;
  const mean = (x: number[]) => x.reduce((p, q) => p + q, 0) / x.length;
  const result = {
    judge: reward.name,
    comparisons: n,
    winRate: (win + 0.5 * tie) / n,
    tieRate: tie / n,
    lossRate: loss / n,
    score: mean(a.scores),
    baselineScore: mean(b.scores),
    kl: kl / n,
    length: mean(a.r.samples.map((s) => s.text.length)),
    baselineLength: mean(b.r.samples.map((s) => s.text.length)),
  };
  ctx.stdout.write(
    `win ${(100 * result.winRate).toFixed(1)}% (ties counted half; tie ${(100 * result.tieRate).toFixed(1)}%, loss ${(100 * result.lossRate).toFixed(1)}%) over ${n} comparisons judged by ${reward.name}\n` +
      `score ${result.score.toFixed(3)} vs ${result.baselineScore.toFixed(3)}, KL to baseline ${result.kl.toFixed(3)} per response, length ${result.length.toFixed(1)} vs ${result.baselineLength.toFixed(1)} characters\n`,
  );
  if (o.output) {
    const { writeFileAtomic } = await import('../../io/atomic.js');
    await writeFileAtomic(o.output as string, JSON.stringify(result, null, 2) + '\n');
    await writeJsonl(
      `${o.output}.pairs.jsonl`,
      a.r.samples.map((s, i) => ({
        prompt: prompts[s.promptIndex].prompt,
        policy: s.text,
        baseline: b.r.samples[i].text,
        policyScore: a.scores[i],
        baselineScore: b.scores[i],
      })),
    );
  }
  return 0;
};
