// sgemm against the float64 reference: random shapes (odd sizes 1..300), every transpose pair,
// beta 0 / 1 / other, padded leading dimensions, every SIMD path, and thread-count invariance.
#include <cstring>
#include <random>
#include <vector>

#include "../core/cpu_features.h"
#include "../core/thread_pool.h"
#include "../cpu/gemm.h"
#include "check.h"

using namespace rlhf;

namespace {

struct Case {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
};

// Returns the max of |got - ref| / (1 + |ref|) * (1 / sqrt(K)) style error against tolerance;
// fp32 accumulation error grows like sqrt(K) eps·|a||b|, so the bound scales with K and magnitudes.
bool run_case(const Case& c, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  int64_t a_rows = c.ta ? c.K : c.M, b_rows = c.tb ? c.N : c.K;
  std::vector<float> A(a_rows * c.lda), B(b_rows * c.ldb), C(c.M * c.ldc), R;
  for (auto& x : A) x = u(rng);
  for (auto& x : B) x = u(rng);
  for (auto& x : C) x = u(rng);
  if (c.beta == 0.0f)  // beta = 0 must not read C: poison it
    for (auto& x : C) x = std::nanf("");
  R = C;
  cpu::sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda, B.data(), c.ldb, c.beta, C.data(), c.ldc);
  cpu::sgemm_reference(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda, B.data(), c.ldb, c.beta, R.data(), c.ldc);
  double tol = 1e-6 * (4.0 + static_cast<double>(c.K));  // |a|,|b| <= 1: |sum| <= K
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      double g = C[i * c.ldc + j], r = R[i * c.ldc + j];
      if (!(std::fabs(g - r) <= tol)) {
        std::printf("  mismatch ta=%d tb=%d M=%ld N=%ld K=%ld at (%ld,%ld): %g vs %g\n", c.ta, c.tb, (long)c.M,
                    (long)c.N, (long)c.K, (long)i, (long)j, g, r);
        return false;
      }
    }
    // padding columns of C beyond N are untouched
    for (int64_t j = c.N; j < c.ldc; ++j)
      if (std::memcmp(&C[i * c.ldc + j], &R[i * c.ldc + j], 4) != 0) {
        std::printf("  padding of C written at (%ld,%ld)\n", (long)i, (long)j);
        return false;
      }
  }
  return true;
}

void random_cases(int count, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> size(1, 300), pad(0, 5), coin(0, 1), pick(0, 2);
  for (int n = 0; n < count; ++n) {
    Case c;
    c.ta = coin(rng), c.tb = coin(rng);
    c.M = size(rng), c.N = size(rng), c.K = size(rng);
    if (n % 7 == 0) c.M = 1 + n % 3;  // tall-skinny / vector shapes
    if (n % 11 == 0) c.N = 1 + n % 2;
    c.lda = (c.ta ? c.M : c.K) + pad(rng);
    c.ldb = (c.tb ? c.K : c.N) + pad(rng);
    c.ldc = c.N + pad(rng);
    const float betas[] = {0.0f, 1.0f, -0.5f};
    c.beta = betas[pick(rng)];
    c.alpha = (n % 5 == 0) ? 0.75f : 1.0f;
    CHECK(run_case(c, rng));
  }
}

}  // namespace

TEST(gemm_random_shapes_best_simd) { random_cases(120, 1); }

TEST(gemm_random_shapes_avx2) {
  if (simd_level() < SimdLevel::Avx2) SKIP("CPU has no AVX2+FMA");
  set_simd_level_cap(SimdLevel::Avx2);
  random_cases(60, 2);
  set_simd_level_cap(SimdLevel::Avx512);
}

TEST(gemm_random_shapes_scalar) {
  set_simd_level_cap(SimdLevel::Scalar);
  random_cases(40, 3);
  set_simd_level_cap(SimdLevel::Avx512);
}

