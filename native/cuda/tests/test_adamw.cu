// AdamW on the device against cpu::adamw_step_reference (plain loops) on random inputs.
// Tolerance (fp32): the same IEEE operations in the same order, so the host emulation agrees
// bit for bit; a GPU build may contract multiply-adds (nvcc's default -fmad=true), hence
// rtol 1e-5 relative to the parameter plus atol 1e-7. The bf16 copy must equal bf16(p) exactly.
#include <cmath>

#include "../../cpu/adamw.h"
#include "../adamw.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;
namespace cpu = rlhf::cpu;

namespace {

void check_adamw(int64_t n, bool clip, bool segmented, bool bf16_copy, int steps) {
  auto p = random_vector(n), m = random_vector(n, 0.0f, 0.01f), v = random_vector(n, 0.0f, 0.001f);
  for (auto& x : m) x -= 0.005f;
  cpu::AdamWOptions o;
  o.lr = 1e-2f, o.weight_decay = 0.1f, o.max_grad_norm = clip ? 0.5f : 0.0f;
  std::vector<cpu::AdamWSegment> segs;
  if (segmented) segs = {{0, n / 3, 1.0f}, {n / 3, n / 5, 0.0f}, {n / 3 + n / 5, n - n / 3 - n / 5, 1.0f}};
  DeviceArray<float> dp(p), dm(m), dv(v), dg(n);
  DeviceArray<__nv_bfloat16> dpb(bf16_copy ? n : 1);
  DeviceArray<double> partials(rlhf::cuda::adamw_sumsq_partials());
  for (int step = 1; step <= steps; ++step) {
    auto g = random_vector(n, -2.0f, 2.0f);
    dg.upload(g);
    cpu::AdamWResult want = cpu::adamw_step_reference(p.data(), g.data(), m.data(), v.data(), n, o, step, segs);
    cpu::AdamWResult got{};
    CHECK_OK(rlhf::cuda::adamw_step(dp, dg, dm, dv, bf16_copy ? static_cast<void*>(dpb.ptr) : nullptr, n, o, step, segs,
                                    partials, &got, nullptr));
    CHECK(got.skipped == want.skipped);
    CHECK_NEAR(got.grad_norm, want.grad_norm, 0.0, 1e-12);
  }
  auto hp = dp.download();
  EXPECT_CLOSE("p", hp, p, 1e-7, 1e-5);
  EXPECT_CLOSE("m", dm.download(), m, 1e-7, 1e-5);
  EXPECT_CLOSE("v", dv.download(), v, 1e-9, 1e-5);
  if (bf16_copy) EXPECT_CLOSE("p_bf16 == bf16(p)", to_f32(dpb.download()), round_bf16(hp), 0.0, 0.0);
}

}  // namespace

TEST(cuda_adamw_matches_cpu_reference) {
  for (int64_t n : {1, 255, 1000, 70001}) check_adamw(n, false, false, false, 3);
}

TEST(cuda_adamw_clipping_segments_and_bf16_copy) {
  for (int64_t n : {7, 4099, 33333}) check_adamw(n, true, true, true, 2);
}

TEST(cuda_adamw_skips_non_finite_gradients) {
  const int64_t n = 300;
  auto p = random_vector(n), m = random_vector(n), v = random_vector(n, 0.0f, 1.0f), g = random_vector(n);
  g[123] = NAN;
  DeviceArray<float> dp(p), dm(m), dv(v), dg(g);
  DeviceArray<double> partials(rlhf::cuda::adamw_sumsq_partials());
  cpu::AdamWResult r{};
  CHECK_OK(rlhf::cuda::adamw_step(dp, dg, dm, dv, nullptr, n, cpu::AdamWOptions{}, 1, {}, partials, &r, nullptr));
  CHECK(r.skipped);
  EXPECT_CLOSE("p untouched", dp.download(), p, 0.0, 0.0);
  EXPECT_CLOSE("v untouched", dv.download(), v, 0.0, 0.0);
}

TEST(cuda_adamw_rejects_bad_arguments) {
  DeviceArray<float> a(4);
  DeviceArray<double> partials(rlhf::cuda::adamw_sumsq_partials());
  cpu::AdamWResult r{};
  cpu::AdamWOptions bad;
  bad.lr = -1;
  CHECK(!rlhf::cuda::adamw_step(a, a, a, a, nullptr, 4, bad, 1, {}, partials, &r, nullptr).ok());
  CHECK(!rlhf::cuda::adamw_step(a, a, a, a, nullptr, 4, cpu::AdamWOptions{}, 0, {}, partials, &r, nullptr).ok());
  CHECK(!rlhf::cuda::adamw_apply(a, a, a, a, nullptr, 4, cpu::AdamWScalars{}, {{0, 3, 1.0f}}, nullptr).ok());
}
