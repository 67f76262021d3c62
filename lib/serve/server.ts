/**
 * An OpenAI-compatible HTTP server for one model: GET /v1/models, POST /v1/chat/completions and
 * POST /v1/completions (JSON or server-sent events), GET /health. Loopback by default; with an API
 * key every /v1 route needs `Authorization: Bearer <key>`. Requests go to a {@link Scheduler} that
 * decodes them together in the steps of one GenerationSession (continuous batching; generate
 * chunks for models the session refuses); a client that disconnects cancels its request.
 */
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Model } from '../engine/model.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { ApiError, badRequest, parseChatRequest, parseCompletionRequest, type CommonFields } from './requests.js';
import {
  QueueFullError,
  Scheduler,
  type ChoiceResult,
  type ChoiceUpdate,
  type SchedulerOptions,
  type SchedulerStats,
  type TokenLogprob,
} from './scheduler.js';

export interface ServeOptions extends SchedulerOptions {
  model: Model;
  tokenizer: Tokenizer;
  /** the name clients put in `model` (default "rlhf") */
  modelName?: string;
  /** default 127.0.0.1 */
  host?: string;
  /** default 8000; 0 picks a free port */
  port?: number;
  /** when set, /v1 routes need `Authorization: Bearer <apiKey>` */
  apiKey?: string;
  /** largest request body (default 1 MiB); larger is a 413 */
  maxBodyBytes?: number;
  /** max_tokens of a chat request that gives none (default 256; /v1/completions defaults to 16 as OpenAI does) */
  defaultMaxTokens?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  stats: SchedulerStats;
  server: Server;
  close(): Promise<void>;
}

