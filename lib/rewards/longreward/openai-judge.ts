/**
 * The LongReward judge and embedding model over any OpenAI-compatible HTTP endpoint
 * (`POST {baseURL}/chat/completions`, `POST {baseURL}/embeddings`): a concurrency limit, retries
 * with exponential backoff on 429, 5xx, timeouts and network errors (Retry-After honoured), and an
 * optional on-disk response cache so that an interrupted run resumes without paying twice.
 *
 * Cache: one JSON file per request, `<cacheDir>/<h[0..2]>/<h>.json`, written atomically, where h =
 * sha256(endpoint path, request body, k) and k counts earlier identical requests in this process.
 * The k-th identical request (a judge retry at temperature 0.95 re-sends the same body) therefore
 * gets a reply of its own, and a resumed run that repeats the same calls replays the same replies.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../io/atomic.js';
import { ErrorCode, RlhfError } from '../../errors.js';
import { checkString, options, show } from '../../validate.js';
import { Limiter } from './judge.js';
import type { EmbeddingModel, JudgeCallOptions, JudgeModel } from './types.js';

export interface OpenAIClientOptions {
  /** e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1 */
  baseURL: string;
  /** the model name sent with every request */
  model: string;
  /** bearer token (default: the environment variable named by apiKeyEnv, if set) */
  apiKey?: string;
  /** default OPENAI_API_KEY */
  apiKeyEnv?: string;
  /** requests in flight at once (default 4) */
  maxConcurrent?: number;
  /** retries after the first attempt on 429, 5xx, timeouts and network errors (default 5) */
  maxRetries?: number;
  /** per-attempt timeout in ms (default 120000) */
  timeoutMs?: number;
  /** first backoff in ms, doubled per retry, capped at 30 s (default 500) */
  backoffMs?: number;
  /** cache replies here (default: no cache) */
  cacheDir?: string;
  /** judge only: cap on max_tokens (the pipeline's hint is used up to this; default no cap) */
  maxTokens?: number;
}

/** Counters for monitoring and tests. */
export interface OpenAIClientStats {
  /** HTTP requests sent (retries included) */
  requests: number;
  retries: number;
  cacheHits: number;
  /** calls answered (from the server or the cache) */
  answered: number;
}

const FN = 'OpenAIClient';

class HttpError extends RlhfError {
  constructor(
    message: string,
    readonly status: number,
    readonly retryAfterMs?: number,
  ) {
    super(ErrorCode.IO, message);
  }
}

/** The transport shared by the judge and the embedder. */
class OpenAIClient {
  readonly stats: OpenAIClientStats = { requests: 0, retries: 0, cacheHits: 0, answered: 0 };
  readonly model: string;
  private readonly baseURL: string;
  private readonly apiKey?: string;
  private readonly limiter: Limiter;
  private readonly maxRetries: number;
  private readonly timeoutMs: number;
  private readonly backoffMs: number;
  private readonly cacheDir?: string;
  private readonly seen = new Map<string, number>();

