// Token embedding lookup. E: (V, C) row-major; tokens: (N) ids in [vocab_begin, vocab_begin + V)
// are looked up, others (a different vocab shard under tensor parallelism) give zeros.
#pragma once
#include <cstdint>

namespace rlhf {
namespace cpu {

// x (N, C): overwrite.
void embedding_forward(float* x, const float* E, const int32_t* tokens, int64_t N, int64_t V, int C,
                       int64_t vocab_begin = 0);

// dE[tokens[r] − vocab_begin] += dx[r] (ACCUMULATES). Threads own disjoint vocabulary ranges and
// visit rows in order, so repeated tokens sum in a fixed order (deterministic).
void embedding_backward(float* dE, const float* dx, const int32_t* tokens, int64_t N, int64_t V, int C,
                        int64_t vocab_begin = 0);

}  // namespace cpu
}  // namespace rlhf
