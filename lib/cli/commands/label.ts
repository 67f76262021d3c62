/** rlhf label: sample response pairs from a model and label them (simulated annotator, rule, reward model). */
import { loadPromptFile, writeJsonl, type PreferenceRecord } from '../../data/index.js';
import { generateRolloutInChunks } from '../../rollout/chunked.js';
import { TrainerEmitter } from '../../train/events.js';
import { rng } from '../../demo/task.js';
import { checkScores } from '../../rewards/types.js';
import { attachProgress, type CommandSpec, type CommandHandler } from '../framework/index.js';
import { applyThreads, COMMON_FLAGS, MODEL_FLAGS, loadModel, resolveReward, REWARD_FLAGS } from './shared.js';

export const labelSpec: CommandSpec = {
  name: 'label',
  summary: 'sample two responses per prompt and label the better one → preference JSONL (ChatGLM-RLHF collection step)',
  description:
    "The judge is a reward model or a rule; --noise flips the label with that probability, simulating annotator disagreement (--reward-rule demo-gold with --noise 0.1 is the demo's simulated annotator). Identical pairs and ties are dropped.",
  flags: {
    model: {
      type: 'checkpoint',
      required: true,
      placeholder: 'dir',
      describe: 'the model that answers (usually the SFT model)',
    },
    prompts: { type: 'path', required: true, placeholder: 'prompts.jsonl', describe: 'prompts' },
    ...REWARD_FLAGS,
    rounds: { type: 'int', min: 1, default: 1, describe: 'pairs per prompt' },
    noise: { type: 'number', min: 0, max: 0.5, default: 0, describe: 'probability that a label is flipped' },
    maxNewTokens: { type: 'int', min: 1, default: 64, describe: 'longest response' },
    output: { type: 'path', required: true, placeholder: 'pairs.jsonl', describe: 'the preference pairs' },
    ...MODEL_FLAGS,
    ...COMMON_FLAGS,
  },
  examples: [
    'rlhf label --model runs/sft/model --prompts prompts.jsonl --reward-rule demo-gold --noise 0.1 --rounds 4 --output pairs.jsonl',
  ],
};

export const labelCommand: CommandHandler = async (o, ctx) => {
  applyThreads(o);
  const prompts = await loadPromptFile(o.prompts as string);
  const { reward } = await resolveReward(o);
  const { model, tokenizer } = await loadModel(o.model as string, '--model');
  const repeated = Array.from({ length: o.rounds as number }, () => prompts).flat();
  const emitter = new TrainerEmitter();
  const progress = attachProgress(emitter, ctx.stderr, { label: 'label' });
  const r = await generateRolloutInChunks(
    {
      policy: model,
      tokenizer,
      prompts: repeated,
      samplesPerPrompt: 2,
      sampling: { maxNewTokens: o.maxNewTokens as number, temperature: 1 },
      seed: o.seed as number,
    },
    { emitter, stage: 'label' },
  );
  progress.done();
  const requests = r.samples.map((s) => ({
    prompt: repeated[s.promptIndex].prompt,
    response: s.text,
    promptIds: s.promptIds,
    responseIds: s.responseIds,
    record: repeated[s.promptIndex],
  }));
  const scores = checkScores(reward, await reward.score(requests), requests.length);
  const flip = rng((o.seed as number) + 1);
  const pairs: PreferenceRecord[] = [];
  let dropped = 0;
  for (let i = 0; i < r.samples.length; i += 2) {
    const [a, b] = [r.samples[i].text, r.samples[i + 1].text];
    if (a === b || scores[i] === scores[i + 1]) {
      dropped++;
      continue;
    }
    let aWins = scores[i] > scores[i + 1];
    if (flip() < (o.noise as number)) aWins = !aWins;
    pairs.push({ prompt: repeated[r.samples[i].promptIndex].prompt, chosen: aWins ? a : b, rejected: aWins ? b : a });
  }
  await writeJsonl(o.output as string, pairs);
  ctx.stdout.write(
    `${pairs.length} pairs written to ${o.output} (${dropped} identical or tied dropped; judge ${reward.name}, noise ${o.noise})\n`,
  );
  return 0;
};