  constructor(fn: string, opts: OpenAIClientOptions, extraKeys: string[] = []) {
    const o = options(fn, 'options', opts);
    o.known([
      'baseURL',
      'model',
      'apiKey',
      'apiKeyEnv',
      'maxConcurrent',
      'maxRetries',
      'timeoutMs',
      'backoffMs',
      'cacheDir',
      ...extraKeys,
    ]);
    const base = checkString(fn, 'options.baseURL', opts.baseURL);
    if (!/^https?:\/\//.test(base))
      throw new TypeError(`${fn}: expected options.baseURL to be an http(s) URL, received ${show(base)}`);
    this.baseURL = base.replace(/\/+$/, '');
    this.model = checkString(fn, 'options.model', opts.model);
    const env = opts.apiKeyEnv ?? 'OPENAI_API_KEY';
    this.apiKey = opts.apiKey ?? (process.env[env] || undefined);
    this.limiter = new Limiter(o.int('maxConcurrent', { min: 1 }, 4));
    this.maxRetries = o.int('maxRetries', { min: 0 }, 5);
    this.timeoutMs = o.int('timeoutMs', { min: 1 }, 120_000);
    this.backoffMs = o.int('backoffMs', { min: 0 }, 500);
    if (opts.cacheDir !== undefined) this.cacheDir = checkString(fn, 'options.cacheDir', opts.cacheDir);
  }

  /** POSTs `body` to `path` (cached, limited, retried) and returns the parsed JSON reply. */
  async post(path: string, body: Record<string, unknown>): Promise<unknown> {
    const request = JSON.stringify(body);
    const base = createHash('sha256').update(`${path}\n${request}`).digest('hex');
    const k = this.seen.get(base) ?? 0;
    this.seen.set(base, k + 1);
    const key = createHash('sha256').update(`${base}:${k}`).digest('hex');
    const file = this.cacheDir ? join(this.cacheDir, key.slice(0, 2), `${key}.json`) : undefined;
    if (file) {
      const hit = await readCached(file);
      if (hit !== undefined) {
        this.stats.cacheHits++;
        this.stats.answered++;
        return hit;
      }
    }
    const reply = await this.limiter.run(() => this.send(path, request));
    if (file) {
      await mkdir(join(this.cacheDir!, key.slice(0, 2)), { recursive: true });
      await writeFileAtomic(file, JSON.stringify({ path, request: body, reply }));
    }
    this.stats.answered++;
    return reply;
  }

  private async send(path: string, body: string): Promise<unknown> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(path, body);
      } catch (err) {
        const status = err instanceof HttpError ? err.status : 0; // 0: network error or timeout
        const retryable = status === 0 || status === 429 || status >= 500;
        if (!retryable || attempt >= this.maxRetries) {
          if (attempt > 0 && err instanceof Error) err.message += ` (after ${attempt + 1} attempts)`;
          throw err;
        }
        this.stats.retries++;
        const wait =
          err instanceof HttpError && err.retryAfterMs !== undefined ? err.retryAfterMs : this.backoffMs * 2 ** attempt;
        await new Promise((r) => setTimeout(r, Math.min(wait, 30_000)));
      }
    }
  }

  private async once(path: string, body: string): Promise<unknown> {
    this.stats.requests++;
    const url = `${this.baseURL}${path}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}),
        },
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const why =
        (err as Error)?.name === 'TimeoutError'
          ? `no answer in ${this.timeoutMs} ms`
          : ((err as Error & { cause?: Error })?.cause?.message ?? (err as Error)?.message);
      throw new RlhfError(ErrorCode.IO, `${FN}: POST ${url}: ${why}`, { cause: err });
    }
    const text = await res.text().catch(() => '');
    if (!res.ok) {
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? message;
      } catch {
        /* not JSON: keep the text */
      }
      const ra = Number(res.headers.get('retry-after'));
      throw new HttpError(
        `${FN}: POST ${url}: HTTP ${res.status}: ${message}`,
        res.status,
        Number.isFinite(ra) && ra >= 0 && res.headers.has('retry-after') ? ra * 1000 : undefined,
      );
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new RlhfError(ErrorCode.FORMAT, `${FN}: POST ${url}: the reply is not JSON: ${show(text.slice(0, 100))}`);
    }
  }
}

async function readCached(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    return (JSON.parse(text) as { reply: unknown }).reply;
  } catch {
    return undefined; // a damaged entry is asked again and overwritten
  }
}

/** A {@link JudgeModel} over `POST /chat/completions`: the prompt is one user message. */
export class OpenAIJudge implements JudgeModel {
  private readonly client: OpenAIClient;
  private readonly maxTokens?: number;

  constructor(opts: OpenAIClientOptions) {
    this.client = new OpenAIClient('OpenAIJudge', opts, ['maxTokens']);
    this.maxTokens = options('OpenAIJudge', 'options', opts).int('maxTokens', { min: 1 }, 0) || undefined;
  }

  get stats(): OpenAIClientStats {
    return this.client.stats;
  }

  async complete(prompt: string, o: JudgeCallOptions): Promise<string> {
    const hint = o.maxTokens ?? this.maxTokens;
    const maxTokens = hint === undefined ? undefined : Math.min(hint, this.maxTokens ?? hint);
    const body = {
      model: this.client.model,
      messages: [{ role: 'user', content: prompt }],
      temperature: o.temperature,
      ...(maxTokens ? { max_tokens: maxTokens } : {}),
    };
    const reply = (await this.client.post('/chat/completions', body)) as {
      choices?: Array<{ message?: { content?: unknown } }>;
    };
    const content = reply?.choices?.[0]?.message?.content;
    if (typeof content !== 'string')
      throw new RlhfError(
        ErrorCode.FORMAT,
        `OpenAIJudge: the reply has no choices[0].message.content string: ${show(reply)}`,
      );
    return content;
  }
}

/** An {@link EmbeddingModel} over `POST /embeddings`, `batchSize` texts per request (default 64). */
export class OpenAIEmbedder implements EmbeddingModel {
  private readonly client: OpenAIClient;
  private readonly batchSize: number;

  constructor(opts: OpenAIClientOptions & { batchSize?: number }) {
    this.client = new OpenAIClient('OpenAIEmbedder', opts, ['batchSize']);
    this.batchSize = options('OpenAIEmbedder', 'options', opts).int('batchSize', { min: 1 }, 64);
  }

  get stats(): OpenAIClientStats {
    return this.client.stats;
  }

  async embed(texts: string[]): Promise<number[][]> {
    const batches: string[][] = [];
    for (let i = 0; i < texts.length; i += this.batchSize) batches.push(texts.slice(i, i + this.batchSize));
    const out = await Promise.all(
      batches.map(async (input) => {
        const reply = (await this.client.post('/embeddings', { model: this.client.model, input })) as {
          data?: Array<{ index?: number; embedding?: unknown }>;
        };
        const data = reply?.data;
        if (!Array.isArray(data) || data.length !== input.length)
          throw new RlhfError(
            ErrorCode.FORMAT,
            `OpenAIEmbedder: expected ${input.length} embeddings, the reply has ${Array.isArray(data) ? data.length : 'none'}`,
          );
        const sorted = [...data].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
        return sorted.map((d, i) => {
          if (!Array.isArray(d.embedding))
            throw new RlhfError(ErrorCode.FORMAT, `OpenAIEmbedder: data[${i}].embedding is not an array`);
          return d.embedding as number[];
        });
      }),
    );
    return out.flat();
  }
}

/**
 * A local lexical embedding for retrieval without an embedding endpoint: hashed word and
 * character-trigram counts in `dim` buckets, L2-normalised (cosine similarity = term overlap).
 */
export class LexicalEmbedder implements EmbeddingModel {
  constructor(readonly dim = 1024) {}

  async embed(texts: string[]): Promise<number[][]> {
    return texts.map((text) => {
      const v = new Array<number>(this.dim).fill(0);
      const lower = text.toLowerCase();
      const words = lower.match(/[\p{L}\p{N}]+/gu) ?? [];
      const terms = [
        ...words,
        ...words.flatMap((w) => Array.from({ length: Math.max(0, w.length - 2) }, (_, i) => `#${w.slice(i, i + 3)}`)),
      ];
      if (terms.length === 0) terms.push('');
      for (const term of terms) v[createHash('md5').update(term).digest().readUInt32LE(0) % this.dim] += 1;
      const norm = Math.hypot(...v) || 1;
      return v.map((x) => x / norm);
    });
  }
}
