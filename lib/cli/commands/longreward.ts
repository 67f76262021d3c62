/** rlhf longreward: sample K responses per long-context prompt, score them with an LLM judge over HTTP, write best-vs-worst DPO pairs. */
import { join } from 'node:path';
import { readJsonlFile, writeJsonl } from '../../data/index.js';
import { ErrorCode, RlhfError } from '../../errors.js';
import { generateRollout } from '../../rollout/generate.js';
import {
  buildPairs,
  LexicalEmbedder,
  LongReward,
  OpenAIEmbedder,
  OpenAIJudge,
  type EmbeddingModel,
  type LongRewardScores,
  type ScoredResponse,
} from '../../rewards/longreward/index.js';
import type { CommandHandler, CommandSpec } from '../framework/index.js';
import { applyThreads, COMMON_FLAGS, loadModel, MODEL_FLAGS } from './shared.js';

export const longrewardSpec: CommandSpec = {
  name: 'longreward',
  summary:
    'LongReward: K responses per long-context prompt, scored by an LLM judge over an OpenAI-compatible API → best-vs-worst DPO pairs',
  description:
    'Each line of --prompts is {"context": "<long document>", "question": "...", "id"?: "..."}; the policy sees the context and the question as one user message. ' +
    'The judge scores helpfulness, logicality, faithfulness (statements checked against retrieved passages) and completeness, 0-10 each; the best and worst responses by total form a pair ("rlhf dpo --data <out>" trains on them). ' +
    "The judge's API key is read from the environment variable named by --judge-key-env. Replies are cached in --cache (default <out>.cache/), so a rerun with the same flags resumes without asking again. " +
    'Retrieval uses --embed-url/--embed-model (an OpenAI /embeddings endpoint) or, without them, a local lexical embedding (hashed words and character trigrams). ' +
    'A response whose judge replies never parse (after --judge-attempts tries) is skipped and counted.',
  flags: {
    policy: {
      type: 'path',
      required: true,
      placeholder: 'dir',
      describe: 'the model whose responses are scored (usually the SFT model)',
    },
    prompts: {
      type: 'path',
      required: true,
      placeholder: 'long.jsonl',
      describe: 'long-context prompts: {context, question, id?}',
    },
    judgeUrl: {
      type: 'string',
      required: true,
      placeholder: 'url',
      describe: "the judge's OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1",
    },
    judgeModel: { type: 'string', required: true, placeholder: 'name', describe: 'the judge model name' },
    judgeKeyEnv: {
      type: 'string',
      default: 'OPENAI_API_KEY',
      placeholder: 'VAR',
      describe: "environment variable holding the judge's API key (unset: no Authorization header)",
    },
    judgeAttempts: {
      type: 'int',
      min: 1,
      max: 20,
      default: 5,
      describe:
        'judge calls per question before a reply that will not parse fails the response (first at temperature 0.01, then 0.95)',
    },
    judgeMaxTokens: {
      type: 'int',
      min: 1,
      placeholder: 'n',
      describe: "cap on the judge's max_tokens (default: the pipeline's 512/1024/2048)",
    },
    embedUrl: {
      type: 'string',
      placeholder: 'url',
      describe: 'OpenAI-compatible base URL for /embeddings (default: local lexical retrieval)',
    },
    embedModel: { type: 'string', placeholder: 'name', describe: 'embedding model name (with --embed-url)' },
    concurrency: { type: 'int', min: 1, max: 256, default: 4, describe: 'HTTP requests in flight at once' },
    retries: {
      type: 'int',
      min: 0,
      max: 20,
      default: 5,
      describe:
        'retries on 429, 5xx, timeouts and network errors (exponential backoff from 0.5 s, Retry-After honoured)',
    },
    timeout: { type: 'number', min: 0.001, default: 120, describe: 'seconds per HTTP attempt' },
    cache: { type: 'path', placeholder: 'dir', describe: 'reply cache (default <out>.cache)' },
    language: {
      type: 'enum',
      values: ['auto', 'en', 'zh'],
      default: 'auto',
      describe: 'language of the judge prompts (auto: from the text)',
    },
    samples: { type: 'int', min: 2, default: 5, describe: 'K: responses per prompt' },
    minResponses: {
      type: 'int',
      min: 2,
      placeholder: 'n',
      describe: 'prompts with fewer scored responses give no pair (default K)',
    },
    dropTies: { type: 'bool', describe: 'skip prompts whose best and worst totals are equal' },
    maxNewTokens: { type: 'int', min: 1, default: 256, describe: 'longest response' },
    temperature: { type: 'number', min: 0, default: 1, describe: 'policy sampling temperature' },
    batchSize: { type: 'int', min: 1, default: 16, describe: 'policy sequences per generate call' },
    out: {
      type: 'path',
      required: true,
      placeholder: 'pairs.jsonl',
      describe: 'the pairs: {prompt, chosen, rejected, margin}',
    },
    scoresOut: {
      type: 'path',
      placeholder: 'scores.jsonl',
      describe: 'also write every scored response {id, response, scores}',
    },
    ...MODEL_FLAGS,
    ...COMMON_FLAGS,
  },
  examples: [
    'OPENAI_API_KEY=... rlhf longreward --policy runs/sft/model --prompts long.jsonl --judge-url https://api.openai.com/v1 --judge-model gpt-4o --out pairs.jsonl',
    'rlhf longreward --policy runs/sft/model --prompts long.jsonl --judge-url http://127.0.0.1:8000/v1 --judge-model judge --samples 4 --out pairs.jsonl && rlhf dpo --policy runs/sft/model --data pairs.jsonl --output runs/dpo',
  ],
};

