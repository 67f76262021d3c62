/** rlhf serve: an OpenAI-compatible HTTP endpoint for a checkpoint (chat, completions, streaming). */
import { basename, resolve } from 'node:path';
import { Model } from '../../engine/model.js';
import { startServer } from '../../serve/server.js';
import { ByteTokenizer, loadTokenizer, type Tokenizer } from '../../tokenizer/index.js';
import { CliError, onInterrupt, type CommandHandler, type CommandSpec } from '../framework/index.js';
import { applyThreads, COMMON_FLAGS, MODEL_FLAGS, readModelConfig } from './shared.js';

export const serveSpec: CommandSpec = {
  name: 'serve',
  summary: 'serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)',
  description:
    'Listens on 127.0.0.1 unless --host says otherwise. With --api-key (or RLHF_API_KEY in the environment) every /v1 route needs "Authorization: Bearer <key>". ' +
    "Concurrent requests are decoded together, one token per step, on a paged KV cache of --kv-mib MiB (continuous batching: a new request joins at the next step, a disconnected client's request is cancelled and frees its blocks); a seeded request gives the same answer alone or among others. " +
    'A model the session cannot run (tensor-parallel) is served in generate calls of --chunk-tokens tokens. Ctrl-C stops the server.',
  flags: {
    model: { type: 'path', required: true, placeholder: 'dir', describe: 'the checkpoint to serve' },
    tokenizer: {
      type: 'enum',
      values: ['checkpoint', 'byte'],
      default: 'checkpoint',
      describe:
        'checkpoint: the tokenizer files in --model; byte: the built-in byte tokenizer (for a checkpoint saved without tokenizer files)',
    },
    host: {
      type: 'string',
      default: '127.0.0.1',
      describe: 'address to listen on (0.0.0.0 opens the server to the network)',
    },
    port: { type: 'int', min: 0, max: 65535, default: 8000, describe: 'port (0 picks a free one)' },
    apiKey: {
      type: 'string',
      placeholder: 'key',
      describe: 'require this bearer token (default: RLHF_API_KEY if set, else no auth)',
    },
    modelName: {
      type: 'string',
      placeholder: 'name',
      describe: 'the model id clients send (default: the folder name)',
    },
    maxTokens: { type: 'int', min: 1, default: 256, describe: 'max_tokens of a chat request that gives none' },
    kvMib: {
      type: 'int',
      min: 1,
      max: 1 << 20,
      default: 1024,
      describe:
        'KV cache size in MiB: requests wait for free blocks; one whose prompt + max_tokens cannot fit at all gets HTTP 400',
    },
    blockSize: { type: 'int', min: 1, max: 65536, default: 16, describe: 'token positions per KV block' },
    kvDtype: {
      type: 'enum',
      values: ['f32', 'bf16'],
      default: 'f32',
      describe: 'KV cache dtype (bf16: twice the sequences in --kv-mib; k/v rounded to bf16, f32 accumulation)',
    },
    tokenBudget: {
      type: 'int',
      min: 1,
      max: 1 << 24,
      default: 512,
      describe: 'rows per step: decode rows plus prefill tokens (a long prompt is prefilled over several steps)',
    },
    maxBatch: { type: 'int', min: 1, max: 4096, default: 32, describe: 'most sequences decoded together' },
    chunkTokens: {
      type: 'int',
      min: 1,
      max: 4096,
      default: 16,
      describe:
        'tensor-parallel models only: tokens per generate call (a seeded request is reproducible for a given value)',
    },
    maxQueue: {
      type: 'int',
      min: 1,
      max: 100000,
      default: 64,
      describe: 'most requests waiting or running; more get HTTP 429',
    },
    maxBodyBytes: { type: 'int', min: 1024, default: 1 << 20, describe: 'largest request body; larger gets HTTP 413' },
    ...MODEL_FLAGS,
    threads: COMMON_FLAGS.threads,
  },
  examples: [
    'rlhf serve --model runs/dpo/model --port 8000',
    'RLHF_API_KEY=secret rlhf serve --model runs/sft/model --model-name sft --tokenizer byte',
  ],
};

export const serveCommand: CommandHandler = async (o, ctx) => {
  applyThreads(o);
  const dir = o.model as string;
  await readModelConfig(dir, '--model');
  const model = await Model.load(dir, { tensorParallel: (o.tp as number) ?? 1 });
  let tokenizer: Tokenizer;
  if (o.tokenizer === 'byte') tokenizer = new ByteTokenizer();
  else {
    try {
      tokenizer = await loadTokenizer(dir);
    } catch (err) {
      model.dispose();
      throw new CliError(
        `--model ${dir}: ${(err as Error).message} (a checkpoint saved without tokenizer files can be served with --tokenizer byte)`,
      );
    }
  }
  const apiKey = (o.apiKey as string | undefined) ?? process.env.RLHF_API_KEY ?? undefined;
  const server = await startServer({
    model,
    tokenizer,
    modelName: (o.modelName as string | undefined) ?? basename(resolve(dir)),
    host: o.host as string,
    port: o.port as number,
    ...(apiKey ? { apiKey } : {}),
    defaultMaxTokens: o.maxTokens as number,
    kvBytes: (o.kvMib as number) * 2 ** 20,
    blockSize: o.blockSize as number,
    kvDtype: o.kvDtype as 'f32' | 'bf16',
    tokenBudget: o.tokenBudget as number,
    chunkTokens: o.chunkTokens as number,
    maxBatchRows: o.maxBatch as number,
    maxRequests: o.maxQueue as number,
    maxBodyBytes: o.maxBodyBytes as number,
  });
  ctx.stdout.write(
    `rlhf serve: listening on ${server.url} (model "${(o.modelName as string | undefined) ?? basename(resolve(dir))}"${apiKey ? ', API key required' : ''})\n`,
  );
  await new Promise<void>((done) => {
    onInterrupt(done);
    process.once('SIGTERM', done);
  });
  await server.close();
  model.dispose();
  ctx.stdout.write(
    `rlhf serve: stopped after ${server.stats.completed} requests (${server.stats.cancelled} cancelled)\n`,
  );
  return 0;
};
