// GEMM against cpu::sgemm_reference (double accumulation) on the same fp32 values (bf16 inputs are
// rounded first), every transposition, strides wider than rows, beta ≠ 0 and a bias epilogue.
// On a GPU this checks the row-major → cuBLASLt mapping; under host emulation the call routes to
// cpu::sgemm, so it checks the bf16 handling and the argument checks only.
// Tolerances: fp32 accumulation over K terms of magnitude ≤ 1: atol 1e-5·K, rtol 1e-4; a bf16 C
// adds one bf16 rounding: rtol 1e-2.
#include "../../cpu/gemm.h"
#include "../gemm.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;
using rlhf::DType;

namespace {

template <typename TAB, typename TC>
void check_gemm(DType ab, DType c) {
  std::string detail;
  if (!rlhf::cuda::gemm_available(&detail)) SKIP("cuBLASLt unavailable: " + detail);
  struct Shape {
    int64_t M, N, K;
  };
  for (Shape s : {Shape{1, 1, 1}, Shape{7, 5, 3}, Shape{64, 48, 96}, Shape{33, 130, 70}})
    for (int trans = 0; trans < 4; ++trans) {
      const bool ta = trans & 1, tb = trans & 2, with_bias = trans == 1;
      const float beta = trans == 2 ? 0.5f : 0.0f;
      const int64_t a_rows = ta ? s.K : s.M, a_cols = ta ? s.M : s.K, b_rows = tb ? s.N : s.K, b_cols = tb ? s.K : s.N;
      const int64_t lda = a_cols + 2, ldb = b_cols + 1, ldc = s.N + 3;
      auto A = random_vector(a_rows * lda), B = random_vector(b_rows * ldb), C = random_vector(s.M * ldc);
      auto bias = random_vector(s.N);
      if (ab == DType::BF16) A = round_bf16(A), B = round_bf16(B);
      if (c == DType::BF16) C = round_bf16(C), bias = round_bf16(bias);
      std::vector<float> want = C;
      rlhf::cpu::sgemm_reference(ta, tb, s.M, s.N, s.K, 0.75f, A.data(), lda, B.data(), ldb, beta, want.data(), ldc);
      if (with_bias)
        for (int64_t i = 0; i < s.M; ++i)
          for (int64_t j = 0; j < s.N; ++j) want[i * ldc + j] += bias[j];
      DeviceArray<TAB> Ad(as_storage<TAB>(A)), Bd(as_storage<TAB>(B));
      DeviceArray<TC> Cd(as_storage<TC>(C)), biasd(as_storage<TC>(bias));
      rlhf::cuda::GemmArgs g;
      g.trans_a = ta, g.trans_b = tb, g.M = s.M, g.N = s.N, g.K = s.K, g.alpha = 0.75f, g.beta = beta;
      g.A = Ad.ptr, g.lda = lda, g.B = Bd.ptr, g.ldb = ldb, g.C = Cd.ptr, g.ldc = ldc, g.ab = ab, g.c = c;
      g.bias = with_bias ? biasd.ptr : nullptr;
      CHECK_OK(rlhf::cuda::gemm(g, nullptr));
      auto got = as_f32(Cd.download());
      std::vector<float> gs, ws;  // the M×N block only (the padding must be untouched too: checked below)
      for (int64_t i = 0; i < s.M; ++i)
        for (int64_t j = 0; j < ldc; ++j) {
          if (j < s.N)
            gs.push_back(got[i * ldc + j]), ws.push_back(want[i * ldc + j]);
          else
            CHECK(got[i * ldc + j] == C[i * ldc + j]);
        }
      EXPECT_CLOSE(shape_tag("C", s.M, s.N, s.K).c_str(), gs, ws, 1e-5 * s.K + 1e-6, c == DType::BF16 ? 1e-2 : 1e-4);
    }
}

}  // namespace

TEST(cuda_gemm_f32) { check_gemm<float, float>(DType::F32, DType::F32); }
TEST(cuda_gemm_bf16_in_f32_out) { check_gemm<__nv_bfloat16, float>(DType::BF16, DType::F32); }
TEST(cuda_gemm_bf16_in_bf16_out) { check_gemm<__nv_bfloat16, __nv_bfloat16>(DType::BF16, DType::BF16); }

TEST(cuda_gemm_rejects_bad_strides) {
  rlhf::cuda::GemmArgs g;
  g.M = 4, g.N = 4, g.K = 4, g.lda = 3, g.ldb = 4, g.ldc = 4;
  DeviceArray<float> x(64);
  g.A = g.B = g.C = x.ptr;
  rlhf::cuda::Status st = rlhf::cuda::gemm(g, nullptr);
  CHECK(!st.ok() && st.code == rlhf::cuda::StatusCode::InvalidArgument);
}
