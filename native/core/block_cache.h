// Caching allocator for large buffers (activations and their gradients, scratch, workspaces, KV
// caches): blocks of at least kCachedBlockMin bytes are mapped from the OS once and, when freed,
// kept in a cache of size classes for the next request of that class instead of being unmapped.
// A training step then reuses the previous step's blocks (no page faults, no kernel zero-fill).
//
// Size classes: a request is rounded up to 4 classes per power of two (≤ 25% over; the untouched
// tail of a block costs no memory), and in huge-page mode to a multiple of 2 MiB. A request is
// served by the smallest cached block of at least its class and at most twice it.
//
// The cache holds at most cache_limit() bytes (env RLHF_CACHE_LIMIT_MB, default 1024 MiB;
// set_cache_limit): a block freed past the limit evicts the least recently freed blocks first (or
// itself). release_cached_blocks() unmaps every cached block; a mapping that fails releases the
// cache and tries once more. All functions are thread-safe (tensor-parallel ranks are threads).
//
// Contents: a block from the OS is zero; a reused block holds what its last owner wrote, so
// acquire_block(bytes, zero = true) clears the first `bytes` of a reused block itself.
//
// Huge pages: blocks are madvise(MADV_HUGEPAGE)d and 2 MiB aligned unless RLHF_HUGEPAGES=0 (or
// set_huge_pages(false)); with transparent_hugepage=madvise that takes the kernel's 2 MiB pages.
//
// Debug: RLHF_CACHE_POISON=1 fills every block handed out with zero = false with 0xFF bytes
// (NaN floats), fresh or reused, so code that relies on memory it did not write shows up.
#pragma once
#include <cstddef>
#include <cstdint>

namespace rlhf {

constexpr size_t kCachedBlockMin = size_t(1) << 20;  // smaller buffers go through malloc

// The size class of a request (bytes >= kCachedBlockMin): what acquire_block maps for it.
size_t block_class(size_t bytes);

// A block of at least `bytes` bytes (page aligned); *capacity receives its mapped size, which
// release_block needs back. Throws Error(OutOfMemory) when the OS has no memory left.
void* acquire_block(size_t bytes, bool zero, size_t* capacity);
// Returns a block to the cache (or to the OS past the limit).
void release_block(void* p, size_t capacity);

// Unmaps every cached block; returns the bytes returned to the OS.
int64_t release_cached_blocks();
int64_t cached_block_bytes();  // bytes held by the cache now (mapped sizes)

void set_cache_limit(int64_t bytes);  // >= 0; evicts at once down to it
int64_t cache_limit();

void set_huge_pages(bool on);  // for blocks mapped from now on
bool huge_pages();

struct BlockCacheStats {
  int64_t maps = 0, unmaps = 0;  // calls to the OS since start
  int64_t hits = 0, misses = 0;  // acquire_block served from the cache / by a new mapping
  int64_t mapped_bytes = 0;      // bytes mapped now (in use + cached)
};
BlockCacheStats block_cache_stats();

}  // namespace rlhf
