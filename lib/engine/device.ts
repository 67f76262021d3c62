/**
 * Devices and process-level settings: what the addon was built with, the CPU thread count, and
 * which devices can run here.
 */
import { native, type BlockCacheStats, type BuildInfo } from '../native.js';
import { checkBoolean, checkInt } from '../validate.js';

export type DeviceName = 'cpu' | 'cuda';

/** What the loaded addon was built with: version, backends, SIMD level, CUDA architectures, threads. */
export function buildInfo(): BuildInfo {
  return native().buildInfo();
}

/**
 * Sets the CPU thread count used by every native kernel (default: `RLHF_THREADS`, else the number
 * of cores). Results are deterministic for a fixed count. Refused while native calls are running.
 */
export function setThreads(n: number): void {
  checkInt('setThreads', 'n', n, { min: 1, max: 1024 });
  native().setThreads(n);
}

/** Devices a Model can run on here (`Model.create/load(…, {device})`), with the reason for each one that cannot. */
export function availableDevices(): { device: DeviceName; available: boolean; reason?: string }[] {
  const info = buildInfo();
  const cuda = info.modelDevices.includes('cuda');
  return [
    { device: 'cpu', available: true },
    {
      device: 'cuda',
      available: cuda,
      reason: cuda ? undefined : (info.cudaBackendUnavailableReason ?? info.cudaUnavailableReason ?? 'no CUDA device'),
    },
  ];
}

/** Bytes held by native buffers (parameters, optimizer moments, activations). */
export function nativeMemoryInUse(): number {
  return native().nativeMemoryInUse();
}

/**
 * The most bytes native buffers held at once since the last reset (`reset: true` returns it and
 * starts again from what is in use now): a training step's real engine peak, transients included.
 */
export function nativeMemoryPeak(opts: { reset?: boolean } = {}): number {
  return native().nativeMemoryPeak(opts.reset === true);
}

/**
 * Bytes of the kernels' thread-local workspaces (GEMM packing, attention rows): each thread grows
 * its own to the largest blocks it has needed and keeps it (a few MiB per thread at most); part of
 * nativeMemoryInUse.
 */
export function nativeWorkspaceBytes(): number {
  return native().nativeWorkspaceBytes();
}

/**
 * Bytes of freed large buffers (1 MiB and more) that the engine keeps for reuse instead of
 * returning them to the OS: the next training step takes its activations from there without page
 * faults. Not part of nativeMemoryInUse; at most the cache limit (setCacheLimit).
 */
export function nativeMemoryCached(): number {
  return native().nativeMemoryCached();
}

/** Returns every cached block to the OS (what `model.releaseMemory()` also does); returns the bytes freed. */
export function releaseCachedMemory(): number {
  return native().releaseCachedMemory();
}

/**
 * The most bytes the cache of freed buffers may hold (default: `RLHF_CACHE_LIMIT_MB` MiB, else
 * 1024 MiB); blocks beyond it go back to the OS, least recently freed first. 0 disables the cache.
 */
export function setCacheLimit(bytes: number): void {
  checkInt('setCacheLimit', 'bytes', bytes, { min: 0, max: Number.MAX_SAFE_INTEGER });
  native().setCacheLimit(bytes);
}

/**
 * Whether large buffers mapped from now on ask for transparent huge pages (madvise
 * MADV_HUGEPAGE, 2 MiB aligned). Default: on unless `RLHF_HUGEPAGES=0`.
 */
export function setHugePages(on: boolean): void {
  checkBoolean('setHugePages', 'on', on);
  native().setHugePages(on);
}

/** The block cache's limit, contents and OS call counters (maps/unmaps/hits/misses since start). */
export function nativeMemoryStats(): BlockCacheStats {
  return native().blockCacheStats();
}
