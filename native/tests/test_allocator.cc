// native/core/block_cache: size classes, reuse without new mappings, the cache limit, release,
// exact accounting of Buffers (bytes requested, cache apart), zero-on-reuse, thread safety.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "../core/block_cache.h"
#include "../core/buffer.h"
#include "check.h"

using namespace rlhf;

namespace {
constexpr size_t MiB = size_t(1) << 20;

// Every test starts from an empty cache with a known limit and huge pages off (classes then
// depend on the size alone).
void reset(int64_t limit = int64_t(1) << 30) {
  set_huge_pages(false);
  set_cache_limit(limit);
  release_cached_blocks();
}
}  // namespace

TEST(size_classes_round_up_at_most_a_quarter) {
  reset();
  for (size_t bytes : {MiB, MiB + 1, 3 * MiB - 5, 10 * MiB + 12345, 100 * MiB + 1}) {
    const size_t c = block_class(bytes);
    CHECK(c >= bytes && c % 4096 == 0);
    CHECK(double(c) <= 1.25 * double(bytes) + 4096);
  }
  CHECK(block_class(MiB) == MiB);
  CHECK(block_class(9 * MiB) == 10 * MiB);  // classes 8, 10, 12, 14, 16 MiB
  CHECK(block_class(10 * MiB + 1) == 12 * MiB);
  CHECK(block_class(10 * MiB + 1) == block_class(11 * MiB));  // nearby sizes share a class
  set_huge_pages(true);
  CHECK(block_class(3 * MiB) == 4 * MiB && block_class(5 * MiB) == 6 * MiB);  // 2 MiB multiples
  set_huge_pages(false);
}

TEST(freed_blocks_are_reused_without_mapping) {
  reset();
  const BlockCacheStats s0 = block_cache_stats();
  void* first;
  {
    Buffer a(20 * MiB, false);
    first = a.data();
  }
  CHECK(cached_block_bytes() == int64_t(block_class(20 * MiB)));
  const BlockCacheStats s1 = block_cache_stats();
  CHECK(s1.maps == s0.maps + 1 && s1.unmaps == s0.unmaps);
  for (int step = 0; step < 5; ++step) {  // a "training step": same sizes again, a little different
    Buffer b(20 * MiB - 4096 * step, false);
    CHECK(b.data() == first);
    CHECK(cached_block_bytes() == 0);
  }
  const BlockCacheStats s2 = block_cache_stats();
  CHECK(s2.maps == s1.maps && s2.unmaps == s1.unmaps && s2.hits == s1.hits + 5);
  // a request twice the class or more does not take a much smaller block, nor the reverse
  {
    Buffer big(50 * MiB, false);
    CHECK(big.data() != first);
  }
  {
    Buffer small(2 * MiB, false);
    CHECK(small.data() != first);
  }
  CHECK(block_cache_stats().maps == s2.maps + 2);
}

TEST(accounting_counts_requested_bytes_only) {
  reset();
  const int64_t before = buffer_bytes_in_use();
  buffer_bytes_peak(true);
  {
    Buffer a(5 * MiB + 3, false);
    CHECK(buffer_bytes_in_use() == before + int64_t(5 * MiB + 3));
  }
  CHECK(buffer_bytes_in_use() == before);  // cached, but not in use
  CHECK(cached_block_bytes() == int64_t(block_class(5 * MiB + 3)));
  CHECK(buffer_bytes_peak(false) == before + int64_t(5 * MiB + 3));
  Buffer b(5 * MiB + 1, false);  // reuses it
  CHECK(buffer_bytes_in_use() == before + int64_t(5 * MiB + 1) && cached_block_bytes() == 0);
}

