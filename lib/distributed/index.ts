/**
 * Process groups for data parallelism across processes (one or many machines).
 *
 *   const group = initDistributed();       // MPI when started by mpirun, else one local rank
 *   const [begin, end] = shardRange(rows, group.rank, group.size);
 *   ... forward/backward on rows [begin, end) with per-token gradients scaled by the GLOBAL count ...
 *   await group.allReduceGradients(model); // grads ← Σ_ranks grads, every rank the same bits
 *   await optimizer.step();                // identical on every rank, so weights stay identical
 *
 * Backends: 'local' (size 1: every collective is the identity, so code written for N ranks runs
 * unchanged in one process) and 'mpi' (Open MPI, loaded at run time by the addon: the package
 * builds and runs without it; asking for it when it is absent is an error naming what to install).
 * Collectives must be called by every rank in the same order. The ones on model buffers
 * (allReduceGradients, ...) run as async jobs on libuv's thread pool, and Open MPI is far slower when
 * successive calls come from different pool threads (a 24.6 MiB gradient all-reduce at 2 ranks:
 * 60–110 ms from the default pool of 4, 2.4–8.5 ms with UV_THREADPOOL_SIZE=1), so ranks should run
 * with UV_THREADPOOL_SIZE=1 (`--nproc` sets it; with your own mpirun: `-x UV_THREADPOOL_SIZE=1`). MPI sums are not in rank order, so a
 * result can differ from the one-process result in the last bits; it is the same on every rank and
 * from run to run.
 *
 * 2-D layout: `initDistributed({tensorParallel: K})` splits an N-rank job into N/K tensor-parallel
 * groups of K consecutive ranks (each holds one model, split over its K processes: Model.create/load
 * with `{tensorParallel: K, tensorParallelGroup: 'mpi'}`) and K data-parallel groups across them;
 * the returned group is this rank's data-parallel group (what trainers shard batches over), with
 * the tensor-parallel position in `tensorParallelRank` / `tensorParallelSize`.
 *
 * Gradients are all-reduced in buckets (default {@link DEFAULT_BUCKET_BYTES}), last bucket first:
 * backward produces the last layer's gradients first, so this is the order in which a bucket
 * can start while backward still runs: backwardAllReduce does that (the same buckets, the same
 * bits); allReduceGradients runs them after backward. At 2 ranks the sums are bitwise those of one
 * all-reduce.
 */
import { RlhfError, ErrorCode } from '../errors.js';
import { native } from '../native.js';
import { checkInt } from '../validate.js';
import type { BackwardGrads, Model } from '../engine/model.js';

export type DistributedBackend = 'local' | 'mpi';

/** Anything AdamW accepts: a Model (its native parameter store) or `{params, grads}`. */
export type GradientTarget = { readonly optimizerTarget: object } | { params: Float32Array; grads: Float32Array };

/** What backwardAllReduce overlapped (see there). */
export interface OverlapReport {
  readyPoints: number;
  earlyBuckets: number;
}

/** Gradient all-reduce bucket size (bytes) unless allReduceGradients is given another: DDP's 25 MB. */
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

