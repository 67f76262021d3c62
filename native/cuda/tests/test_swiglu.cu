// SwiGLU on the device against cpu::swiglu_* on random inputs (the CPU kernel uses a vectorised
// exp within a few ulp of expf). Tolerances: fp32 rtol 1e-5 / atol 1e-6; bf16 storage (reference on
// the same bf16-rounded inputs): one bf16 rounding of the output, rtol 1e-2 / atol 1e-2.
#include "../../cpu/swiglu.h"
#include "../swiglu.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;
using rlhf::DType;

namespace {

template <typename T>
void check_swiglu(DType dtype, double atol, double rtol) {
  const bool bf16 = dtype == DType::BF16;
  for (auto [N, F] : {std::pair<int64_t, int>{1, 1}, {3, 5}, {7, 128}, {33, 250}, {2, 5000}}) {
    auto gu = random_vector(N * 2 * F, -6.0f, 6.0f), da = random_vector(N * F);
    if (bf16) gu = round_bf16(gu), da = round_bf16(da);
    std::vector<float> a(N * F), dgu(N * 2 * F);
    rlhf::cpu::swiglu_forward(a.data(), gu.data(), N, F);
    rlhf::cpu::swiglu_backward(dgu.data(), da.data(), gu.data(), N, F);
    DeviceArray<T> gud(as_storage<T>(gu)), dad(as_storage<T>(da)), ad(N * F), dgud(N * 2 * F);
    CHECK_OK(rlhf::cuda::swiglu_forward(ad, gud, N, F, dtype, nullptr));
    CHECK_OK(rlhf::cuda::swiglu_backward(dgud, dad, gud, N, F, dtype, nullptr));
    EXPECT_CLOSE(shape_tag("a", N, F).c_str(), as_f32(ad.download()), a, atol, rtol);
    EXPECT_CLOSE(shape_tag("dgu", N, F).c_str(), as_f32(dgud.download()), dgu, atol, rtol);
  }
}

}  // namespace

TEST(cuda_swiglu_f32) { check_swiglu<float>(DType::F32, 1e-6, 1e-5); }
TEST(cuda_swiglu_bf16) { check_swiglu<__nv_bfloat16>(DType::BF16, 1e-2, 1e-2); }
