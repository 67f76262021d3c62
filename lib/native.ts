/**
 * The only module that loads the addon. It tries, in order: `RLHF_ADDON` (a path to a .node
 * file), the CMake build (`build-cmake/Release/rlhf.node`: CUDA when nvcc was present), and the
 * node-gyp build made by `npm install` (through `bindings`). If none loads it throws one message
 * listing every path tried and how to fix it.
 *
 * `NativeBinding` declares the whole native surface; everything else in lib/ goes through it.
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RlhfError } from './errors.js';
import type { ForwardResult, ParameterInfo } from './engine/model.js';

export interface BuildInfo {
  version: string;
  backends: Array<'cpu' | 'cuda'>;
  simd: 'avx512' | 'avx2' | 'scalar';
  gemmKernel: string;
  /** the bf16-weight GEMM's kernel: 'avx512bf16-14x32' (vdpbf16ps) or an emulation ('avx2-4x16', 'scalar-4x16') */
  gemmBf16Kernel: string;
  threads: number;
  cudaCompiled: boolean;
  cudaArchitectures: string[];
  cudaDevices: number;
  cudaUnavailableReason?: string;
  /** devices Model.create/load({device}) can use now: 'cpu', and 'cuda' when the CUDA backend is compiled in,
   * a GPU is present and cuBLASLt loads */
  modelDevices: Array<'cpu' | 'cuda'>;
  /** why 'cuda' is not in modelDevices */
  cudaBackendUnavailableReason?: string;
  /** Open MPI for multi-process runs (--nproc), loaded at run time: optional. */
  mpi: { available: boolean; library: string; reason?: string };
  /** NCCL for GPU collectives (native/core/nccl.h), loaded at run time: optional. */
  nccl: { available: boolean; library: string; version?: number; reason?: string };
  compiler: string;
  napiVersion: number;
  buildSystem: string;
}

export interface NativeGemmOptions {
  transA?: boolean;
  transB?: boolean;
  m: number;
  n: number;
  k: number;
  alpha?: number;
  beta?: number;
  a: Float32Array;
  /** f32, or with dtype 'bf16' a Uint16Array of bf16 bits (A is rounded to bf16, sums stay f32) */
  b: Float32Array | Uint16Array;
  c: Float32Array;
  dtype?: 'f32' | 'bf16';
  lda?: number;
  ldb?: number;
  ldc?: number;
}

export interface NativeAdamWOptions {
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  maxGradNorm?: number;
}

export interface AdamWSegment {
  offset: number;
  length: number;
  weightDecayScale: number;
}

export interface AdamWStepResult {
  gradNorm: number;
  skipped: boolean;
  step: number;
}

export interface NativeAdamWState {
  step: number;
  m: Float32Array;
  v: Float32Array;
}

export interface NativeAdamW {
  readonly size: number;
  /** The range of parameters this optimizer updates: [0, size) unless sharded (ZeRO-1). */
  readonly shardBegin: number;
  readonly shardEnd: number;
  step(overrides?: NativeAdamWOptions): Promise<AdamWStepResult>;
  setOptions(options: NativeAdamWOptions): void;
  getState(): Promise<NativeAdamWState>;
  setState(state: NativeAdamWState): Promise<void>;
  dispose(): void;
}

/** Counters of the native block cache (large buffers): calls to the OS and cache hits since start. */
export interface BlockCacheStats {
  maps: number;
  unmaps: number;
  hits: number;
  misses: number;
  /** bytes mapped now: in use + cached (size classes, so at least what nativeMemoryInUse counts of them) */
  mappedBytes: number;
  cachedBytes: number;
  limitBytes: number;
  hugePages: boolean;
}

/**
 * One model's engine (native/napi/model_binding.cc over native/model/engine.h). lib/engine/model.ts
 * wraps it; it is also an optimizer target: `new NativeAdamW(nativeModel)` updates the model's flat
 * parameter store in place (native/napi/adamw_target.h, resolve_model_target).
 */
