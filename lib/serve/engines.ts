/**
 * The two ways the serving {@link Scheduler} runs its rows through the model:
 *
 * - {@link SessionEngine} (models of one rank, CPU or CUDA): every choice is a request of one
 *   {@link GenerationSession}, so concurrent requests are decoded in the same steps (continuous
 *   batching over a paged KV cache, prefix sharing between the n choices of a prompt); new
 *   requests join at the next step, a cancelled one frees its KV blocks at once, streams update
 *   after every step, and each row keeps its own sampling parameters. Choice j of a request with
 *   seed s samples Philox stream j of seed s: its tokens do not depend on what else runs.
 * - {@link ChunkedEngine} (models the session refuses: tensor-parallel): rows
 *   with equal (temperature, topP, topK) share a `Model.generate` call of `chunkTokens` tokens;
 *   each chunk re-feeds the prompt and the tokens so far. Chunk c of choice j samples Philox
 *   stream hash(s, j, c) of seed 0, so a seeded request is reproducible for a given chunk size.
 */
import { createHash } from 'node:crypto';
import { GenerationSession } from '../engine/generation-session.js';
import type { Model } from '../engine/model.js';
import type { Row, SchedulerStats } from './scheduler.js';

/** What an engine reports back: tokens for a row (`reason` set when the row's generation ended). */
export interface EngineSink {
  deliver(row: Row, tokens: Int32Array, logprobs: Float32Array, reason?: 'stop' | 'length'): void;
  /** the row cannot run (its request is rejected with `err`) */
  fail(row: Row, err: unknown): void;
}

export interface Engine {
  /** Runs one round (a session step, or one generate chunk) for some of `rows` (oldest first). */
  step(rows: Row[], sink: EngineSink): Promise<void>;
  /** Forgets a row that ended early (cancelled, or cut by a stop string); frees what it holds. */
  drop(row: Row): void;
  close(): void;
}

/** A 53-bit Philox stream id for (seed, choice, chunk). */
export function streamId(seed: number, choice: number, chunk: number): number {
  const h = createHash('sha256').update(`${seed}:${choice}:${chunk}`).digest();
  return h.readUIntBE(0, 6) * 32 + (h[6] >> 3);
}

export interface SessionEngineOptions {
  /** KV blocks in the pool */
  numBlocks: number;
  blockSize: number;
  kvDtype: 'f32' | 'bf16';
  tokenBudget: number;
  /** sequences decoded at once */
  maxRunning: number;
}

export class SessionEngine implements Engine {
  readonly session: GenerationSession;
  readonly #ids = new Map<Row, number>();
  readonly #rows = new Map<number, Row>();
  /** tokens delivered per row (progress and collect overlap) */
  readonly #received = new Map<Row, number>();

  constructor(
    model: Model,
    private readonly stopIds: number[],
    private readonly stats: SchedulerStats,
    o: SessionEngineOptions,
  ) {
    this.session = new GenerationSession(model, {
      numBlocks: o.numBlocks,
      blockSize: o.blockSize,
      kvDtype: o.kvDtype,
      tokenBudget: o.tokenBudget,
      maxRunning: o.maxRunning,
    });
  }

  async step(rows: Row[], sink: EngineSink): Promise<void> {
    for (const row of rows) {
      if (this.#ids.has(row)) continue;
      const p = row.job.params;
      try {
        const id = this.session.addRequest(row.job.promptIds, {
          maxNewTokens: row.remaining,
          temperature: p.temperature,
          topP: p.topP,
          topK: p.topK,
          seed: p.seed,
          stream: row.index,
          stopTokens: this.stopIds,
        });
        this.#ids.set(row, id);
        this.#rows.set(id, row);
        this.#received.set(row, 0);
      } catch (err) {
        sink.fail(row, err);
      }
    }
    if (this.session.idle) return;
    const report = await this.session.step();
    this.stats.batches++;
    this.stats.maxRowsInBatch = Math.max(this.stats.maxRowsInBatch, report.decodeRows);
    for (const p of this.session.progress()) {
      const row = this.#rows.get(p.id);
      if (!row) continue;
      this.#received.set(row, this.#received.get(row)! + p.tokens.length);
      this.stats.generatedTokens += p.tokens.length;
      sink.deliver(row, p.tokens, p.logprobs);
    }
    for (const r of this.session.collect()) {
      const row = this.#rows.get(r.id);
      if (!row) continue; // dropped by the scheduler
      const seen = this.#received.get(row)!;
      this.#forget(row);
      if (r.finishReason === 'cancelled') continue;
      this.stats.generatedTokens += r.tokens.length - seen;
      sink.deliver(row, r.tokens.subarray(seen), r.logprobs.subarray(seen), r.finishReason);
    }
  }

  drop(row: Row): void {
    const id = this.#ids.get(row);
    if (id === undefined) return;
    this.#forget(row);
    this.session.cancel(id); // its 'cancelled' result comes with the next collect(), unclaimed
  }

  #forget(row: Row): void {
    this.#rows.delete(this.#ids.get(row)!);
    this.#ids.delete(row);
    this.#received.delete(row);
  }

  close(): void {
    this.session.dispose();
  }
}

export class ChunkedEngine implements Engine {
  readonly #chunk = new Map<Row, number>();

  constructor(
    private readonly model: Model,
    private readonly stopIds: number[],
    private readonly stats: SchedulerStats,
    private readonly chunkTokens: number,
    private readonly maxBatchRows: number,
  ) {}

  async step(rows: Row[], sink: EngineSink): Promise<void> {
    // the rows of the oldest request's sampling settings, up to maxBatchRows
    const p = rows[0].job.params;
    const same = rows
      .filter(
        (r) =>
          r.job.params.temperature === p.temperature && r.job.params.topP === p.topP && r.job.params.topK === p.topK,
      )
      .slice(0, this.maxBatchRows);
    const maxNewTokens = Math.min(this.chunkTokens, Math.max(...same.map((r) => r.remaining)));
    const prompts = same.map((r) => {
      const ids = new Int32Array(r.job.promptIds.length + r.generated.length);
      ids.set(r.job.promptIds);
      ids.set(r.generated, r.job.promptIds.length);
      return ids;
    });
    this.stats.batches++;
    this.stats.maxRowsInBatch = Math.max(this.stats.maxRowsInBatch, same.length);
    let out;
    try {
      out = await this.model.generate({
        prompts,
        maxNewTokens,
        temperature: p.temperature,
        topP: p.topP,
        topK: p.topK,
        seed: 0,
        streams: same.map((r) => streamId(r.job.params.seed, r.index, this.#chunk.get(r) ?? 0)),
        stopTokens: this.stopIds,
      });
    } catch (err) {
      for (const r of same) sink.fail(r, err);
      return;
    }
    out.forEach((g, i) => {
      const row = same[i];
      this.#chunk.set(row, (this.#chunk.get(row) ?? 0) + 1);
      this.stats.generatedTokens += g.tokens.length;
      // a chunk that ends on a stop token ends the row; one cut by maxNewTokens does not
      sink.deliver(row, g.tokens, g.logprobs, g.finishReason === 'stop' ? 'stop' : undefined);
    });
  }

  drop(row: Row): void {
    this.#chunk.delete(row);
  }

  close(): void {}
}