TEST(gemm_large_blocks_cross_kc_and_nc) {
  // Crosses the kc (depth) and mc blocks of every kernel, all four transposes, beta = 1.
  std::mt19937 rng(4);
  for (int t = 0; t < 4; ++t) {
    Case c{bool(t & 1), bool(t & 2), 203, 517, 801, 0, 0, 0, 1.0f, 1.0f};
    c.lda = c.ta ? c.M : c.K;
    c.ldb = c.tb ? c.K : c.N;
    c.ldc = c.N;
    CHECK(run_case(c, rng));
  }
}

TEST(gemm_bitwise_identical_across_thread_counts) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int64_t M = 300, N = 257, K = 700;
  std::vector<float> A(M * K), B(K * N), C1(M * N), C2(M * N);
  for (auto& x : A) x = u(rng);
  for (auto& x : B) x = u(rng);
  int saved = default_thread_count();
  set_default_threads(1);
  cpu::sgemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C1.data(), N);
  set_default_threads(3);
  cpu::sgemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C2.data(), N);
  set_default_threads(saved);
  CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * 4) == 0);
}

TEST(gemm_zero_k_and_alpha_zero_scale_c) {
  std::vector<float> C = {1, 2, 3, 4}, A(4), B(4);
  cpu::sgemm(false, false, 2, 2, 0, 1.f, A.data(), 1, B.data(), 2, 0.5f, C.data(), 2);
  CHECK(C[0] == 0.5f && C[3] == 2.0f);
  C = {std::nanf(""), 1, 1, 1};
  cpu::sgemm(false, false, 2, 2, 2, 0.f, A.data(), 2, B.data(), 2, 0.f, C.data(), 2);
  CHECK(C[0] == 0.0f);  // beta = 0 overwrites even NaN
}

TEST(gemm_rejects_bad_sizes) {
  std::vector<float> X(16);
  CHECK_THROWS(cpu::sgemm(false, false, -1, 2, 2, 1.f, X.data(), 2, X.data(), 2, 0.f, X.data(), 2),
               ErrorCode::OutOfRange);
  CHECK_THROWS(cpu::sgemm(false, false, 2, 2, 3, 1.f, X.data(), 2, X.data(), 2, 0.f, X.data(), 2),
               ErrorCode::OutOfRange);  // lda < K
  CHECK_THROWS(cpu::sgemm(true, false, 4, 2, 3, 1.f, X.data(), 3, X.data(), 2, 0.f, X.data(), 2),
               ErrorCode::OutOfRange);  // transposed A needs lda >= M
}

TEST(gemm_prepacked_b_bit_identical_to_sgemm) {
  // Generation multiplies pre-packed weights by 1..16 rows; its results must equal the training
  // GEMM's bit for bit (the log-prob contract). K crosses a depth block; every SIMD path.
  for (SimdLevel cap : {SimdLevel::Avx512, SimdLevel::Avx2, SimdLevel::Scalar}) {
    if (simd_level() < cap && cap != SimdLevel::Scalar) continue;
    set_simd_level_cap(cap);
    std::mt19937 rng(12);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    const int64_t N = 389, K = 1100;
    std::vector<float> W(N * K);
    for (auto& x : W) x = u(rng);
    cpu::PackedMatrix P;
    cpu::sgemm_pack_b(true, K, N, W.data(), K, &P);  // op(B) = Wᵀ, as the model's projections
    for (int64_t M : {1, 2, 3, 4, 15, 33}) {
      std::vector<float> A(M * K), C1(M * N), C2(M * N);
      for (auto& x : A) x = u(rng);
      for (float beta : {0.0f, 1.0f}) {
        for (size_t i = 0; i < C1.size(); ++i) C1[i] = C2[i] = u(rng);
        cpu::sgemm(false, true, M, N, K, 1.0f, A.data(), K, W.data(), K, beta, C1.data(), N);
        cpu::sgemm_packed_b(false, M, 1.0f, A.data(), K, P, beta, C2.data(), N);
        CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * 4) == 0);
      }
    }
  }
  set_simd_level_cap(SimdLevel::Avx512);
}

int main() { return rlhf_test::run_all_tests(); }
