// RMSNorm on the device against cpu::rmsnorm_*_reference (double) on random inputs.
// Tolerances: fp32 storage rtol 1e-5 / atol 1e-6 (fp32 sums in a different order than the
// reference's double); bf16 storage: the reference runs on the same bf16-rounded inputs, and the
// bf16 outputs (out, dx) may differ by one bf16 rounding (2^-8 relative) plus fp32 noise: rtol 1e-2
// / atol 1e-2; fp32 outputs (rstd, dw) rtol 1e-4.
#include "../../cpu/rmsnorm.h"
#include "../rmsnorm.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;
using rlhf::DType;

namespace {

const std::pair<int64_t, int> kShapes[] = {{1, 1}, {3, 7}, {17, 64}, {5, 1000}, {130, 96}, {2, 4099}};

template <typename T>
void check_rmsnorm(DType dtype, double atol, double rtol) {
  const bool bf16 = dtype == DType::BF16;
  for (auto [N, C] : kShapes) {
    auto x = random_vector(N * C, -2.0f, 2.0f), w = random_vector(C, 0.5f, 1.5f), dout = random_vector(N * C);
    auto dx0 = random_vector(N * C), dw0 = random_vector(C);
    if (bf16) x = round_bf16(x), w = round_bf16(w), dout = round_bf16(dout), dx0 = round_bf16(dx0);
    std::vector<float> out(N * C), rstd(N), dx = dx0, dw = dw0;
    rlhf::cpu::rmsnorm_forward_reference(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
    rlhf::cpu::rmsnorm_backward_reference(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);

    DeviceArray<T> dxs(as_storage<T>(x)), dws(as_storage<T>(w)), dout_d(as_storage<T>(dout)), out_d(N * C);
    DeviceArray<T> dx_d(as_storage<T>(dx0));
    DeviceArray<float> rstd_d(N), dw_d(dw0);
    DeviceArray<unsigned char> ws(rlhf::cuda::rmsnorm_backward_workspace_bytes(N, C));
    CHECK_OK(rlhf::cuda::rmsnorm_forward(out_d, rstd_d, dxs, dws, N, C, 1e-5f, dtype, nullptr));
    // backward reads the reference rstd so each pass is checked on its own
    rstd_d.upload(rstd);
    CHECK_OK(rlhf::cuda::rmsnorm_backward(dx_d, dw_d, dout_d, dxs, dws, rstd_d, N, C, dtype, ws, nullptr));
    const std::string at = " at N=" + std::to_string(N) + " C=" + std::to_string(C);
    EXPECT_CLOSE(("out" + at).c_str(), as_f32(out_d.download()), out, atol, rtol);
    EXPECT_CLOSE(("dx" + at).c_str(), as_f32(dx_d.download()), dx, atol, rtol);
    EXPECT_CLOSE(("dw" + at).c_str(), dw_d.download(), dw, 1e-5, bf16 ? 1e-4 : 1e-5);
  }
}

}  // namespace

TEST(cuda_rmsnorm_f32) { check_rmsnorm<float>(DType::F32, 1e-6, 1e-5); }
TEST(cuda_rmsnorm_bf16) { check_rmsnorm<__nv_bfloat16>(DType::BF16, 1e-2, 1e-2); }

TEST(cuda_rmsnorm_forward_rstd) {
  const int64_t N = 9;
  const int C = 333;
  auto x = random_vector(N * C), w = random_vector(C);
  std::vector<float> out(N * C), rstd(N);
  rlhf::cpu::rmsnorm_forward_reference(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
  DeviceArray<float> xd(x), wd(w), od(N * C), rd(N);
  CHECK_OK(rlhf::cuda::rmsnorm_forward(od, rd, xd, wd, N, C, 1e-6f, DType::F32, nullptr));
  EXPECT_CLOSE("rstd", rd.download(), rstd, 0.0, 1e-5);
  CHECK(!rlhf::cuda::rmsnorm_forward(od, rd, xd, wd, N, 0, 1e-6f, DType::F32, nullptr).ok());
  CHECK(!rlhf::cuda::rmsnorm_forward(od, rd, xd, wd, N, C, 1e-6f, DType::I32, nullptr).ok());
}
