// Choosing the next token from one row of logits z (V), given a uniform u in [0, 1) (Philox, so a
// row's draw depends only on (seed, row, step)).
//   temperature == 0: greedy, the first index of the maximum;
//   else p ∝ exp(z/temperature) restricted to the top_k largest (top_k > 0) and then to the smallest
//   prefix, in decreasing probability, whose mass reaches top_p (top_p < 1); inverse CDF with u.
// Ties order by index, so the choice is a pure function of (z, params, u).
#pragma once
#include <cstdint>
#include <vector>

namespace rlhf {
namespace cpu {

struct SamplingParams {
  float temperature = 1.0f;  // >= 0
  int64_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // in (0, 1]; 1: off
};

int32_t sample_token(const float* z, int64_t V, const SamplingParams& params, float u);

}  // namespace cpu
}  // namespace rlhf