export interface NativeModel {
  readonly numParameters: number;
  readonly activationBytes: number;
  /** bytes held: the f32 parameter store, the bf16 weights, the gradient store */
  readonly storageBytes: { parameters: number; weightCopy: number; gradients: number };
  /** this process's rank in its MPI tensor-parallel group (tensorParallelGroup 'mpi'), else 0 */
  readonly tensorParallelRank: number;
  parameters(): ParameterInfo[];
  initRandom(seed: number, std: number): Promise<void>;
  forward(b: object): Promise<ForwardResult>;
  /** allReduceBucketBytes: the gradient all-reduce over the MPI data-parallel group, overlapped (core/mpi.h) */
  backward(g: object, allReduceBucketBytes?: number): Promise<void | { readyPoints: number; earlyBuckets: number }>;
  zeroGrad(): Promise<void>;
  generate(o: object): Promise<{ tokens: Int32Array[]; logprobs: Float32Array[]; stopped: boolean[] }>;
  readParameter(name: string, which: 'param' | 'grad'): Promise<Float32Array>;
  /** bf16 bits: a bf16-only weight's own bits, other parameters rounded to nearest even */
  readParameter(name: string, which: 'bf16'): Promise<Uint16Array>;
  /** Float32Array, or a Uint16Array of bf16 bits (stored as they are in a bf16-only weight, else widened) */
  writeParameter(name: string, data: Float32Array | Uint16Array): Promise<void>;
  releaseActivations(): void;
  setGradientCheckpointing(on: boolean): void;
  dispose(): void;
}

/** native/napi/session_binding.cc over native/model/session.h; lib/engine/generation-session.ts wraps it */
export interface NativeGenerationSession {
  addRequest(prompt: Int32Array, o: object): number;
  step(): Promise<{ decodeRows: number; prefillTokens: number; admitted: number; finished: number }>;
  collect(): Array<{ id: number; tokens: Int32Array; logprobs: Float32Array; stopped: boolean; cancelled: boolean }>;
  progress(): Array<{ id: number; tokens: Int32Array; logprobs: Float32Array }>;
  cancel(id: number): boolean;
  readonly idle: boolean;
  readonly stats: Record<string, unknown>;
  dispose(): void;
}

export interface NativeBinding {
  /** Registers the class native engine errors are created as (RlhfError); called once on load. */
  setErrorClass(cls: new (code: string, message: string) => Error): void;
  buildInfo(): BuildInfo;
  setThreads(n: number): void;
  nativeMemoryInUse(): number;
  nativeMemoryPeak(reset?: boolean): number;
  nativeWorkspaceBytes(): number;
  nativeMemoryCached(): number;
  releaseCachedMemory(): number;
  setCacheLimit(bytes: number): void;
  setHugePages(on: boolean): void;
  blockCacheStats(): BlockCacheStats;
  tables(): { errorCodes: string[]; dtypes: Array<{ name: string; size: number }> };
  gemm(options: NativeGemmOptions): Promise<void>;
  /** `config`: the model config with the native rope, tensor-parallel and LoRA fields (lib/engine/model.ts) */
  NativeModel: new (config: object) => NativeModel;
  NativeGenerationSession: new (model: NativeModel, options: object) => NativeGenerationSession;
  NativeAdamW: new (
    target: { params: Float32Array; grads: Float32Array; segments?: AdamWSegment[] } | NativeModel,
    options?: NativeAdamWOptions,
    shard?: { index: number; count: number },
  ) => NativeAdamW;
  bench: {
    gemm(options: NativeGemmOptions, repeats: number): Promise<number[]>;
    adamw(options: {
      params: Float32Array;
      grads: Float32Array;
      m: Float32Array;
      v: Float32Array;
      lr?: number;
      weightDecay?: number;
      maxGradNorm?: number;
      repeats: number;
    }): Promise<number[]>;
    copy(options: { src: Float32Array; dst: Float32Array; repeats: number }): Promise<number[]>;
    scaleInPlace(options: { x: Float32Array; repeats: number }): Promise<number[]>;
    /** FMA loop on every pool thread: flops per repeat, the time of each repeat. */
    fmaPeak(options: {
      iterations: number;
      repeats: number;
    }): Promise<{ ms: number[]; flops: number; threads: number; simd: string }>;
  };
  /** Policy-gradient kernels (native/cpu/pg_losses.h), synchronous; validated by lib/engine/pg.ts. */
  pg: NativePg;
  /** Open MPI process group (native/core/mpi.h, native/napi/mpi_binding.cc); lib/distributed wraps it. */
  mpiInfo(): { loadable: boolean; launched: boolean; library: string; error: string };
  /** NCCL (native/core/nccl.h): found or not, and what the addon declares of its ABI. */
  ncclInfo(): { loadable: boolean; library: string; error: string; version: number };
  ncclAbi(): {
    uniqueIdBytes: number;
    success: number;
    inProgress: number;
    float32: number;
    float64: number;
    sum: number;
    max: number;
    symbols: string[];
  };
  mpiInit(tensorParallel?: number): {
    rank: number;
    size: number;
    worldRank: number;
    worldSize: number;
    tensorParallelRank: number;
    tensorParallelSize: number;
  };
  /** comm: the data-parallel group (default), this rank's tensor-parallel group, or the whole job */
  mpiAllReduce<T extends Float32Array | Float64Array>(x: T, op: 'sum' | 'max', comm?: 'data' | 'tensor' | 'world'): T;
  mpiAllGather(x: Float32Array, comm?: 'data' | 'tensor' | 'world'): Float32Array;
  mpiBroadcast<T extends Float32Array | Float64Array | Uint8Array | Int32Array>(
    x: T,
    root: number,
    comm?: 'data' | 'tensor' | 'world',
  ): T;
  mpiBarrier(comm?: 'data' | 'tensor' | 'world'): void;
  mpiAbort(): void;
  mpiAllReduceGradients(target: object, bucketBytes?: number): Promise<void>;
  mpiBroadcastParameters(target: object, root: number): Promise<void>;
  mpiAllGatherParameters(target: object, offsets: number[]): Promise<void>;
}

