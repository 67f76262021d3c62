// gemm_bf16 against gemm_bf16_reference (double sums of the same bf16-rounded inputs): random
// shapes (1..300, odd K for the pair tail), every transpose pair, beta 0 / 1 / other, padded
// leading dimensions, every kernel; the vdpbf16ps kernel bit-identical to the emulation; packed B
// bit-identical to the unpacked call; thread-count invariance; and the f32 GEMM of the unrounded
// inputs within bf16 rounding error.
#include <cstring>
#include <random>
#include <vector>

#include "../core/cpu_features.h"
#include "../core/dtype.h"
#include "../core/thread_pool.h"
#include "../cpu/gemm.h"
#include "../cpu/gemm_bf16.h"
#include "check.h"

using namespace rlhf;

namespace {

struct Case {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
};

std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f32_to_bf16(u(rng));
  return v;
}

// Tolerance: the reference is exact up to one f32 rounding of the result; the kernel's f32 sum of
// K exact products (|a|,|b| ≤ 1) has error ≤ K·2⁻²⁴·Σ|ab| ≤ K²·6e-8, far looser than what random
// signs give (~√K·K·6e-8); we use 4e-7·(4 + K) as gemm's own test does at f32 (error ~ √K ulps).
bool run_case(const Case& c, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  int64_t a_rows = c.ta ? c.K : c.M, b_rows = c.tb ? c.N : c.K;
  std::vector<float> A(a_rows * c.lda), C(c.M * c.ldc), R;
  std::vector<uint16_t> B = random_bf16(b_rows * c.ldb, rng);
  for (auto& x : A) x = u(rng);
  for (auto& x : C) x = u(rng);
  if (c.beta == 0.0f)
    for (auto& x : C) x = std::nanf("");
  R = C;
  cpu::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda, B.data(), c.ldb, c.beta, C.data(), c.ldc);
  cpu::gemm_bf16_reference(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda, B.data(), c.ldb, c.beta, R.data(),
                           c.ldc);
  const double tol = 4e-7 * (4.0 + static_cast<double>(c.K));
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      double g = C[i * c.ldc + j], r = R[i * c.ldc + j];
      if (!(std::fabs(g - r) <= tol)) {
        std::printf("  mismatch ta=%d tb=%d M=%ld N=%ld K=%ld at (%ld,%ld): %.9g vs %.9g\n", c.ta, c.tb, (long)c.M,
                    (long)c.N, (long)c.K, (long)i, (long)j, g, r);
        return false;
      }
    }
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
    if (n % 7 == 0) c.M = 1 + n % 3;
    if (n % 11 == 0) c.N = 1 + n % 2;
    if (n % 5 == 1) c.K |= 1;  // odd depth: the last pair half-empty
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

TEST(gemm_bf16_random_shapes_best_kernel) {
  std::printf("  kernel %s\n", cpu::gemm_bf16_kernel_name());
  random_cases(120, 1);
}

TEST(gemm_bf16_random_shapes_avx2) {
  if (simd_level() < SimdLevel::Avx2) SKIP("CPU has no AVX2+FMA");
  set_simd_level_cap(SimdLevel::Avx2);
  random_cases(60, 2);
  set_simd_level_cap(SimdLevel::Avx512);
}

TEST(gemm_bf16_random_shapes_scalar) {
  set_simd_level_cap(SimdLevel::Scalar);
  random_cases(40, 3);
  set_simd_level_cap(SimdLevel::Avx512);
}

TEST(gemm_bf16_large_blocks_cross_kc_and_nc) {
  std::mt19937 rng(4);
  for (int t = 0; t < 4; ++t) {
    Case c{bool(t & 1), bool(t & 2), 203, 3300, 2101, 0, 0, 0, 1.0f, 1.0f};
    c.lda = c.ta ? c.M : c.K;
    c.ldb = c.tb ? c.K : c.N;
    c.ldc = c.N;
    CHECK(run_case(c, rng));
  }
}

TEST(gemm_bf16_kernels_bit_identical_to_emulation) {
  // vdpbf16ps against the AVX2 and portable emulations of its two rounded adds per pair (normal
  // values, no subnormal products): the fallback's results contract is the fast path's.
  std::mt19937 rng(6);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int64_t M = 37, N = 75, K = 1301;
  std::vector<float> A(M * K);
  for (auto& x : A) x = u(rng);
  std::vector<uint16_t> W = random_bf16(N * K, rng);
  std::vector<float> C[3];
  const SimdLevel caps[3] = {SimdLevel::Avx512, SimdLevel::Avx2, SimdLevel::Scalar};
  for (int v = 0; v < 3; ++v) {
    set_simd_level_cap(caps[v]);
    C[v].assign(M * N, 0.0f);
    cpu::gemm_bf16(false, true, M, N, K, 1.0f, A.data(), K, W.data(), K, 0.0f, C[v].data(), N);
  }
  set_simd_level_cap(SimdLevel::Avx512);
  if (simd_level() >= SimdLevel::Avx2) CHECK(std::memcmp(C[1].data(), C[2].data(), C[1].size() * 4) == 0);
  if (!cpu_has_avx512_bf16()) SKIP("CPU has no AVX512-BF16: emulations compared with each other only");
  // kc differs between the fast kernel (1024) and the emulations (512): K = 1301 crosses both, so
  // compare within one block instead of across.
  const int64_t K1 = 511;
  std::vector<float> D[3];
  for (int v = 0; v < 3; ++v) {
    set_simd_level_cap(caps[v]);
    D[v].assign(M * N, 0.0f);
    cpu::gemm_bf16(false, true, M, N, K1, 1.0f, A.data(), K, W.data(), K, 0.0f, D[v].data(), N);
  }
  set_simd_level_cap(SimdLevel::Avx512);
  CHECK(std::memcmp(D[0].data(), D[2].data(), D[0].size() * 4) == 0);
}