interface LongPrompt {
  id: string;
  context: string;
  question: string;
}

async function loadLongPrompts(path: string): Promise<LongPrompt[]> {
  const lines = await readJsonlFile(path);
  if (lines.length === 0) throw new RlhfError(ErrorCode.FORMAT, `${path}: no prompts`);
  const ids = new Set<string>();
  return lines.map(({ value, line }) => {
    const where = `${path}:${line}`;
    const o = value as Record<string, unknown>;
    if (o === null || typeof o !== 'object' || Array.isArray(o))
      throw new RlhfError(ErrorCode.FORMAT, `${where}: expected a JSON object {context, question, id?}`);
    for (const k of ['context', 'question'])
      if (typeof o[k] !== 'string' || !(o[k] as string).trim())
        throw new RlhfError(ErrorCode.FORMAT, `${where}: expected "${k}" to be a non-empty string`);
    if (o.id !== undefined && typeof o.id !== 'string' && typeof o.id !== 'number')
      throw new RlhfError(ErrorCode.FORMAT, `${where}: expected "id" to be a string or a number`);
    const id = o.id === undefined ? String(line) : String(o.id);
    if (ids.has(id)) throw new RlhfError(ErrorCode.FORMAT, `${where}: duplicate id "${id}"`);
    ids.add(id);
    return { id, context: o.context as string, question: o.question as string };
  });
}

