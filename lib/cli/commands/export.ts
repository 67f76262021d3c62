/** rlhf export: write a model as a GGUF file for llama.cpp and Ollama. */
import { exportGguf, GGUF_DTYPES, type GgufDType } from '../../io/gguf-export.js';
import { Model } from '../../engine/model.js';
import { CliError, type CommandHandler, type CommandSpec } from '../framework/index.js';
import { applyThreads, COMMON_FLAGS, readModelConfig } from './shared.js';

export const exportSpec: CommandSpec = {
  name: 'export',
  summary: 'write a model as a GGUF file (llama.cpp, Ollama)',
  flags: {
    model: {
      type: 'path',
      required: true,
      placeholder: 'dir',
      describe: 'the model (a Llama or Qwen2 causal LM with its tokenizer)',
    },
    gguf: {
      type: 'path',
      required: true,
      placeholder: 'out.gguf',
      describe: 'the GGUF file to write (replaced atomically)',
    },
    dtype: {
      type: 'enum',
      values: GGUF_DTYPES,
      default: 'f32',
      describe: 'storage of the weight matrices (norms and biases stay f32)',
    },
    name: { type: 'string', placeholder: 'text', describe: 'general.name written into the file' },
    ...COMMON_FLAGS,
  },
  examples: [
    'rlhf export --model runs/ppo/model --gguf policy.gguf',
    'rlhf export --model runs/ppo/model --gguf policy-q8.gguf --dtype q8_0',
  ],
};

export const exportCommand: CommandHandler = async (o, ctx) => {
  applyThreads(o);
  const dir = o.model as string;
  await readModelConfig(dir, '--model');
  const model = await Model.load(dir);
  try {
    if (!String(o.gguf).endsWith('.gguf'))
      throw new CliError(`--gguf: expected a file name ending in .gguf, received ${JSON.stringify(o.gguf)}`);
    await exportGguf(model, o.gguf as string, {
      dtype: o.dtype as GgufDType,
      tokenizer: dir,
      ...(o.name ? { name: o.name as string } : {}),
    });
  } finally {
    model.dispose();
  }
  ctx.stdout.write(`${o.gguf} written (${o.dtype})\n`);
  return 0;
};
