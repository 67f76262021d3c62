// Fused log-softmax + gather + entropy: against the double reference, gradients of logp and of
// the entropy by finite differences, target −1 rows, and huge/−inf logits; the AVX-512 and scalar
// log-sum-exp give the same bits.
#include <cmath>
#include <cstring>

#include "../core/cpu_features.h"
#include "../cpu/logsoftmax.h"
#include "fd.h"

using namespace rlhf;
using namespace rlhf_test;

TEST(logsoftmax_forward_matches_reference) {
  const int64_t N = 13, V = 1001;
  auto z = random_vec(N * V, 21, -8, 8);
  std::vector<int32_t> tg(N);
  for (int64_t r = 0; r < N; ++r) tg[r] = (r * 97) % V;
  tg[4] = -1;
  std::vector<float> lp(N), en(N), lse(N), rlp(N), ren(N);
  cpu::logsoftmax_forward(lp.data(), en.data(), lse.data(), z.data(), V, tg.data(), N, V);
  cpu::logsoftmax_forward_reference(rlp.data(), ren.data(), z.data(), V, tg.data(), N, V);
  for (int64_t r = 0; r < N; ++r) {
    CHECK_NEAR(lp[r], rlp[r], 2e-5, 1e-5);
    CHECK_NEAR(en[r], ren[r], 2e-5, 1e-5);
  }
  CHECK(lp[4] == 0.0f && en[4] == 0.0f);
  std::vector<float> big(V, -INFINITY);  // one finite logit: logp 0, entropy 0
  big[7] = 1e4f;
  int32_t t7 = 7;
  float a, b, c;
  cpu::logsoftmax_forward(&a, &b, &c, big.data(), V, &t7, 1, V);
  CHECK(a == 0.0f && b == 0.0f && c == 1e4f);
}

// row_logsumexp (and its mean-logit sum) on the AVX-512 path against the compiler's scalar loops
// (RLHF's simd cap), bitwise: widths around multiples of 16, −inf entries, one huge logit.
TEST(row_logsumexp_same_bits_on_every_path) {
  unsigned seed = 70;
  for (int64_t V : {int64_t(1), int64_t(15), int64_t(16), int64_t(17), int64_t(1001), int64_t(4096)}) {
    auto z = random_vec(V, seed++, -3, 3);  // many terms of similar size: summation order shows
    if (V > 3) z[2] = -INFINITY;
    if (V == 17) z[V - 1] = 80.0f;
    float pz[2], l[2];
    for (int k = 0; k < 2; ++k) {
      set_simd_level_cap(k == 0 ? SimdLevel::Avx512 : SimdLevel::Scalar);
      l[k] = cpu::row_logsumexp(z.data(), V, &pz[k]);
    }
    set_simd_level_cap(SimdLevel::Avx512);
    CHECK(std::memcmp(&l[0], &l[1], 4) == 0);
    CHECK(std::memcmp(&pz[0], &pz[1], 4) == 0);
    CHECK_NEAR(l[0], l[1], 0.0, 0.0);
  }
}

TEST(logsoftmax_backward_matches_finite_differences) {
  const int64_t N = 4, V = 37;
  auto z = random_vec(N * V, 22, -3, 3), gl = random_vec(N, 23), ge = random_vec(N, 24);
  std::vector<int32_t> tg = {3, 0, 36, -1};
  std::vector<float> lp(N), en(N), lse(N), dz(N * V);
  cpu::logsoftmax_forward(lp.data(), en.data(), lse.data(), z.data(), V, tg.data(), N, V);
  cpu::logsoftmax_backward(dz.data(), V, z.data(), V, tg.data(), lse.data(), en.data(), gl.data(), ge.data(), N, V);
  auto loss = [&](const std::vector<float>& zz) {
    std::vector<float> l(N), e(N);
    cpu::logsoftmax_forward_reference(l.data(), e.data(), zz.data(), V, tg.data(), N, V);
    return dot(l, gl) + dot(e, ge);
  };
  CHECK(fd_check(loss, z, dz, 80, 1e-3, 2e-4, 2e-3, "logsoftmax dz"));
  for (int64_t j = 0; j < V; ++j) CHECK(dz[3 * V + j] == 0.0f);  // no-target row
  double rowsum = 0;  // Σ_j dlogp/dz_j = 0 for each row (softmax gradients sum to zero)
  for (int64_t j = 0; j < V; ++j) rowsum += dz[j];
  CHECK_NEAR(rowsum, 0.0, 1e-5, 0);
}

int main() { return run_all_tests(); }
