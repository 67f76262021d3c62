/**
 * Step-level generation on a paged KV cache (native/model/session.h): continuous batching, chunked
 * prefill under a per-step token budget, and prefix sharing (requests with the same prompt are
 * prefilled once; full prompt blocks stay in an LRU prefix cache for later prompts).
 *
 * ```ts
 * const session = new GenerationSession(model, { numBlocks: 1024 });
 * const id = session.addRequest(promptTokens, { maxNewTokens: 64, seed: 1, stream: 0 });
 * while (!session.idle) await session.step();   // or: await session.runUntilIdle()
 * const [result] = session.collect();
 * ```
 *
 * A request's tokens and log-probs do not depend on what else runs in the session, on the block
 * size, on sharing, on when it was admitted or on the token budget (CPU, fixed thread count): they
 * are those of `model.generate` for the same seed and stream, and its log-probs are forward()'s.
 * The session packs the model's weights when it is created: make a new session after the weights
 * change. Models of one rank: on the CPU, or on the CUDA backend of a CUDA build, where the tokens
 * are the CPU session's and the log-probs agree within fp32 rounding (the invariances above are
 * bitwise on the CPU only).
 *
 * KV pools: the layers are grouped by attention window, each group with its own pool of blocks (a
 * block: blockSize positions of k and v of the group's layers). The global layers (every layer of
 * Llama or Qwen, Gemma's global layers) keep every block of a sequence; the sliding-window layers
 * (every layer of Mistral, Gemma's local layers) give back the blocks that lie wholly outside their
 * window, and a request reserves only its window's worth of them, so more requests fit. The global
 * pool has `numBlocks` blocks, the sliding one `windowBlocks` (default numBlocks);
 * estimateKvPool (lib/engine/kv-memory.ts) sizes both for a batch.
 */
import { withCallerStack } from '../errors.js';
import { native, type NativeGenerationSession } from '../native.js';
import { checkInt, checkInt32Array, options, typeError } from '../validate.js';
import type { Model } from './model.js';

export interface GenerationSessionOptions {
  /** token positions per KV block (default 16) */
  blockSize?: number;
  /**
   * blocks in the global layers' pool (required), and in the sliding-window layers' pool unless
   * windowBlocks is given. With the default windowBlocks the KV memory is numBlocks · blockBytes
   * (+ one zero block of the sliding layers when some layers slide)
   */
  numBlocks: number;
  /** blocks in the sliding-window layers' pool (default numBlocks; unused when no layer slides) */
  windowBlocks?: number;
  /** rows computed per step: decode rows plus prefill-chunk tokens (default 512) */
  tokenBudget?: number;
  /** sequences holding blocks at once (default 256) */
  maxRunning?: number;
  /** keep full prompt blocks for later prompts with the same prefix (default true) */
  prefixCache?: boolean;
  /**
   * what the pool stores k/v as (default 'f32'). 'bf16': rounded to nearest even when stored,
   * widened to f32 when attention reads them (f32 accumulation): half the KV bytes, results within
   * the rounding of k/v of the f32 pool's
   */
  kvDtype?: 'f32' | 'bf16';
}

export interface SessionRequestOptions {
  maxNewTokens: number;
  /** tokens that end the request (default: the model config's eos ids) */
  stopTokens?: number[];
  /** 0 = greedy (default 1) */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** the Philox stream of this request's draws (default 0) */
  stream?: number;
}

export interface SessionResult {
  id: number;
  tokens: Int32Array;
  /** log π_T(token) of the full tempered distribution (T = 1 when greedy), as Model.generate */
  logprobs: Float32Array;
  finishReason: 'stop' | 'length' | 'cancelled';
}

/** Tokens a running request generated since the previous {@link GenerationSession.progress} call. */
export interface SessionProgress {
  id: number;
  tokens: Int32Array;
  logprobs: Float32Array;
}

export interface SessionStepReport {
  decodeRows: number;
  prefillTokens: number;
  admitted: number;
  finished: number;
}

/** One KV pool: the layers of one attention window. */
export interface KvGroupStats {
  /** the layers' sliding window (0: global layers) */
  window: number;
  /** layers in the group */
  layers: number;
  blocksTotal: number;
  blocksInUse: number;
  blocksCached: number;
  peakBlocksInUse: number;
  /** one block: blockSize positions of the group's layers, k and v */
  blockBytes: number;
  /** blocksTotal · blockBytes, plus one zero block when the group slides */
  poolBytes: number;
  /** blocks returned to the pool for lying outside the window */
  windowReleased: number;
}

/** Block counts are sums over the groups (a block of each pool counts one); bytes are exact. */
export interface GenerationSessionStats {
  blockSize: number;
  blocksTotal: number;
  blocksInUse: number;
  /** unreferenced blocks the prefix cache keeps (evicted first when their pool needs blocks) */
  blocksCached: number;
  /** the peak of blocksInUse */
  peakBlocksInUse: number;
  /** bytes of blockSize positions of every layer (k and v): one block of each group */
  blockBytes: number;
  /** bytes of the blocks in use */
  kvBytesInUse: number;
  /** the peak of kvBytesInUse */
  peakKvBytes: number;
  /** KV bytes allocated: every pool's, the sliding pool's zero block included */
  poolBytes: number;
  /** blocks the sliding-window layers' pool got back for lying outside the window */
  windowReleased: number;
  /** per pool, the global layers' first */
  groups: KvGroupStats[];
  waiting: number;
  running: number;
  unread: number;
  steps: number;
  prefillTokens: number;
  /** prompt positions taken from another request's prefill or the prefix cache */
  sharedTokens: number;
  decodeTokens: number;
}

