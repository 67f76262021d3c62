// GeGLU (tanh GELU): forward against the double reference (and against erf GELU, which it must
// not equal), backward by finite differences.
#include <cmath>

#include "../cpu/geglu.h"
#include "fd.h"

using namespace rlhf;
using namespace rlhf_test;

TEST(geglu_forward_and_backward) {
  const int64_t N = 5;
  const int F = 33;
  auto gu = random_vec(N * 2 * F, 21, -5, 5), da = random_vec(N * F, 22);
  std::vector<float> a(N * F), dgu(N * 2 * F);
  cpu::geglu_forward(a.data(), gu.data(), N, F);
  double erf_gap = 0;
  for (int64_t r = 0; r < N; ++r)
    for (int j = 0; j < F; ++j) {
      double g = gu[r * 2 * F + j], u = gu[r * 2 * F + F + j];
      CHECK_NEAR(a[r * F + j], cpu::gelu_tanh_reference(g) * u, 1e-6, 1e-5);
      erf_gap = std::max(erf_gap, std::fabs(a[r * F + j] - 0.5 * g * (1 + std::erf(g / std::sqrt(2.0))) * u));
    }
  CHECK(erf_gap > 1e-4);  // the tanh approximation, not erf
  CHECK_NEAR(cpu::gelu_tanh_reference(1.0), 0.8411919906082768, 0, 1e-12);
  cpu::geglu_backward(dgu.data(), da.data(), gu.data(), N, F);
  auto loss = [&](const std::vector<float>& x) {
    std::vector<float> o(N * F);
    cpu::geglu_forward(o.data(), x.data(), N, F);
    return dot(o, da);
  };
  CHECK(fd_check(loss, gu, dgu, 60, 1e-3, 1e-3, 2e-3, "geglu"));
}

int main() { return run_all_tests(); }