export interface ProcessGroup {
  readonly backend: DistributedBackend;
  /** rank and size of this data-parallel group (the job's, unless split by tensorParallel) */
  readonly rank: number;
  readonly size: number;
  /** this process in the whole job (the writer of shared outputs is world rank 0) */
  readonly worldRank: number;
  readonly worldSize: number;
  /** position in this rank's tensor-parallel group (0 of 1 without a 2-D layout) */
  readonly tensorParallelRank: number;
  readonly tensorParallelSize: number;
  /**
   * This rank's tensor-parallel group (size tensorParallelSize; the processes that hold one model
   * between them) and the whole job, for the small collectives a checkpoint makes across them
   * (allReduceSum, allGather, broadcast, barrier; the model-buffer calls are the data-parallel
   * group's). On a group without a 2-D layout the tensor-parallel group is this rank alone.
   */
  readonly tensorGroup: ProcessGroup;
  readonly worldGroup: ProcessGroup;
  /** x ← Σ_ranks x, in place (Float64Array for counts and sums that must stay exact). */
  allReduceSum<T extends Float32Array | Float64Array>(x: T): T;
  /** x ← max over ranks, in place. */
  allReduceMax(x: Float32Array): Float32Array;
  /** [x of rank 0, x of rank 1, …]; every rank passes the same length. */
  allGather(x: Float32Array): Float32Array;
  /** x ← x of rank `root`, in place. */
  broadcast<T extends Float32Array | Float64Array | Uint8Array | Int32Array>(x: T, root?: number): T;
  barrier(): void;
  /**
   * The model's gradients ← Σ_ranks gradients (scale the per-token gradients by global counts
   * first), in buckets of `bucketBytes` (default {@link DEFAULT_BUCKET_BYTES}; 0: one all-reduce).
   */
  allReduceGradients(target: GradientTarget, options?: { bucketBytes?: number }): Promise<void>;
  /**
   * `model.backward(grads)` with allReduceGradients' work overlapped: a second thread sums each
   * bucket (the same buckets, last first) over the ranks as soon as backward has made it final, so
   * the gradients are allReduceGradients' bit for bit. A whole model on the CPU without LoRA and not
   * split over ranks (else ERR_RLHF_UNSUPPORTED). bucketBytes (default {@link DEFAULT_BUCKET_BYTES})
   * must be > 0: a single all-reduce cannot start before backward ends. Collective. Resolves with
   * how often backward reported newly final gradients (after the heads, each layer and at the end;
   * 0 on a group of one) and how many buckets began before its last report (what overlapped).
   */
  backwardAllReduce(model: Model, grads: BackwardGrads, options?: { bucketBytes?: number }): Promise<OverlapReport>;
  /** The model's parameters ← those of rank `root` (default 0): start every rank from one copy. */
  broadcastParameters(target: GradientTarget, root?: number): Promise<void>;
  /** params[offsets[r], offsets[r+1]) ← rank r's values of that range, for every rank (ZeRO-1). */
  allGatherParameters(target: GradientTarget, offsets: number[]): Promise<void>;
  /** Ends every rank of the job (MPI_Abort); on a local group, throws. */
  abort(reason: string): never;
}

/** Rows [begin, end) of `n` that `rank` of `size` takes: contiguous, in global order, sizes differing by at most 1. */
export function shardRange(n: number, rank: number, size: number): [number, number] {
  const fn = 'shardRange';
  checkInt(fn, 'n', n, { min: 0 });
  checkInt(fn, 'size', size, { min: 1 });
  checkInt(fn, 'rank', rank, { min: 0, max: size - 1 });
  const base = Math.floor(n / size),
    extra = n % size;
  const begin = rank * base + Math.min(rank, extra);
  return [begin, begin + base + (rank < extra ? 1 : 0)];
}

function targetOf(fn: string, target: GradientTarget): object {
  if (target && typeof target === 'object') {
    if ('optimizerTarget' in target) return target.optimizerTarget;
    if (target.params instanceof Float32Array && target.grads instanceof Float32Array) {
      if (target.params.length !== target.grads.length)
        throw new RangeError(
          `${fn}: expected target.grads to have ${target.params.length} elements, received ${target.grads.length}`,
        );
      return target;
    }
  }
  throw new TypeError(`${fn}: expected target to be a Model or {params: Float32Array, grads: Float32Array}`);
}

function checkOffsets(fn: string, offsets: number[], size: number): number[] {
  if (!Array.isArray(offsets) || offsets.length !== size + 1 || offsets[0] !== 0)
    throw new RangeError(
      `${fn}: expected offsets to be ${size + 1} ascending integers starting at 0, received ${JSON.stringify(offsets)}`,
    );
  offsets.forEach((x, i) => {
    checkInt(fn, `offsets[${i}]`, x, { min: i ? offsets[i - 1] : 0 });
  });
  return offsets;
}

