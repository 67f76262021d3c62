/**
 * The serving scheduler: holds the requests (jobs) and their choices (rows), runs them through an
 * {@link Engine} (lib/serve/engines.ts) one round at a time, and turns the tokens that come back
 * into text: stop strings, the length limit, and streaming updates that never show a partial stop
 * string or half a character. Only this loop calls the model (the model refuses concurrent calls),
 * and between rounds new requests and disconnects get in:
 *
 * - on a model of one rank (CPU or CUDA) the rounds are the steps of one GenerationSession, so concurrent
 *   requests are decoded together, a cancelled request (client gone) frees its KV blocks before the
 *   next step, and a seeded request gives the same tokens alone or among others;
 * - other models run chunks of `chunkTokens` tokens through `Model.generate` (see engines.ts).
 */
import type { GenerationSessionStats } from '../engine/generation-session.js';
import { kvBlocksPerSequence } from '../engine/kv-memory.js';
import type { Model } from '../engine/model.js';
import { decodeResponse } from '../rollout/generate.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { ChunkedEngine, SessionEngine, type Engine, type EngineSink } from './engines.js';
import { ErrorCode, RlhfError } from '../errors.js';

export interface SamplingParams {
  /** most generated tokens (the end-of-turn token included) */
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  /** 0 ≤ seed < 2^53 */
  seed: number;
  /** generation stops before the first occurrence of any of these (non-empty) strings */
  stop: string[];
  /** keep the log-prob of every token */
  logprobs: boolean;
}

/** One generated token: its id, its text alone, and log π(token) at temperature 1. */
export interface TokenLogprob {
  id: number;
  text: string;
  logprob: number;
}

/** What a choice produced since its previous update. `finishReason` is set on its last update. */
export interface ChoiceUpdate {
  index: number;
  text: string;
  tokens: TokenLogprob[];
  finishReason?: 'stop' | 'length';
}

export interface ChoiceResult {
  index: number;
  text: string;
  tokens: TokenLogprob[];
  finishReason: 'stop' | 'length' | 'cancelled';
  /** tokens the model generated for this choice (the stop token included, tokens cut by a stop string excluded) */
  completionTokens: number;
}

export interface SchedulerOptions {
  /** most rows decoded together (default 32): the session's maxRunning, or rows per generate call */
  maxBatchRows?: number;
  /** KV cache of the session in bytes (default 1 GiB); a request whose sequences cannot fit is refused (Scheduler.fits) */
  kvBytes?: number;
  /** token positions per KV block (default 16) */
  blockSize?: number;
  /** the KV cache's dtype (default 'f32'; 'bf16': half the bytes per block, GenerationSessionOptions.kvDtype) */
  kvDtype?: 'f32' | 'bf16';
  /** rows computed per session step: decode rows plus prefill tokens (default 512) */
  tokenBudget?: number;
  /** only for models the session refuses (tensor-parallel): tokens per generate call (default 16) */
  chunkTokens?: number;
  /** most requests waiting or running (default 64); submit() refuses beyond it */
  maxRequests?: number;
}

/** Counters for monitoring and tests. */
export interface SchedulerStats {
  submitted: number;
  completed: number;
  cancelled: number;
  /** model calls: session steps or generate chunks */
  batches: number;
  /** most rows decoded in one model call */
  maxRowsInBatch: number;
  /** tokens returned by the model (kept or not) */
  generatedTokens: number;
}

/** One choice of a request. */
export class Row {
  readonly generated: number[] = [];
  readonly logprobs: number[] = [];
  /** decoded length of generated[0..k) for every k (only with logprobs) */
  readonly prefixLength: number[] = [0];
  emittedChars = 0;
  emittedTokens = 0;
  modelTokens = 0;
  text = '';
  finish?: 'stop' | 'length';
  constructor(
    readonly job: Job,
    readonly index: number,
  ) {}
  get remaining(): number {
    return this.job.params.maxTokens - this.modelTokens;
  }
}

/** One request: a prompt, its sampling parameters and its n rows. */
export class Job {
  readonly rows: Row[];
  cancelled = false;
  constructor(
    readonly promptIds: Int32Array,
    readonly params: SamplingParams,
    n: number,
    readonly onUpdate: (u: ChoiceUpdate) => void,
    readonly resolve: (r: ChoiceResult[]) => void,
    readonly reject: (e: unknown) => void,
  ) {
    this.rows = Array.from({ length: n }, (_, i) => new Row(this, i));
  }
}

/** A request the scheduler refused because its queue is full. */
export class QueueFullError extends Error {}