/** The four sequence log-prob arrays of N preference pairs. */
export interface NativePairInputs {
  policyChosen: Float32Array;
  policyRejected: Float32Array;
  refChosen: Float32Array;
  refRejected: Float32Array;
}

export interface NativePairResult {
  loss: number;
  dPolicyChosen: Float32Array;
  dPolicyRejected: Float32Array;
  rewardsChosen: Float32Array;
  rewardsRejected: Float32Array;
  accuracy: number;
  margin: number;
}

/** The `pg` namespace of the addon: O(n) kernels over Float32Arrays (masks are 0/1 floats). */
export interface NativePg {
  klPerToken(options: {
    logp: Float32Array;
    refLogp: Float32Array;
    mask?: Float32Array;
    estimator: 'k1' | 'k2' | 'k3';
  }): {
    kl: Float32Array;
    dLogp: Float32Array;
  };
  tokenRewards(options: {
    score: Float32Array;
    kl: Float32Array;
    klCoef: number;
    mask: Float32Array;
    batch: number;
    seqLen: number;
    clipScore?: number;
  }): { rewards: Float32Array };
  gae(options: {
    rewards: Float32Array;
    values: Float32Array;
    mask: Float32Array;
    batch: number;
    seqLen: number;
    gamma: number;
    lambda: number;
  }): { advantages: Float32Array; returns: Float32Array };
  ppoPolicyLoss(options: {
    logp: Float32Array;
    oldLogp: Float32Array;
    advantages: Float32Array;
    mask: Float32Array;
    weights?: Float64Array;
    clipEps: number;
    clipEpsHigh?: number;
    dualClip?: number;
  }): { loss: number; dLogp: Float32Array; clipFraction: number; dualClipFraction: number; approxKl: number };
  aggregationWeights(options: {
    mask: Float32Array;
    batch: number;
    seqLen: number;
    aggregation: 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum' | 'seq-mean-token-sum-norm';
    lengthNormalizer?: number;
  }): { weights: Float64Array };
  gspoPolicyLoss(options: {
    logp: Float32Array;
    oldLogp: Float32Array;
    advantages: Float32Array;
    mask: Float32Array;
    weights?: Float64Array;
    batch: number;
    seqLen: number;
    clipEps: number;
    clipEpsHigh?: number;
  }): { loss: number; dLogp: Float32Array; clipFraction: number; approxKl: number };
  entropyBonus(options: { entropy: Float32Array; mask: Float32Array; weights?: Float64Array; coef: number }): {
    loss: number;
    dEntropy: Float32Array;
    meanEntropy: number;
  };
  klLoss(options: {
    logp: Float32Array;
    refLogp: Float32Array;
    mask: Float32Array;
    weights?: Float64Array;
    estimator: 'k1' | 'k2' | 'k3';
    coef: number;
  }): {
    loss: number;
    dLogp: Float32Array;
    meanKl: number;
  };
  ppoValueLoss(options: {
    values: Float32Array;
    oldValues: Float32Array;
    returns: Float32Array;
    mask: Float32Array;
    clipEps?: number;
  }): { loss: number; dValues: Float32Array; clipFraction: number };
  dpoLoss(
    options: NativePairInputs & { beta: number; labelSmoothing?: number; variant?: 'dpo' | 'ipo' },
  ): NativePairResult;
  exoPrefLoss(
    options: NativePairInputs & { beta: number; epsilon?: number; form?: 'trl' | 'official' },
  ): NativePairResult & {
    pChosen: Float32Array;
  };
  exoRwLoss(options: {
    policy: Float32Array;
    ref: Float32Array;
    rewards: Float32Array;
    groupSize: number;
    betaPi: number;
    betaR: number;
  }): { loss: number; dPolicy: Float32Array; p: Float32Array; q: Float32Array; groupKl: Float32Array };
}