const SESSION_KEYS = [
  'blockSize',
  'numBlocks',
  'windowBlocks',
  'tokenBudget',
  'maxRunning',
  'prefixCache',
  'kvDtype',
] as const;
const REQUEST_KEYS = ['maxNewTokens', 'stopTokens', 'temperature', 'topK', 'topP', 'seed', 'stream'] as const;

export class GenerationSession {
  readonly #native: NativeGenerationSession;
  readonly #eos: number[];

  constructor(model: Model, opts: GenerationSessionOptions) {
    const fn = 'GenerationSession';
    const o = options(fn, 'options', opts);
    o.known(SESSION_KEYS);
    const blockSize = o.int('blockSize', { min: 1, max: 65536 }, 16);
    const numBlocks = o.int('numBlocks', { min: 1, max: 2 ** 31 - 1 });
    const windowBlocks = o.has('windowBlocks') ? o.int('windowBlocks', { min: 1, max: 2 ** 31 - 1 }) : undefined;
    const tokenBudget = o.int('tokenBudget', { min: 1, max: 2 ** 24 }, 512);
    const maxRunning = o.int('maxRunning', { min: 1, max: 2 ** 24 }, 256);
    const prefixCache = o.bool('prefixCache', true);
    const kvDtype = o.has('kvDtype') ? o.obj.kvDtype : 'f32';
    if (kvDtype !== 'f32' && kvDtype !== 'bf16') throw typeError(fn, 'options.kvDtype', "'f32' or 'bf16'", kvDtype);
    const target = model.generationTarget;
    this.#eos = model.config.eosTokenId;
    this.#native = new (native().NativeGenerationSession)(target.native, {
      blockSize,
      numBlocks,
      windowBlocks,
      tokenBudget,
      maxRunning,
      prefixCache,
      kvBf16: kvDtype === 'bf16',
      adapters: target.adapters,
    });
  }

  /** Queues a request; returns its id. */
  addRequest(prompt: Int32Array | number[], opts: SessionRequestOptions): number {
    const fn = 'GenerationSession.addRequest';
    const p = Array.isArray(prompt) ? Int32Array.from(prompt) : checkInt32Array(fn, 'prompt', prompt);
    if (p.length === 0) throw typeError(fn, 'prompt', 'a non-empty token array', prompt);
    const o = options(fn, 'options', opts);
    o.known(REQUEST_KEYS);
    let stopTokens = this.#eos;
    if (o.has('stopTokens')) {
      if (!Array.isArray(o.obj.stopTokens))
        throw typeError(fn, 'options.stopTokens', 'an array of token ids', o.obj.stopTokens);
      stopTokens = (o.obj.stopTokens as unknown[]).map((t, i) =>
        checkInt(fn, `options.stopTokens[${i}]`, t, { min: 0 }),
      );
    }
    return this.#native.addRequest(p, {
      maxNewTokens: o.int('maxNewTokens', { min: 1 }),
      temperature: o.number('temperature', { min: 0 }, 1),
      topK: o.int('topK', { min: 0 }, 0),
      topP: o.number('topP', { gt: 0, max: 1 }, 1),
      seed: o.int('seed', { min: 0, max: Number.MAX_SAFE_INTEGER }, 0),
      stream: o.int('stream', { min: 0, max: Number.MAX_SAFE_INTEGER }, 0),
      stopTokens: Int32Array.from(stopTokens),
    });
  }

  /** One scheduler step: admissions, a decode row per running request, prefill chunks. */
  step(): Promise<SessionStepReport> {
    return withCallerStack(() => this.#native.step());
  }

  /** Finished and cancelled requests since the last collect, in the order they ended. */
  collect(): SessionResult[] {
    return this.#native.collect().map((r) => ({
      id: r.id,
      tokens: r.tokens,
      logprobs: r.logprobs,
      finishReason: r.cancelled ? 'cancelled' : r.stopped ? 'stop' : 'length',
    }));
  }

  /**
   * The tokens each running request generated since the previous call (for streaming), in
   * admission order. A request's last tokens may come only through collect(), whose results hold
   * the whole generation.
   */
  progress(): SessionProgress[] {
    return this.#native.progress();
  }

  /** Steps until nothing waits or runs; returns everything collected meanwhile. */
  async runUntilIdle(): Promise<SessionResult[]> {
    const out = this.collect();
    while (!this.idle) {
      await this.step();
      out.push(...this.collect());
    }
    return out;
  }

  /** Ends a waiting or running request and frees its blocks; false when it is not active. */
  cancel(id: number): boolean {
    return this.#native.cancel(checkInt('GenerationSession.cancel', 'id', id, { min: 0 }));
  }

  get idle(): boolean {
    return this.#native.idle;
  }

  get stats(): GenerationSessionStats {
    return this.#native.stats as unknown as GenerationSessionStats;
  }

  /** Frees the KV pool and the packed weights. */
  dispose(): void {
    this.#native.dispose();
  }
}