export class Scheduler {
  readonly stats: SchedulerStats = {
    submitted: 0,
    completed: 0,
    cancelled: 0,
    batches: 0,
    maxRowsInBatch: 0,
    generatedTokens: 0,
  };
  readonly maxRequests: number;
  /** 'session' (continuous batching on a paged KV cache) or 'chunked' (generate calls) */
  readonly mode: 'session' | 'chunked';
  private readonly engine: Engine;
  /** KV blocks of the session's pool and positions per block (session mode) */
  private readonly pool: { blocks: number; blockSize: number };
  private readonly sink: EngineSink;
  private readonly jobs: Job[] = [];
  private running = false;
  private closed = false;
  private idle: Promise<void> = Promise.resolve();

  constructor(
    model: Model,
    private readonly tokenizer: Tokenizer,
    o: SchedulerOptions = {},
  ) {
    this.maxRequests = o.maxRequests ?? 64;
    const maxBatchRows = o.maxBatchRows ?? 32;
    const c = model.config;
    const blockSize = o.blockSize ?? 16;
    const kvDtype = o.kvDtype ?? 'f32';
    const blockBytes = 2 * c.layers * blockSize * c.kvHeads * c.headDim * (kvDtype === 'bf16' ? 2 : 4);
    const numBlocks = Math.max(1, Math.floor((o.kvBytes ?? 2 ** 30) / blockBytes));
    this.pool = { blocks: numBlocks, blockSize };
    let engine: Engine;
    try {
      engine = new SessionEngine(model, tokenizer.stopIds, this.stats, {
        numBlocks,
        blockSize,
        kvDtype,
        tokenBudget: o.tokenBudget ?? 512,
        maxRunning: maxBatchRows,
      });
      this.mode = 'session';
    } catch (err) {
      if (!(err instanceof RlhfError && err.code === ErrorCode.UNSUPPORTED)) throw err;
      engine = new ChunkedEngine(model, tokenizer.stopIds, this.stats, o.chunkTokens ?? 16, maxBatchRows);
      this.mode = 'chunked';
    }
    this.engine = engine;
    this.sink = {
      deliver: (row, tokens, logprobs, reason) => {
        this.advance(row, tokens, logprobs, reason);
        if (row.finish && !reason) this.engine.drop(row); // cut by a stop string or the length limit
      },
      fail: (row, err) => this.fail(row.job, err),
    };
  }

  /** The session's KV pool counters (undefined in 'chunked' mode). */
  get kvStats(): GenerationSessionStats | undefined {
    return this.engine instanceof SessionEngine ? this.engine.session.stats : undefined;
  }

  /** Whether one sequence of this prompt length and max tokens fits the KV pool (always in 'chunked' mode). */
  fits(promptLen: number, maxTokens: number): boolean {
    if (this.mode === 'chunked') return true;
    return kvBlocksPerSequence(promptLen, maxTokens, this.pool.blockSize) <= this.pool.blocks;
  }

  /** Requests waiting or running. */
  get pending(): number {
    return this.jobs.length;
  }

  /**
   * Queues `n` choices for one prompt. `onUpdate` receives text as it is produced (streaming).
   * Resolves with every choice when all have finished, or with finishReason 'cancelled' after
   * `cancel()`. Throws QueueFullError when `maxRequests` are already pending.
   */
  submit(
    promptIds: Int32Array,
    n: number,
    params: SamplingParams,
    onUpdate: (u: ChoiceUpdate) => void = () => {},
  ): { done: Promise<ChoiceResult[]>; cancel: () => void } {
    if (this.closed) throw new Error('Scheduler: closed');
    if (this.jobs.length >= this.maxRequests)
      throw new QueueFullError(`the queue is full (${this.maxRequests} requests pending)`);
    let job!: Job;
    const done = new Promise<ChoiceResult[]>((resolve, reject) => {
      job = new Job(promptIds, params, n, onUpdate, resolve, reject);
    });
    this.jobs.push(job);
    this.stats.submitted++;
    this.kick();
    return {
      done,
      cancel: () => {
        if (this.jobs.includes(job) && !job.cancelled) job.cancelled = true;
        this.kick();
      },
    };
  }