/**
 * Gathers equal-length-or-shorter pieces (one per rank, rank order) into one array: piece r lands
 * at offsets[r]. Collective: every rank calls it with its own piece.
 */
export function allGatherRanges(group: ProcessGroup, piece: Float32Array, offsets: number[]): Float32Array {
  checkOffsets('allGatherRanges', offsets, group.size);
  const lengths = offsets.slice(1).map((x, r) => x - offsets[r]);
  if (piece.length !== lengths[group.rank])
    throw new RangeError(
      `allGatherRanges: expected piece to have ${lengths[group.rank]} elements (rank ${group.rank}), received ${piece.length}`,
    );
  if (group.size === 1) return Float32Array.from(piece);
  const width = Math.max(...lengths);
  const padded = new Float32Array(width);
  padded.set(piece);
  const all = group.allGather(padded);
  const out = new Float32Array(offsets[group.size]);
  for (let r = 0; r < group.size; r++) out.set(all.subarray(r * width, r * width + lengths[r]), offsets[r]);
  return out;
}

/**
 * Every rank's bytes, in rank order (a collective; pieces may differ in length). Bytes travel two
 * to a float32 as integers 0..65535, which float32 holds exactly.
 */
export function allGatherBytes(group: ProcessGroup, bytes: Uint8Array): Uint8Array[] {
  if (group.size === 1) return [bytes.slice()];
  const lengths = Array.from(group.allGather(Float32Array.of(Math.floor(bytes.length / 65536), bytes.length % 65536)));
  const byteLengths = Array.from({ length: group.size }, (_, r) => lengths[2 * r] * 65536 + lengths[2 * r + 1]);
  const offsets = [0];
  for (const n of byteLengths) offsets.push(offsets[offsets.length - 1] + Math.ceil(n / 2));
  const piece = new Float32Array(Math.ceil(bytes.length / 2));
  for (let i = 0; i < bytes.length; i++) piece[i >> 1] += i & 1 ? bytes[i] * 256 : bytes[i];
  const all = allGatherRanges(group, piece, offsets);
  return byteLengths.map((n, r) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const v = all[offsets[r] + (i >> 1)];
      out[i] = i & 1 ? v >> 8 : v & 255;
    }
    return out;
  });
}

/** Every rank's JSON-serialisable value, in rank order (a collective). */
export function allGatherJson<T>(group: ProcessGroup, value: T): T[] {
  if (group.size === 1) return [value];
  return allGatherBytes(group, new TextEncoder().encode(JSON.stringify(value))).map(
    (b) => JSON.parse(new TextDecoder().decode(b)) as T,
  );
}

function bucketBytesOf(fn: string, options: { bucketBytes?: number } | undefined): number {
  if (options === undefined) return DEFAULT_BUCKET_BYTES;
  if (!options || typeof options !== 'object')
    throw new TypeError(`${fn}: expected options to be an object, received ${JSON.stringify(options)}`);
  return checkInt(fn, 'options.bucketBytes', options.bucketBytes ?? DEFAULT_BUCKET_BYTES, { min: 0 });
}

function overlapBucketBytes(options: { bucketBytes?: number } | undefined): number {
  const fn = 'ProcessGroup.backwardAllReduce';
  const b = bucketBytesOf(fn, options);
  if (b < 4) throw new RangeError(`${fn}: expected options.bucketBytes to be at least 4 (one float), received ${b}`);
  return b;
}