export const longrewardCommand: CommandHandler = async (o, ctx) => {
  applyThreads(o);
  const prompts = await loadLongPrompts(o.prompts as string);
  const out = o.out as string;
  const K = o.samples as number;
  const http = {
    maxConcurrent: o.concurrency as number,
    maxRetries: o.retries as number,
    timeoutMs: Math.ceil((o.timeout as number) * 1000),
    cacheDir: (o.cache as string | undefined) ?? `${out}.cache`,
  };
  const judge = new OpenAIJudge({
    baseURL: o.judgeUrl as string,
    model: o.judgeModel as string,
    apiKeyEnv: o.judgeKeyEnv as string,
    ...http,
    ...(o.judgeMaxTokens ? { maxTokens: o.judgeMaxTokens as number } : {}),
  });
  let embedder: EmbeddingModel = new LexicalEmbedder();
  if (o.embedUrl || o.embedModel) {
    if (!o.embedUrl || !o.embedModel)
      throw new RlhfError(ErrorCode.INVALID_ARGUMENT, '--embed-url and --embed-model go together');
    embedder = new OpenAIEmbedder({
      baseURL: o.embedUrl as string,
      model: o.embedModel as string,
      apiKeyEnv: o.judgeKeyEnv as string,
      ...http,
      cacheDir: join(http.cacheDir, 'embeddings'),
    });
  }

  const { model, tokenizer } = await loadModel(o.policy as string, '--policy');
  const messages = prompts.map((p) => ({ prompt: [{ role: 'user', content: `${p.context}\n\n${p.question}` }] }));
  ctx.stderr.write(`longreward: sampling ${K} responses for each of ${prompts.length} prompts\n`);
  let rollout;
  try {
    rollout = await generateRollout({
      policy: model,
      tokenizer,
      prompts: messages,
      samplesPerPrompt: K,
      sampling: { maxNewTokens: o.maxNewTokens as number, temperature: o.temperature as number },
      seed: o.seed as number,
      batchSize: o.batchSize as number,
    });
  } finally {
    model.dispose();
  }

  const scorer = new LongReward({
    judge,
    embedder,
    tokenizer,
    maxAttempts: o.judgeAttempts as number,
    language: o.language as 'auto' | 'en' | 'zh',
    maxConcurrentCalls: o.concurrency as number,
  });
  // responses judged ceil(concurrency / 2) at a time (each asks several questions at once; the
  // scorer caps judge calls in flight at --concurrency); results in sampling order, so ties
  // between totals resolve the same way at any concurrency
  const failures: string[] = [];
  let done = 0;
  const total = rollout.samples.length;
  const results = await scorer.scoreMany(
    rollout.samples.map((s) => ({
      context: prompts[s.promptIndex].context,
      question: prompts[s.promptIndex].question,
      answer: s.text,
    })),
    {
      concurrency: Math.max(1, Math.ceil((o.concurrency as number) / 2)),
      skipUnparseable: true, // any other error (transport) ends the run; the cache keeps what was answered
      onSettled: (i, outcome) => {
        if ('error' in outcome)
          failures.push(`prompt ${prompts[rollout.samples[i].promptIndex].id}: ${outcome.error.message.slice(0, 200)}`);
        if (++done % 10 === 0 || done === total)
          ctx.stderr.write(`longreward: ${done}/${total} responses judged (${failures.length} unparseable)\n`);
      },
    },
  );
  const scored: Array<ScoredResponse & { scores: LongRewardScores }> = [];
  results.forEach((scores, i) => {
    const s = rollout.samples[i];
    if (scores)
      scored.push({
        promptId: prompts[s.promptIndex].id,
        response: s.text,
        scores,
        prompt: messages[s.promptIndex].prompt,
      });
  });

  const pairs = buildPairs(scored, {
    minResponses: (o.minResponses as number | undefined) ?? K,
    dropTies: o.dropTies === true,
  });
  await writeJsonl(
    out,
    pairs.map((p) => ({ prompt: p.prompt, chosen: p.chosen, rejected: p.rejected, margin: p.margin })),
  );
  if (o.scoresOut)
    await writeJsonl(
      o.scoresOut as string,
      scored.map((s) => ({ id: s.promptId, response: s.response, scores: s.scores })),
    );
  const st = judge.stats;
  ctx.stdout.write(
    `${pairs.length} pairs written to ${out} (${scored.length} responses scored, ${failures.length} unparseable; judge: ${st.requests} HTTP requests, ${st.retries} retries, ${st.cacheHits} cached replies)\n`,
  );
  for (const f of failures.slice(0, 3)) ctx.stderr.write(`longreward: unparseable: ${f}\n`);
  if (pairs.length === 0) {
    ctx.stderr.write(
      `longreward: no pairs: ${failures.length ? `the judge's replies did not parse for ${failures.length} responses` : 'no prompt had enough scored responses'}\n`,
    );
    return 1;
  }
  return 0;
};