TEST(gemm_bf16_bitwise_identical_across_thread_counts) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int64_t M = 300, N = 257, K = 1700;
  std::vector<float> A(M * K), C1(M * N), C2(M * N);
  for (auto& x : A) x = u(rng);
  std::vector<uint16_t> B = random_bf16(K * N, rng);
  int saved = default_thread_count();
  set_default_threads(1);
  cpu::gemm_bf16(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C1.data(), N);
  set_default_threads(3);
  cpu::gemm_bf16(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C2.data(), N);
  set_default_threads(saved);
  CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * 4) == 0);
}

TEST(gemm_bf16_prepacked_b_bit_identical) {
  for (SimdLevel cap : {SimdLevel::Avx512, SimdLevel::Avx2, SimdLevel::Scalar}) {
    if (simd_level() < cap && cap != SimdLevel::Scalar) continue;
    set_simd_level_cap(cap);
    std::mt19937 rng(12);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    const int64_t N = 389, K = 1101;
    std::vector<uint16_t> W = random_bf16(N * K, rng);
    cpu::PackedMatrixBf16 P;
    cpu::gemm_bf16_pack_b(true, K, N, W.data(), K, &P);
    for (int64_t M : {1, 2, 3, 4, 15, 33}) {
      std::vector<float> A(M * K), C1(M * N), C2(M * N);
      for (auto& x : A) x = u(rng);
      for (float beta : {0.0f, 1.0f}) {
        for (size_t i = 0; i < C1.size(); ++i) C1[i] = C2[i] = u(rng);
        cpu::gemm_bf16(false, true, M, N, K, 1.0f, A.data(), K, W.data(), K, beta, C1.data(), N);
        cpu::gemm_bf16_packed_b(false, M, 1.0f, A.data(), K, P, beta, C2.data(), N);
        CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * 4) == 0);
      }
    }
  }
  set_simd_level_cap(SimdLevel::Avx512);
}

TEST(gemm_bf16_close_to_f32_gemm) {
  // Against the f32 GEMM of the unrounded inputs: each input carries relative error ≤ 2⁻⁹, so
  // |err| ≤ 2·2⁻⁹·Σ|ab| ≤ K/256; random signs make it ~√K/256. Checked at 4·√K·2⁻⁸.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int64_t M = 64, N = 96, K = 777;
  std::vector<float> A(M * K), Bf(K * N), C(M * N), R(M * N);
  for (auto& x : A) x = u(rng);
  for (auto& x : Bf) x = u(rng);
  std::vector<uint16_t> B(Bf.size());
  cpu::f32_to_bf16_array(Bf.data(), B.data(), static_cast<int64_t>(B.size()));
  cpu::gemm_bf16(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
  cpu::sgemm_reference(false, false, M, N, K, 1.f, A.data(), K, Bf.data(), N, 0.f, R.data(), N);
  double worst = 0;
  for (size_t i = 0; i < C.size(); ++i) worst = std::max(worst, std::fabs(double(C[i]) - R[i]));
  CHECK(worst <= 4.0 * std::sqrt(double(K)) / 256.0);
  CHECK(worst > 0.0);  // the inputs were rounded: exact agreement would mean f32 was used
}

TEST(gemm_bf16_rejects_bad_sizes_and_foreign_packs) {
  std::vector<float> X(16);
  std::vector<uint16_t> H(16);
  CHECK_THROWS(cpu::gemm_bf16(false, false, 2, 2, 3, 1.f, X.data(), 2, H.data(), 2, 0.f, X.data(), 2),
               ErrorCode::OutOfRange);  // lda < K
  CHECK_THROWS(cpu::gemm_bf16(false, true, 2, 2, 3, 1.f, X.data(), 3, H.data(), 2, 0.f, X.data(), 2),
               ErrorCode::OutOfRange);  // transposed B needs ldb >= K
  cpu::PackedMatrixBf16 P;
  cpu::gemm_bf16_pack_b(false, 2, 2, H.data(), 2, &P);
  set_simd_level_cap(SimdLevel::Scalar);
  bool foreign = P.kernel != nullptr && std::strcmp(cpu::gemm_bf16_kernel_name(), "scalar-4x16") == 0;
  if (foreign && simd_level() >= SimdLevel::Avx2)
    CHECK_THROWS(cpu::gemm_bf16_packed_b(false, 1, 1.f, X.data(), 2, P, 0.f, X.data(), 2), ErrorCode::Internal);
  set_simd_level_cap(SimdLevel::Avx512);
}

int main() { return rlhf_test::run_all_tests(); }
