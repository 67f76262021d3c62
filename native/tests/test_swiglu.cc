// SwiGLU forward against std::exp, backward by finite differences; exp_approx accuracy and the
// special values softmax relies on (exp(−inf) = 0, NaN propagates); its AVX-512 form bit for bit.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../core/cpu_features.h"

#include "../cpu/swiglu.h"
#include "../cpu/vmath.h"
#include "../cpu/vmath_avx512.h"
#include "fd.h"

using namespace rlhf;
using namespace rlhf_test;

TEST(exp_approx_accuracy_and_special_values) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.0137) {
    const float xf = static_cast<float>(x);
    double r = std::exp(static_cast<double>(xf));  // exact exp of the fp32 input
    worst = std::max(worst, std::fabs(cpu::exp_approx(xf) - r) / r);
  }
  CHECK(worst < 4e-7);
  CHECK(cpu::exp_approx(-INFINITY) == 0.0f);
  CHECK(cpu::exp_approx(-200.0f) == 0.0f);
  CHECK(std::isinf(cpu::exp_approx(100.0f)));
  CHECK(std::isnan(cpu::exp_approx(NAN)));
  CHECK(cpu::exp_approx(0.0f) == 1.0f);
}

// exp_approx16 lane by lane against the scalar exp_approx: every clamp and special value, the
// edges of the ranges and a dense sweep (bitwise, NaN as NaN).
RLHF_VMATH_AVX512 void exp16(const float* x, float* y) { _mm512_storeu_ps(y, cpu::exp_approx16(_mm512_loadu_ps(x))); }

TEST(exp_approx16_equals_scalar_bitwise) {
  if (simd_level() != SimdLevel::Avx512) return;  // no AVX-512 on this CPU
  std::vector<float> xs = {
      0.0f,     -0.0f,  INFINITY, -INFINITY, NAN,     -NAN,   88.3f,   88.72f,
      88.7228f, 88.75f, -87.3f,   -87.31f,   -87.29f, 1e-30f, -1e-30f, std::numeric_limits<float>::denorm_min(),
      1e30f,    -1e30f};
  for (double x = -100.0; x <= 100.0; x += 0.00731) xs.push_back(static_cast<float>(x));
  auto r = random_vec(4096, 5, -90.0f, 90.0f);
  xs.insert(xs.end(), r.begin(), r.end());
  while (xs.size() % 16) xs.push_back(0.5f);
  int bad = 0;
  for (size_t i = 0; i < xs.size(); i += 16) {
    float y[16];
    exp16(&xs[i], y);
    for (int l = 0; l < 16; ++l) {
      const float e = cpu::exp_approx(xs[i + l]);
      if (std::memcmp(&e, &y[l], 4) != 0 && !(std::isnan(e) && std::isnan(y[l]))) ++bad;
    }
  }
  CHECK(bad == 0);
}

TEST(swiglu_forward_and_backward) {
  const int64_t N = 5;
  const int F = 33;
  auto gu = random_vec(N * 2 * F, 11, -4, 4), da = random_vec(N * F, 12);
  std::vector<float> a(N * F), dgu(N * 2 * F);
  cpu::swiglu_forward(a.data(), gu.data(), N, F);
  for (int64_t r = 0; r < N; ++r)
    for (int j = 0; j < F; ++j) {
      double g = gu[r * 2 * F + j], u = gu[r * 2 * F + F + j];
      CHECK_NEAR(a[r * F + j], g / (1 + std::exp(-g)) * u, 1e-6, 1e-5);
    }
  cpu::swiglu_backward(dgu.data(), da.data(), gu.data(), N, F);
  auto loss = [&](const std::vector<float>& x) {
    std::vector<float> o(N * F);
    cpu::swiglu_forward(o.data(), x.data(), N, F);
    return dot(o, da);
  };
  CHECK(fd_check(loss, gu, dgu, 60, 1e-3, 1e-3, 2e-3, "swiglu"));
}

int main() { return run_all_tests(); }
