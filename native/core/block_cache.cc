#include "block_cache.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "error.h"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define RLHF_BLOCK_MMAP 1
#endif

namespace rlhf {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;

int64_t limit_from_environment() {
  const char* env = std::getenv("RLHF_CACHE_LIMIT_MB");
  if (env && *env) {
    char* end = nullptr;
    const long long mb = std::strtoll(env, &end, 10);
    if (end && *end == '\0' && mb >= 0 && mb <= (int64_t(1) << 40)) return static_cast<int64_t>(mb) << 20;
    // a bad value is ignored (the default stays); cacheLimit() reports the limit in force
  }
  return int64_t(1024) << 20;
}

bool flag_from_environment(const char* name, bool fallback) {
  const char* env = std::getenv(name);
  if (!env || !*env) return fallback;
  return !(std::strcmp(env, "0") == 0 || std::strcmp(env, "false") == 0 || std::strcmp(env, "off") == 0);
}

struct Entry {
  void* p;
  size_t capacity;
};

struct Cache {
  std::mutex mu;
  std::vector<Entry> free;  // least recently freed first
  int64_t cached = 0;
  int64_t limit = limit_from_environment();
  bool huge = flag_from_environment("RLHF_HUGEPAGES", true);
  bool poison = flag_from_environment("RLHF_CACHE_POISON", false);
  BlockCacheStats stats;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: buffers may be freed during static destruction
  return *c;
}

void unmap(Cache& c, void* p, size_t capacity) {
#ifdef RLHF_BLOCK_MMAP
  munmap(p, capacity);
#else
  std::free(p);
#endif
  c.stats.unmaps += 1;
  c.stats.mapped_bytes -= static_cast<int64_t>(capacity);
}

// Unmaps the least recently freed blocks until the cache holds at most `target` bytes. mu held.
void evict_to(Cache& c, int64_t target) {
  size_t n = 0;
  while (n < c.free.size() && c.cached > target) {
    unmap(c, c.free[n].p, c.free[n].capacity);
    c.cached -= static_cast<int64_t>(c.free[n].capacity);
    ++n;
  }
  c.free.erase(c.free.begin(), c.free.begin() + static_cast<std::ptrdiff_t>(n));
}

// A fresh mapping of `capacity` bytes, 2 MiB aligned and marked for huge pages when `huge`;
// null when the OS refuses. mu held (only for the statistics).
void* map_block(Cache& c, size_t capacity, bool huge) {
#ifdef RLHF_BLOCK_MMAP
  const size_t extra = huge ? kHugePage : 0;
  void* raw = mmap(nullptr, capacity + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  char* p = static_cast<char*>(raw);
  if (huge) {  // trim to a 2 MiB aligned range of `capacity` bytes
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const size_t head = static_cast<size_t>(((a + kHugePage - 1) & ~uintptr_t(kHugePage - 1)) - a);
    if (head) munmap(p, head);
    if (extra - head) munmap(p + head + capacity, extra - head);
    p += head;
#ifdef MADV_HUGEPAGE
    madvise(p, capacity, MADV_HUGEPAGE);
#endif
  }
#else
  (void)huge;
  void* p = std::aligned_alloc(4096, capacity);
  if (!p) return nullptr;
  std::memset(p, 0, capacity);
#endif
  c.stats.maps += 1;
  c.stats.mapped_bytes += static_cast<int64_t>(capacity);
  return p;
}

size_t class_of(size_t bytes, bool huge) {
  // 4 classes per power of two: the top three bits of the size, rounded up
  int shift = 0;
  while ((bytes - 1) >> shift >= 8) ++shift;
  size_t cls = (((bytes - 1) >> shift) + 1) << shift;
  if (huge && cls >= kHugePage) cls = (cls + kHugePage - 1) / kHugePage * kHugePage;
  return (cls + 4095) / 4096 * 4096;
}

}  // namespace

size_t block_class(size_t bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return class_of(bytes, c.huge);
}

void* acquire_block(size_t bytes, bool zero, size_t* capacity) {
  Cache& c = cache();
  void* p = nullptr;
  bool reused = false, poison;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    poison = c.poison;
    const size_t cls = class_of(bytes, c.huge);
    size_t best = c.free.size();
    for (size_t i = 0; i < c.free.size(); ++i) {  // smallest fit; among equals the most recently freed
      const size_t cap = c.free[i].capacity;
      if (cap >= cls && cap <= 2 * cls && (best == c.free.size() || cap <= c.free[best].capacity)) best = i;
    }
    if (best < c.free.size()) {
      p = c.free[best].p;
      *capacity = c.free[best].capacity;
      c.cached -= static_cast<int64_t>(*capacity);
      c.free.erase(c.free.begin() + static_cast<std::ptrdiff_t>(best));
      c.stats.hits += 1;
      reused = true;
    } else {
      const bool huge = c.huge && cls >= kHugePage;
      p = map_block(c, cls, huge);
      if (!p && c.cached > 0) {  // out of memory: give the cache back and try once more
        evict_to(c, 0);
        p = map_block(c, cls, huge);
      }
      RLHF_CHECK(p != nullptr, ErrorCode::OutOfMemory, "could not allocate ", bytes, " bytes");
      *capacity = cls;
      c.stats.misses += 1;
    }
  }
  if (poison && !zero)
    std::memset(p, 0xFF, bytes);
  else if (reused && zero)
    std::memset(p, 0, bytes);
  return p;
}

void release_block(void* p, size_t capacity) {
  if (!p) return;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (static_cast<int64_t>(capacity) > c.limit) return unmap(c, p, capacity);
  evict_to(c, c.limit - static_cast<int64_t>(capacity));
  c.free.push_back({p, capacity});
  c.cached += static_cast<int64_t>(capacity);
}

int64_t release_cached_blocks() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  const int64_t before = c.cached;
  evict_to(c, 0);
  return before;
}

int64_t cached_block_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
}

void set_cache_limit(int64_t bytes) {
  RLHF_CHECK(bytes >= 0, ErrorCode::OutOfRange, "cache limit must be >= 0 bytes, got ", bytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.limit = bytes;
  evict_to(c, bytes);
}

int64_t cache_limit() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.limit;
}

void set_huge_pages(bool on) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.huge = on;
}

bool huge_pages() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.huge;
}

BlockCacheStats block_cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

}  // namespace rlhf