  /** Stops taking requests; resolves when the loop is idle. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.jobs) job.cancelled = true;
    this.kick();
    await this.idle;
    this.engine.close();
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    this.idle = this.loop();
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.settle();
      const rows = this.jobs.flatMap((j) => j.rows.filter((r) => !r.finish));
      if (rows.length === 0) {
        // cleared here, not in a .finally(): a request submitted by code that ran when its
        // predecessor resolved (in settle above) must start a new loop
        this.running = false;
        return;
      }
      try {
        await this.engine.step(rows, this.sink);
      } catch (err) {
        for (const job of new Set(rows.map((r) => r.job))) this.fail(job, err);
      }
      await new Promise((r) => setImmediate(r)); // let new requests and disconnects in
    }
  }

  /** Rejects a job with `err` and frees its rows. */
  private fail(job: Job, err: unknown): void {
    const i = this.jobs.indexOf(job);
    if (i < 0) return;
    this.jobs.splice(i, 1);
    for (const r of job.rows) this.engine.drop(r);
    job.reject(err);
  }

  /** Resolves finished and cancelled jobs and drops them from the queue. */
  private settle(): void {
    for (let i = this.jobs.length - 1; i >= 0; i--) {
      const job = this.jobs[i];
      if (!job.cancelled && !job.rows.every((r) => r.finish)) continue;
      this.jobs.splice(i, 1);
      for (const r of job.rows) this.engine.drop(r);
      if (job.cancelled) this.stats.cancelled++;
      else this.stats.completed++;
      job.resolve(
        job.rows.map((r) => ({
          index: r.index,
          text: r.text,
          tokens: r.generated.map((id, k) => ({ id, text: this.tokenText(id), logprob: r.logprobs[k] })),
          finishReason: job.cancelled ? 'cancelled' : r.finish!,
          completionTokens: r.modelTokens,
        })),
      );
    }
  }

  /**
   * Appends tokens to a row, applies the length and stop-string limits, emits an update. `reason`:
   * the engine ended the row ('stop': on its last token, a stop token), else more may come.
   */
  private advance(row: Row, tokens: Int32Array, logprobs: Float32Array, reason?: 'stop' | 'length'): void {
    if (row.job.cancelled) return;
    const { params } = row.job;
    const take = Math.min(tokens.length, row.remaining);
    const stopped = reason === 'stop' && take === tokens.length;
    const content = stopped ? take - 1 : take; // the stop token is not part of the text
    for (let k = 0; k < content; k++) {
      row.generated.push(tokens[k]);
      row.logprobs.push(logprobs[k]);
      if (params.logprobs) row.prefixLength.push(this.decode(row.generated).length);
    }
    row.modelTokens += take;
    if (stopped) row.finish = 'stop';
    else if (row.remaining <= 0 || reason === 'length') row.finish = 'length';
    row.text = this.decode(row.generated);

    const cut = firstStop(row.text, params.stop);
    if (cut >= 0) {
      row.text = row.text.slice(0, cut);
      row.finish = 'stop';
      // keep the tokens up to the one the stop string starts in
      let keep = 0;
      while (keep < row.generated.length && this.decode(row.generated.slice(0, keep)).length < cut) keep++;
      row.modelTokens -= row.generated.length - keep;
      row.generated.length = keep;
      row.logprobs.length = keep;
      row.prefixLength.length = Math.min(row.prefixLength.length, keep + 1);
    }

    // text that can still turn out to start a stop string, or end in half a character, waits
    let safe = row.text.length;
    if (!row.finish) {
      const hold = Math.max(0, ...params.stop.map((s) => s.length - 1));
      safe = Math.max(row.emittedChars, row.text.length - hold);
      while (safe > row.emittedChars && row.text.charCodeAt(safe - 1) === 0xfffd) safe--;
    }
    let tokensTo = row.emittedTokens;
    if (params.logprobs) {
      if (row.finish) tokensTo = row.generated.length;
      else while (tokensTo < row.generated.length && row.prefixLength[tokensTo + 1] <= safe) tokensTo++;
    }
    const update: ChoiceUpdate = {
      index: row.index,
      text: row.text.slice(row.emittedChars, safe),
      tokens: row.generated
        .slice(row.emittedTokens, tokensTo)
        .map((id, k) => ({ id, text: this.tokenText(id), logprob: row.logprobs[row.emittedTokens + k] })),
      ...(row.finish ? { finishReason: row.finish } : {}),
    };
    row.emittedChars = safe;
    row.emittedTokens = tokensTo;
    if (update.text || update.tokens.length || update.finishReason) row.job.onUpdate(update);
  }

  private decode(ids: number[]): string {
    return decodeResponse(this.tokenizer, Int32Array.from(ids));
  }

  private tokenText(id: number): string {
    return id < this.tokenizer.vocabSize ? this.tokenizer.decode([id]) : '';
  }
}

/** Index of the earliest occurrence of any stop string in `text`, or −1. */
export function firstStop(text: string, stop: readonly string[]): number {
  let best = -1;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}