class LocalGroup implements ProcessGroup {
  readonly backend = 'local' as const;
  readonly rank = 0;
  readonly size = 1;
  readonly tensorParallelRank = 0;
  readonly tensorParallelSize = 1;
  /** (worldRank, worldSize): a group of one inside a larger job (an MPI rank's trivial tensor-parallel group) */
  constructor(
    readonly worldRank = 0,
    readonly worldSize = 1,
  ) {}
  get tensorGroup(): ProcessGroup {
    return this;
  }
  get worldGroup(): ProcessGroup {
    return this;
  }
  allReduceSum<T extends Float32Array | Float64Array>(x: T): T {
    return x;
  }
  allReduceMax(x: Float32Array): Float32Array {
    return x;
  }
  allGather(x: Float32Array): Float32Array {
    return Float32Array.from(x);
  }
  broadcast<T extends Float32Array | Float64Array | Uint8Array | Int32Array>(x: T, root = 0): T {
    checkInt('ProcessGroup.broadcast', 'root', root, { min: 0, max: 0 });
    return x;
  }
  barrier(): void {}
  async allReduceGradients(target: GradientTarget, options?: { bucketBytes?: number }): Promise<void> {
    targetOf('ProcessGroup.allReduceGradients', target);
    bucketBytesOf('ProcessGroup.allReduceGradients', options);
  }
  async backwardAllReduce(
    model: Model,
    grads: BackwardGrads,
    options?: { bucketBytes?: number },
  ): Promise<OverlapReport> {
    overlapBucketBytes(options);
    await model.backward(grads);
    return { readyPoints: 0, earlyBuckets: 0 };
  }
  async broadcastParameters(target: GradientTarget, root = 0): Promise<void> {
    targetOf('ProcessGroup.broadcastParameters', target);
    checkInt('ProcessGroup.broadcastParameters', 'root', root, { min: 0, max: 0 });
  }
  async allGatherParameters(target: GradientTarget, offsets: number[]): Promise<void> {
    targetOf('ProcessGroup.allGatherParameters', target);
    checkOffsets('ProcessGroup.allGatherParameters', offsets, 1);
  }
  abort(reason: string): never {
    throw new RlhfError(ErrorCode.INTERNAL, `aborted: ${reason}`);
  }
}

type MpiComm = 'data' | 'tensor' | 'world';

