/**
 * The serving scheduler: gathers the rows of concurrent requests into batched `Model.generate`
 * calls, a chunk of tokens at a time, so that
 *
 * - requests that arrive while others run join the next chunk (one model call at a time: the model
 *   refuses concurrent calls, so only this loop ever calls it);
 * - a cancelled request (client gone) stops at the next chunk boundary;
 * - streaming clients get text after every chunk.
 *
 * Rows with equal (temperature, topP, topK) share a call. Each chunk re-feeds the row's prompt and
 * the tokens generated so far (no KV cache survives between calls; correctness first).
 *
 * Reproducibility: chunk c of choice j of a request with seed s samples from Philox stream
 * hash(s, j, c) of seed 0, and a row samples the same whatever batch it is in (Model.generate's
 * `streams` contract), so a seeded request gives the same tokens alone or among others, as long as
 * the server's chunk size is the same.
 */
import { createHash } from 'node:crypto';
import type { Model } from '../engine/model.js';
import { decodeResponse } from '../rollout/generate.js';
import type { Tokenizer } from '../tokenizer/index.js';

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
  /** tokens per model call (default 16) */
  chunkTokens?: number;
  /** most rows in one model call (default 32) */
  maxBatchRows?: number;
  /** most requests waiting or running (default 64); submit() refuses beyond it */
  maxRequests?: number;
}

/** Counters for monitoring and tests. */
export interface SchedulerStats {
  submitted: number;
  completed: number;
  cancelled: number;
  /** model calls */
  batches: number;
  /** most rows seen in one model call */
  maxRowsInBatch: number;
  /** tokens returned by the model (kept or not) */
  generatedTokens: number;
}

class Row {
  readonly generated: number[] = [];
  readonly logprobs: number[] = [];
  /** decoded length of generated[0..k) for every k (only with logprobs) */
  readonly prefixLength: number[] = [0];
  chunk = 0;
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

class Job {
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

/** A 53-bit Philox stream id for (seed, choice, chunk). */
export function streamId(seed: number, choice: number, chunk: number): number {
  const h = createHash('sha256').update(`${seed}:${choice}:${chunk}`).digest();
  return h.readUIntBE(0, 6) * 32 + (h[6] >> 3);
}

export class Scheduler {
  readonly stats: SchedulerStats = {
    submitted: 0,
    completed: 0,
    cancelled: 0,
    batches: 0,
    maxRowsInBatch: 0,
    generatedTokens: 0,
  };
  readonly chunkTokens: number;
  readonly maxBatchRows: number;
  readonly maxRequests: number;
  private readonly jobs: Job[] = [];
  private running = false;
  private closed = false;
  private idle: Promise<void> = Promise.resolve();

  constructor(
    private readonly model: Model,
    private readonly tokenizer: Tokenizer,
    o: SchedulerOptions = {},
  ) {
    this.chunkTokens = o.chunkTokens ?? 16;
    this.maxBatchRows = o.maxBatchRows ?? 32;
    this.maxRequests = o.maxRequests ?? 64;
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
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    this.idle = this.loop().finally(() => {
      this.running = false;
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.settle();
      const rows = this.jobs.flatMap((j) => j.rows.filter((r) => !r.finish));
      if (rows.length === 0) return;
      // the rows of the oldest request's sampling settings, up to maxBatchRows
      const p0 = rows[0].job.params;
      const same = rows
        .filter(
          (r) =>
            r.job.params.temperature === p0.temperature &&
            r.job.params.topP === p0.topP &&
            r.job.params.topK === p0.topK,
        )
        .slice(0, this.maxBatchRows);
      try {
        await this.step(same);
      } catch (err) {
        for (const job of new Set(same.map((r) => r.job))) {
          this.jobs.splice(this.jobs.indexOf(job), 1);
          job.reject(err);
        }
      }
      await new Promise((r) => setImmediate(r)); // let new requests and disconnects in
    }
  }

  /** Resolves finished and cancelled jobs and drops them from the queue. */
  private settle(): void {
    for (let i = this.jobs.length - 1; i >= 0; i--) {
      const job = this.jobs[i];
      if (!job.cancelled && !job.rows.every((r) => r.finish)) continue;
      this.jobs.splice(i, 1);
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

  private async step(rows: Row[]): Promise<void> {
    const p = rows[0].job.params;
    const maxNewTokens = Math.min(this.chunkTokens, Math.max(...rows.map((r) => r.remaining)));
    const prompts = rows.map((r) => {
      const ids = new Int32Array(r.job.promptIds.length + r.generated.length);
      ids.set(r.job.promptIds);
      ids.set(r.generated, r.job.promptIds.length);
      return ids;
    });
    this.stats.batches++;
    this.stats.maxRowsInBatch = Math.max(this.stats.maxRowsInBatch, rows.length);
    const out = await this.model.generate({
      prompts,
      maxNewTokens,
      temperature: p.temperature,
      topP: p.topP,
      topK: p.topK,
      seed: 0,
      streams: rows.map((r) => streamId(r.job.params.seed, r.index, r.chunk)),
      stopTokens: this.tokenizer.stopIds,
    });
    out.forEach((g, i) => {
      this.stats.generatedTokens += g.tokens.length;
      this.advance(rows[i], g.tokens, g.logprobs, g.finishReason);
    });
  }

  /** Appends one chunk's tokens to a row, applies the length and stop-string limits, emits an update. */
  private advance(row: Row, tokens: Int32Array, logprobs: Float32Array, reason: 'stop' | 'length'): void {
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
    row.chunk++;
    if (stopped) row.finish = 'stop';
    else if (row.remaining <= 0) row.finish = 'length';
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
