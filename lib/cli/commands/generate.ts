/** rlhf generate: sample responses from a model (KV cache), to the terminal or a JSONL file. */
import { loadPromptFile, writeJsonl, type PromptRecord } from '../../data/index.js';
import { generateRollout } from '../../rollout/generate.js';
import { CliError, type CommandSpec, type CommandHandler } from '../framework/index.js';
import { applyThreads, COMMON_FLAGS, MODEL_FLAGS, loadModel } from './shared.js';

export const generateSpec: CommandSpec = {
  name: 'generate',
  summary: 'sample responses from a model',
  flags: {
    model: { type: 'checkpoint', required: true, placeholder: 'dir', describe: 'the model' },
    prompt: { type: 'list', placeholder: 'text', describe: 'a prompt (repeatable); sent as a user message' },
    prompts: { type: 'path', placeholder: 'prompts.jsonl', describe: 'or a prompt file ({prompt: string | messages})' },
    samples: { type: 'int', min: 1, default: 1, describe: 'responses per prompt' },
    maxNewTokens: { type: 'int', min: 1, default: 64, describe: 'longest response' },
    temperature: { type: 'number', min: 0, default: 1, describe: '0 = greedy' },
    topP: { type: 'number', min: 0, max: 1, default: 1, describe: 'nucleus sampling mass' },
    topK: { type: 'int', min: 0, default: 0, describe: 'keep the k most likely tokens (0 = off)' },
    output: {
      type: 'path',
      placeholder: 'out.jsonl',
      describe: 'write {prompt, response, logprob, finishReason} lines here instead of printing',
    },
    ...MODEL_FLAGS,
    ...COMMON_FLAGS,
  },
  examples: [
    'rlhf generate --model runs/ppo/model --prompt "What is 3+4? Answer in words." --samples 3',
    'rlhf generate --model runs/sft/model --prompts prompts.jsonl --output samples.jsonl --temperature 0',
  ],
};

export const generateCommand: CommandHandler = async (o, ctx) => {
  applyThreads(o);
  const texts = (o.prompt as string[] | undefined) ?? [];
  if (!texts.length && !o.prompts) throw new CliError('give --prompt <text> or --prompts <file>');
  const records: PromptRecord[] = o.prompts
    ? await loadPromptFile(o.prompts as string)
    : texts.map((t) => ({ prompt: [{ role: 'user', content: t }] }));
  const { model, tokenizer } = await loadModel(o.model as string, '--model');
  const r = await generateRollout({
    policy: model,
    tokenizer,
    prompts: records,
    samplesPerPrompt: o.samples as number,
    sampling: {
      maxNewTokens: o.maxNewTokens as number,
      temperature: o.temperature as number,
      topP: o.topP as number,
      topK: o.topK as number,
    },
    seed: o.seed as number,
  });
  const rows = r.samples.map((s) => ({
    prompt: records[s.promptIndex].prompt,
    response: s.text,
    logprob: s.logprobs.reduce((a, b) => a + b, 0),
    finishReason: s.finishReason,
  }));
  if (o.output) {
    await writeJsonl(o.output as string, rows);
    ctx.stdout.write(`${rows.length} responses written to ${o.output}\n`);
  } else {
    for (const row of rows) {
      const p = typeof row.prompt === 'string' ? row.prompt : row.prompt.map((m) => m.content).join(' / ');
      ctx.stdout.write(`> ${p}\n${row.response}\n  (log-prob ${row.logprob.toFixed(2)}, ${row.finishReason})\n`);
    }
  }
  model.dispose();
  return 0;
};
