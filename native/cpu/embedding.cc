#include "embedding.h"

#include <cstring>

#include "../core/thread_pool.h"

namespace rlhf {
namespace cpu {

void embedding_forward(float* x, const float* E, const int32_t* tokens, int64_t N, int64_t V, int C,
                       int64_t vocab_begin) {
  parallel_for(N, 64, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      int64_t id = static_cast<int64_t>(tokens[r]) - vocab_begin;
      if (id >= 0 && id < V)
        std::memcpy(x + r * C, E + id * C, sizeof(float) * C);
      else
        std::memset(x + r * C, 0, sizeof(float) * C);
    }
  });
}

void embedding_backward(float* dE, const float* dx, const int32_t* tokens, int64_t N, int64_t V, int C,
                        int64_t vocab_begin) {
  const int threads = current_pool().size();
  current_pool().run([&](int t) {
    int64_t lo, hi;
    split_range(V, threads, t, &lo, &hi);
    for (int64_t r = 0; r < N; ++r) {
      int64_t id = static_cast<int64_t>(tokens[r]) - vocab_begin;
      if (id < lo || id >= hi) continue;
      float* dst = dE + id * C;
      const float* src = dx + r * C;
      for (int c = 0; c < C; ++c) dst[c] += src[c];
    }
  });
}

}  // namespace cpu
}  // namespace rlhf
