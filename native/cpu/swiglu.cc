#include "swiglu.h"

#include "../core/thread_pool.h"
#include "vmath.h"

namespace rlhf {
namespace cpu {

namespace {
__attribute__((target_clones("avx512f", "avx2", "default"))) void swiglu_row(float* __restrict a,
                                                                             const float* __restrict g,
                                                                             const float* __restrict u, int F) {
  for (int j = 0; j < F; ++j) {
    float sig = 1.0f / (1.0f + exp_approx(-g[j]));
    a[j] = (g[j] * sig) * u[j];
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void swiglu_row_backward(
    float* __restrict dg, float* __restrict du, const float* __restrict da, const float* __restrict g,
    const float* __restrict u, int F) {
  for (int j = 0; j < F; ++j) {
    float sig = 1.0f / (1.0f + exp_approx(-g[j]));
    float silu = g[j] * sig;
    du[j] = da[j] * silu;
    dg[j] = (da[j] * u[j]) * (sig * (1.0f + g[j] * (1.0f - sig)));
  }
}
}  // namespace

void swiglu_forward(float* a, const float* gu, int64_t N, int F) {
  parallel_for(N, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) swiglu_row(a + r * F, gu + r * 2 * F, gu + r * 2 * F + F, F);
  });
}

void swiglu_backward(float* dgu, const float* da, const float* gu, int64_t N, int F) {
  parallel_for(N, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r)
      swiglu_row_backward(dgu + r * 2 * F, dgu + r * 2 * F + F, da + r * F, gu + r * 2 * F, gu + r * 2 * F + F, F);
  });
}

}  // namespace cpu
}  // namespace rlhf