class MpiGroup implements ProcessGroup {
  readonly backend = 'mpi' as const;
  readonly rank: number;
  readonly size: number;
  readonly worldRank: number;
  readonly worldSize: number;
  readonly tensorParallelRank: number;
  readonly tensorParallelSize: number;
  readonly #comm: MpiComm;
  #tensor?: ProcessGroup;
  #world?: ProcessGroup;
  /** The data-parallel group of the job (initialising MPI), or `sub` of it: its tensor-parallel group or the world. */
  constructor(tensorParallel: number, sub?: { comm: 'tensor' | 'world'; of: MpiGroup }) {
    if (sub) {
      const o = sub.of;
      this.#comm = sub.comm;
      [this.worldRank, this.worldSize] = [o.worldRank, o.worldSize];
      [this.tensorParallelRank, this.tensorParallelSize] = [o.tensorParallelRank, o.tensorParallelSize];
      [this.rank, this.size] =
        sub.comm === 'tensor' ? [o.tensorParallelRank, o.tensorParallelSize] : [o.worldRank, o.worldSize];
      return;
    }
    this.#comm = 'data';
    const g = native().mpiInit(tensorParallel);
    this.rank = g.rank;
    this.size = g.size;
    this.worldRank = g.worldRank;
    this.worldSize = g.worldSize;
    this.tensorParallelRank = g.tensorParallelRank;
    this.tensorParallelSize = g.tensorParallelSize;
    // A rank that ends with an error (an uncaught exception, or an exit code other than 0 and the
    // 130 of a stop every rank agreed on) must not leave the others waiting in a collective, nor
    // wait in MPI_Finalize itself: it ends the job (MPI_Abort), and mpirun names it.
    process.on('uncaughtExceptionMonitor', (err) => {
      process.stderr.write(
        `rank ${this.worldRank}: uncaught ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n` +
          `rank ${this.worldRank}: aborting the MPI job\n`,
      );
      native().mpiAbort();
    });
    process.once('exit', (code) => {
      if (code === 0 || code === 130) return;
      process.stderr.write(`rank ${this.worldRank}: exiting with code ${code}; aborting the MPI job\n`);
      native().mpiAbort();
    });
  }
  get tensorGroup(): ProcessGroup {
    if (this.#comm === 'tensor') return this;
    // without a 2-D layout the native tensor-parallel communicator is the world: a group of one here
    return (this.#tensor ??=
      this.tensorParallelSize > 1
        ? new MpiGroup(1, { comm: 'tensor', of: this })
        : new LocalGroup(this.worldRank, this.worldSize));
  }
  get worldGroup(): ProcessGroup {
    if (this.#comm === 'world') return this;
    return (this.#world ??= new MpiGroup(1, { comm: 'world', of: this }));
  }
  /** The model-buffer collectives run over the data-parallel communicator only. */
  #dataOnly(fn: string): void {
    if (this.#comm !== 'data')
      throw new RlhfError(
        ErrorCode.UNSUPPORTED,
        `ProcessGroup.${fn}: runs over the data-parallel group only (this is the ${this.#comm === 'tensor' ? 'tensor-parallel group' : 'world'})`,
      );
  }
  allReduceSum<T extends Float32Array | Float64Array>(x: T): T {
    return native().mpiAllReduce(x, 'sum', this.#comm);
  }
  allReduceMax(x: Float32Array): Float32Array {
    return native().mpiAllReduce(x, 'max', this.#comm);
  }
  allGather(x: Float32Array): Float32Array {
    return native().mpiAllGather(x, this.#comm);
  }
  broadcast<T extends Float32Array | Float64Array | Uint8Array | Int32Array>(x: T, root = 0): T {
    checkInt('ProcessGroup.broadcast', 'root', root, { min: 0, max: this.size - 1 });
    return native().mpiBroadcast(x, root, this.#comm);
  }
  barrier(): void {
    native().mpiBarrier(this.#comm);
  }
  async allReduceGradients(target: GradientTarget, options?: { bucketBytes?: number }): Promise<void> {
    const t = targetOf('ProcessGroup.allReduceGradients', target);
    this.#dataOnly('allReduceGradients');
    if (this.size === 1) return; // a data-parallel group of one (e.g. the job is one tensor-parallel group)
    await native().mpiAllReduceGradients(t, bucketBytesOf('ProcessGroup.allReduceGradients', options));
  }
  async backwardAllReduce(
    model: Model,
    grads: BackwardGrads,
    options?: { bucketBytes?: number },
  ): Promise<OverlapReport> {
    const bucketBytes = overlapBucketBytes(options);
    this.#dataOnly('backwardAllReduce');
    if (this.size === 1) {
      await model.backward(grads);
      return { readyPoints: 0, earlyBuckets: 0 };
    }
    if (model.tensorParallelGroup === 'mpi')
      throw new RlhfError(
        ErrorCode.UNSUPPORTED,
        'ProcessGroup.backwardAllReduce: a model split over MPI processes (its backward makes collectives of its own)',
      );
    return model.backward(grads, { allReduceBucketBytes: bucketBytes });
  }
  async broadcastParameters(target: GradientTarget, root = 0): Promise<void> {
    const t = targetOf('ProcessGroup.broadcastParameters', target);
    this.#dataOnly('broadcastParameters');
    checkInt('ProcessGroup.broadcastParameters', 'root', root, { min: 0, max: this.size - 1 });
    await native().mpiBroadcastParameters(t, root);
  }
  async allGatherParameters(target: GradientTarget, offsets: number[]): Promise<void> {
    const t = targetOf('ProcessGroup.allGatherParameters', target);
    this.#dataOnly('allGatherParameters');
    await native().mpiAllGatherParameters(t, checkOffsets('ProcessGroup.allGatherParameters', offsets, this.size));
  }
  abort(reason: string): never {
    process.stderr.write(`rank ${this.worldRank}: aborting the job: ${reason}\n`);
    native().mpiAbort();
    throw new RlhfError(ErrorCode.INTERNAL, `aborted: ${reason}`);
  }
}

/**
 * Why `group.backwardAllReduce(model, …)` cannot overlap the all-reduce with this model's backward
 * (undefined: it can): the gradient-ready hook needs a whole trainable model on the CPU without
 * LoRA, not split over tensor-parallel ranks (threads or processes), on a group of more than one
 * rank. A trainer then takes the plain path (backward, then allReduceGradients).
 */
export function overlapUnsupported(group: ProcessGroup, model: Model): string | undefined {
  if (group.size === 1) return 'one data-parallel rank (nothing to sum)';
  if (group.backend !== 'mpi') return `the ${group.backend} backend`;
  if (model.tensorParallel > 1 || group.tensorParallelSize > 1) return 'a model split over tensor-parallel ranks';
  if (model.device !== 'cpu') return `a model on ${model.device}`;
  if (model.lora || model.adaptersOf) return 'a LoRA model (its base is frozen)';
  if (!model.trainable) return 'a frozen model';
  return undefined;
}

let world: ProcessGroup | undefined;

/** True when this process was started by mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE). */
export function launchedByMpi(): boolean {
  return process.env.OMPI_COMM_WORLD_SIZE !== undefined;
}

/** What the addon found of MPI, without initialising it. */
export function mpiAvailability(): { loadable: boolean; launched: boolean; library: string; error: string } {
  return native().mpiInfo();
}

/**
 * The process group of this job (created once). backend 'auto' (default): MPI when started by
 * mpirun, else a local group of one; 'mpi' insists on MPI (a one-rank MPI job outside mpirun).
 * tensorParallel K (MPI only; default 1): the 2-D layout above — K must divide the number of
 * ranks; the returned group is the data-parallel one.
 */
export function initDistributed(
  options: { backend?: 'auto' | DistributedBackend; tensorParallel?: number } = {},
): ProcessGroup {
  const backend = options.backend ?? 'auto';
  if (!['auto', 'local', 'mpi'].includes(backend))
    throw new RangeError(
      `initDistributed: expected options.backend to be 'auto', 'local' or 'mpi', received ${JSON.stringify(backend)}`,
    );
  const tp = checkInt('initDistributed', 'options.tensorParallel', options.tensorParallel ?? 1, { min: 1 });
  const want: DistributedBackend = backend === 'auto' ? (launchedByMpi() ? 'mpi' : 'local') : backend;
  if (tp > 1 && want !== 'mpi')
    throw new RlhfError(
      ErrorCode.INVALID_ARGUMENT,
      `initDistributed: options.tensorParallel ${tp} needs the MPI backend (start the job with mpirun)`,
    );
  if (world) {
    if (world.backend !== want)
      throw new RlhfError(
        ErrorCode.INVALID_ARGUMENT,
        `initDistributed: already initialised with backend '${world.backend}'`,
      );
    if (options.tensorParallel !== undefined && world.tensorParallelSize !== tp)
      throw new RlhfError(
        ErrorCode.INVALID_ARGUMENT,
        `initDistributed: already initialised with tensorParallel ${world.tensorParallelSize}, received ${tp}`,
      );
    return world;
  }
  if (want === 'mpi') {
    const info = native().mpiInfo();
    if (!info.loadable) throw new RlhfError(ErrorCode.UNSUPPORTED, `initDistributed: ${info.error}`);
  }
  world = want === 'mpi' ? new MpiGroup(tp) : new LocalGroup();
  return world;
}

/** The group made by initDistributed, or a local group of one when none was made. */
export function currentGroup(): ProcessGroup {
  return world ?? initDistributed({ backend: 'local' });
}