/** The package root: the nearest folder above this module whose package.json is named "rlhf"
 * (lib/ under ts-node, dist/ when installed, or a compiled copy elsewhere in the tree). */
export const packageRoot = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

function findPackageRoot(start: string): string {
  for (let dir = start; ;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, 'utf8')).name === 'rlhf') return dir;
      } catch {
        // unreadable package.json: keep looking upwards
      }
    }
    const up = dirname(dir);
    if (up === dir) return join(start, '..');
    dir = up;
  }
}

const require = createRequire(import.meta.url);

function load(): NativeBinding {
  const tried: string[] = [];
  const attempt = (path: string): NativeBinding | undefined => {
    try {
      return require(path) as NativeBinding;
    } catch (err) {
      tried.push(`  ${path}: ${(err as Error).message.split('\n')[0]}`);
      return undefined;
    }
  };
  const fromEnv = process.env.RLHF_ADDON;
  if (fromEnv) {
    const b = attempt(fromEnv);
    if (b) return b;
  }
  const cmakeBuild = join(packageRoot, 'build-cmake', 'Release', 'rlhf.node');
  if (existsSync(cmakeBuild)) {
    const b = attempt(cmakeBuild);
    if (b) return b;
  }
  try {
    const bindings = require('bindings') as (opts: { bindings: string; module_root: string }) => NativeBinding;
    const b = bindings({ bindings: 'rlhf', module_root: packageRoot });
    // `bindings` records the file it loaded as an extra `path` property on the exports: not ours
    delete (b as unknown as Record<string, unknown>).path;
    return b;
  } catch (err) {
    const e = err as Error & { tries?: string[] };
    for (const t of e.tries ?? [e.message.split('\n')[0]]) tried.push(`  ${t}`);
  }
  throw new Error(
    [
      'rlhf: could not load the native addon. Tried:',
      ...tried,
      'To fix it:',
      '  - build the CPU addon: `npm rebuild rlhf` (or `npx node-gyp rebuild` in the package folder);',
      '    it needs python3, make and a C++17 compiler;',
      '  - for CUDA, install the CUDA toolkit (nvcc) and run `npm run build:cmake`;',
      `  - check that this Node.js (${process.version}, ABI ${process.versions.modules}) is the one the addon was built for;`,
      '  - or point RLHF_ADDON at a built rlhf.node.',
    ].join('\n'),
  );
}

let cached: NativeBinding | undefined;

/** The loaded addon (loaded on first use). */
export function native(): NativeBinding {
  if (!cached) {
    cached = load();
    // coded native failures (ERR_RLHF_BUSY, ERR_RLHF_OUT_OF_MEMORY, ...) are created as RlhfError
    cached.setErrorClass(RlhfError as unknown as new (code: string, message: string) => Error);
  }
  return cached;
}