TEST(zero_on_reuse_when_asked) {
  reset();
  const size_t n = 3 * MiB / sizeof(float) + 7;
  {
    Buffer a(n * sizeof(float), false);
    std::fill(a.as<float>(), a.as<float>() + n, 3.0f);
  }
  Buffer z(n * sizeof(float), true);  // the same block, dirty: cleared for this owner
  CHECK(block_cache_stats().hits > 0);
  bool zero = true;
  for (size_t i = 0; i < n; ++i) zero = zero && z.as<float>()[i] == 0.0f;
  CHECK(zero);
}

TEST(limit_evicts_least_recently_freed_first) {
  reset(40 * MiB);
  const BlockCacheStats s0 = block_cache_stats();
  {
    Buffer a(16 * MiB, false), b(16 * MiB, false), c(16 * MiB, false);
  }  // freed c, b, a: 48 MiB > 40: the first freed (c) goes back to the OS
  CHECK(cached_block_bytes() == int64_t(32 * MiB));
  CHECK(block_cache_stats().unmaps == s0.unmaps + 1);
  { Buffer huge(64 * MiB, false); }  // alone past the limit: unmapped at once
  CHECK(cached_block_bytes() == int64_t(32 * MiB) && block_cache_stats().unmaps == s0.unmaps + 2);
  set_cache_limit(20 * MiB);  // lowering the limit evicts down to it
  CHECK(cached_block_bytes() == int64_t(16 * MiB));
  set_cache_limit(0);  // 0: no cache at all
  CHECK(cached_block_bytes() == 0);
  { Buffer d(8 * MiB, false); }
  CHECK(cached_block_bytes() == 0 && block_cache_stats().mapped_bytes == s0.mapped_bytes);
  reset();
}

TEST(release_returns_everything_to_the_os) {
  reset();
  const int64_t mapped0 = block_cache_stats().mapped_bytes;
  { Buffer a(12 * MiB, false), b(3 * MiB, false); }
  const int64_t held = cached_block_bytes();
  CHECK(held == int64_t(block_class(12 * MiB) + block_class(3 * MiB)));
  CHECK(block_cache_stats().mapped_bytes == mapped0 + held);
  CHECK(release_cached_blocks() == held);
  CHECK(cached_block_bytes() == 0 && block_cache_stats().mapped_bytes == mapped0);
}

TEST(huge_page_blocks_are_2mib_aligned) {
  reset();
  set_huge_pages(true);
  {
    Buffer a(7 * MiB, true);
    CHECK(reinterpret_cast<uintptr_t>(a.data()) % (2 * MiB) == 0);
    a.as<char>()[7 * MiB - 1] = 1;  // writable to its end
  }
  reset();
}

TEST(threads_share_the_cache_safely) {
  reset();
  const int64_t before = buffer_bytes_in_use(), mapped0 = block_cache_stats().mapped_bytes;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([t] {
      for (int i = 0; i < 200; ++i) {
        Buffer b((2 + (i + t) % 5) * MiB, (i & 1) != 0);
        b.as<char>()[0] = char(t), b.as<char>()[b.bytes() - 1] = char(i);
      }
    });
  for (auto& t : ts) t.join();
  CHECK(buffer_bytes_in_use() == before);
  CHECK(block_cache_stats().mapped_bytes - mapped0 == cached_block_bytes());  // every block came back
  reset();
}

TEST(poison_fills_unzeroed_blocks_fresh_or_reused) {
  reset();
  for (int round = 0; round < 2; ++round) {  // fresh, then reused
    Buffer a(2 * MiB + 8, false);
    const unsigned char* p = a.as<unsigned char>();
    CHECK(p[0] == 0xFF && p[MiB] == 0xFF && p[2 * MiB + 7] == 0xFF);
    std::memset(a.data(), 0x11, a.bytes());
  }
  Buffer z(2 * MiB + 8, true);
  CHECK(z.as<unsigned char>()[0] == 0 && z.as<unsigned char>()[2 * MiB + 7] == 0);
}

int main() {
  setenv("RLHF_CACHE_POISON", "1", 1);  // read when the cache is first used (the first test)
  return rlhf_test::run_all_tests();
}
