#include "geglu.h"

#include <cmath>

#include "../core/thread_pool.h"

namespace rlhf {
namespace cpu {

namespace {
constexpr float kSqrt2OverPi = 0.7978845608028654f, kCubic = 0.044715f;

void geglu_row(float* a, const float* g, const float* u, int F) {
  for (int j = 0; j < F; ++j) {
    const float x = g[j], t = std::tanh(kSqrt2OverPi * (x + kCubic * x * x * x));
    a[j] = (0.5f * x * (1.0f + t)) * u[j];
  }
}

void geglu_row_backward(float* dg, float* du, const float* da, const float* g, const float* u, int F) {
  for (int j = 0; j < F; ++j) {
    const float x = g[j], t = std::tanh(kSqrt2OverPi * (x + kCubic * x * x * x));
    const float gelu = 0.5f * x * (1.0f + t);
    const float dgelu = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
    du[j] = da[j] * gelu;
    dg[j] = (da[j] * u[j]) * dgelu;
  }
}
}  // namespace

void geglu_forward(float* a, const float* gu, int64_t N, int F) {
  parallel_for(N, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) geglu_row(a + r * F, gu + r * 2 * F, gu + r * 2 * F + F, F);
  });
}

void geglu_backward(float* dgu, const float* da, const float* gu, int64_t N, int F) {
  parallel_for(N, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r)
      geglu_row_backward(dgu + r * 2 * F, dgu + r * 2 * F + F, da + r * F, gu + r * 2 * F, gu + r * 2 * F + F, F);
  });
}

double gelu_tanh_reference(double g) {
  return 0.5 * g * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g)));
}

}  // namespace cpu
}  // namespace rlhf