type Kind = 'chat' | 'completion';

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const { model, tokenizer } = o;
  const modelName = o.modelName ?? 'rlhf';
  const maxBody = o.maxBodyBytes ?? 1 << 20;
  const defaultMaxTokens = o.defaultMaxTokens ?? 256;
  const context = model.config.maxPositions;
  const scheduler = new Scheduler(model, tokenizer, o);
  const keyHash = o.apiKey ? createHash('sha256').update(o.apiKey).digest() : undefined;
  const created = Math.floor(Date.now() / 1000);

  const authorized = (req: IncomingMessage) => {
    if (!keyHash) return true;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    return !!m && timingSafeEqual(createHash('sha256').update(m[1]).digest(), keyHash);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/health' && req.method === 'GET') return json(res, 200, { status: 'ok', pending: scheduler.pending });
    if (!path.startsWith('/v1/'))
      throw new ApiError(404, `Unknown path ${path}`, 'invalid_request_error', null, 'unknown_url');
    if (!authorized(req))
      throw new ApiError(
        401,
        'Incorrect API key provided (send Authorization: Bearer <key>)',
        'invalid_request_error',
        null,
        'invalid_api_key',
      );
    const routes: Record<string, string> = {
      '/v1/models': 'GET',
      [`/v1/models/${modelName}`]: 'GET',
      '/v1/chat/completions': 'POST',
      '/v1/completions': 'POST',
    };
    if (!routes[path]) {
      if (path.startsWith('/v1/models/'))
        throw new ApiError(
          404,
          `The model \`${decodeURIComponent(path.slice(11))}\` does not exist`,
          'invalid_request_error',
          'model',
          'model_not_found',
        );
      throw new ApiError(404, `Unknown path ${path}`, 'invalid_request_error', null, 'unknown_url');
    }
    if (req.method !== routes[path])
      throw new ApiError(
        405,
        `${path} takes ${routes[path]}, not ${req.method}`,
        'invalid_request_error',
        null,
        'method_not_allowed',
      );
    const card = { id: modelName, object: 'model', created, owned_by: 'rlhf' };
    if (path === '/v1/models') return json(res, 200, { object: 'list', data: [card] });
    if (path.startsWith('/v1/models/')) return json(res, 200, card);
    const body = await readJson(req, maxBody);
    const kind: Kind = path === '/v1/chat/completions' ? 'chat' : 'completion';
    await complete(kind, body, res);
  };

  /** Encodes the prompts, queues them, and answers as JSON or as an event stream. */
  const complete = async (kind: Kind, body: unknown, res: ServerResponse) => {
    let request: CommonFields & { logprobs: boolean };
    let prompts: Int32Array[];
    if (kind === 'chat') {
      const r = parseChatRequest(body, [modelName]);
      request = r;
      prompts = [Int32Array.from(tokenizer.encodePrompt(r.messages))];
    } else {
      const r = parseCompletionRequest(body, [modelName], tokenizer.vocabSize);
      request = r;
      prompts = r.prompts.map((p) =>
        Int32Array.from(typeof p === 'string' ? tokenizer.encode(p, { addSpecialTokens: true }) : p),
      );
    }
    const param = kind === 'chat' ? 'messages' : 'prompt';
    const longest = Math.max(...prompts.map((p) => p.length));
    if (prompts.some((p) => p.length === 0)) throw badRequest(param, `${param}: encodes to no tokens`);
    if (longest >= context)
      throw badRequest(
        param,
        `This model's maximum context length is ${context} tokens, but the prompt has ${longest}`,
        'context_length_exceeded',
      );
    const maxTokens = request.maxTokens ?? Math.min(kind === 'chat' ? defaultMaxTokens : 16, context - longest);
    if (longest + maxTokens > context)
      throw badRequest(
        'max_tokens',
        `This model's maximum context length is ${context} tokens; the prompt has ${longest} and max_tokens is ${maxTokens}`,
        'context_length_exceeded',
      );
    const tooLong = prompts.find((p) => !scheduler.fits(p.length, maxTokens));
    if (tooLong)
      throw badRequest(
        'max_tokens',
        `A prompt of ${tooLong.length} tokens with max_tokens ${maxTokens} needs more KV cache than this server has (its --kv-mib); lower max_tokens or shorten the prompt`,
        'context_length_exceeded',
      );
    const seed = request.seed ?? randomInt(2 ** 47);
    const params = {
      maxTokens,
      temperature: request.temperature,
      topP: request.topP,
      topK: request.topK,
      seed,
      stop: request.stop,
      logprobs: request.logprobs,
    };

    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
    const stamp = Math.floor(Date.now() / 1000);
    const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
    const n = request.n;
    const stream = request.stream ? new EventStream(res, kind, id, stamp, modelName) : undefined;
    const jobs: Array<{ done: Promise<ChoiceResult[]>; cancel: () => void }> = [];
    try {
      prompts.forEach((ids, p) =>
        jobs.push(scheduler.submit(ids, n, params, stream ? (u) => stream.update(u, p * n) : undefined)),
      );
    } catch (err) {
      jobs.forEach((j) => j.cancel());
      if (err instanceof QueueFullError)
        throw new ApiError(
          429,
          `The server is busy: ${err.message}; retry later`,
          'rate_limit_error',
          null,
          'queue_full',
        );
      throw err;
    }
    res.on('close', () => {
      if (!res.writableFinished) jobs.forEach((j) => j.cancel());
    });
    let results: ChoiceResult[][];
    try {
      results = await Promise.all(jobs.map((j) => j.done));
    } catch (err) {
      jobs.forEach((j) => j.cancel());
      if (!stream) throw err;
      stream.error(err);
      return;
    }
    const choices = results.flatMap((rs, p) => rs.map((r) => ({ ...r, index: p * n + r.index })));
    const promptTokens = prompts.reduce((a, p) => a + p.length, 0);
    const completionTokens = choices.reduce((a, c) => a + c.completionTokens, 0);
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    };
    if (choices.some((c) => c.finishReason === 'cancelled')) return void res.destroy();
    if (stream) return stream.finish(request.includeUsage ? usage : undefined);
    json(res, 200, {
      id,
      object,
      created: stamp,
      model: modelName,
      choices: choices.map((c) =>
        kind === 'chat'
          ? {
              index: c.index,
              message: { role: 'assistant', content: c.text },
              logprobs: request.logprobs ? chatLogprobs(c.tokens) : null,
              finish_reason: c.finishReason,
            }
          : {
              index: c.index,
              text: c.text,
              logprobs: request.logprobs ? completionLogprobs(c.tokens) : null,
              finish_reason: c.finishReason,
            },
      ),
      usage,
    });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof ApiError)
        return json(res, err.status, {
          error: { message: err.message, type: err.type, param: err.param, code: err.code },
        });
      json(res, 500, {
        error: {
          message: `internal error: ${(err as Error)?.message ?? String(err)}`,
          type: 'server_error',
          param: null,
          code: (err as { code?: string })?.code ?? null,
        },
      });
    });
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = 60_000; // receiving the request; the response (a long generation) is not limited
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8000, o.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}/v1`,
    port,
    stats: scheduler.stats,
    server,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await scheduler.close();
      await closed;
    },
  };
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** The request body as JSON, at most `limit` bytes (413 beyond, 400 when not JSON). */
async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit)
    throw new ApiError(
      413,
      `the request body is larger than ${limit} bytes`,
      'invalid_request_error',
      null,
      'body_too_large',
    );
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit)
      throw new ApiError(
        413,
        `the request body is larger than ${limit} bytes`,
        'invalid_request_error',
        null,
        'body_too_large',
      );
    parts.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch (err) {
    throw badRequest('', `the request body is not valid JSON (${(err as Error).message})`);
  }
}

function tokenBytes(t: TokenLogprob): number[] {
  return [...Buffer.from(t.text, 'utf8')];
}

function chatLogprobs(tokens: TokenLogprob[]) {
  return {
    content: tokens.map((t) => ({ token: t.text, logprob: t.logprob, bytes: tokenBytes(t), top_logprobs: [] })),
    refusal: null,
  };
}

function completionLogprobs(tokens: TokenLogprob[], offset0 = 0) {
  const text_offset: number[] = [];
  let at = offset0;
  for (const t of tokens) {
    text_offset.push(at);
    at += t.text.length;
  }
  return {
    tokens: tokens.map((t) => t.text),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: null,
    text_offset,
  };
}

/** Server-sent events in OpenAI's chunk format; `data: [DONE]` ends the stream. */
class EventStream {
  private readonly started = new Set<number>();
  /** per choice: characters of token text sent so far (text_offset of the next token) */
  private readonly offsets = new Map<number, number>();
  constructor(
    private readonly res: ServerResponse,
    private readonly kind: Kind,
    private readonly id: string,
    private readonly created: number,
    private readonly model: string,
  ) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  }

  private send(value: unknown): void {
    if (!this.res.writableEnded && !this.res.destroyed) this.res.write(`data: ${JSON.stringify(value)}\n\n`);
  }

  private chunk(choices: unknown[], extra: Record<string, unknown> = {}) {
    return {
      id: this.id,
      object: this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      created: this.created,
      model: this.model,
      choices,
      ...extra,
    };
  }

  update(u: ChoiceUpdate, indexBase: number): void {
    const index = indexBase + u.index;
    const finish = u.finishReason ?? null;
    if (this.kind === 'completion') {
      const offset = this.offsets.get(index) ?? 0;
      this.offsets.set(index, offset + u.tokens.reduce((a, t) => a + t.text.length, 0));
      this.send(
        this.chunk([
          {
            index,
            text: u.text,
            logprobs: u.tokens.length ? completionLogprobs(u.tokens, offset) : null,
            finish_reason: finish,
          },
        ]),
      );
      return;
    }
    const delta: Record<string, string> = {};
    if (!this.started.has(index)) {
      this.started.add(index);
      delta.role = 'assistant';
    }
    if (u.text || delta.role) delta.content = u.text;
    this.send(
      this.chunk([{ index, delta, logprobs: u.tokens.length ? chatLogprobs(u.tokens) : null, finish_reason: finish }]),
    );
  }

  finish(usage?: object): void {
    if (usage) this.send(this.chunk([], { usage }));
    if (!this.res.writableEnded) this.res.end('data: [DONE]\n\n');
  }

  error(err: unknown): void {
    this.send({
      error: {
        message: `internal error: ${(err as Error)?.message ?? String(err)}`,
        type: 'server_error',
        param: null,
        code: null,
      },
    });
    if (!this.res.writableEnded) this.res.end();
  }
}
