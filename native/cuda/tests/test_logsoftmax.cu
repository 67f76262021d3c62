// Log-softmax + gather + entropy on the device against the CPU kernels (cpu::logsoftmax_forward /
// _backward, themselves tested against a double reference), on random logits with rows of
// masked (−inf) logits, rows without a target, a row stride wider than V, and temperatures:
// with temperature T the reference runs on z / T and its dz is divided by T.
// Tolerances (fp32 sums in another order, expf vs the CPU's vectorised exp): logp, lse, H
// atol 2e-5 + rtol 1e-5; dz atol 1e-6 + rtol 1e-4. bf16 logits: the reference reads the same
// bf16 values; dz is stored in bf16: atol 1e-4 + rtol 1e-2.
#include "../../cpu/logsoftmax.h"
#include "../logsoftmax.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;
using rlhf::DType;

namespace {

template <typename T>
void check_logsoftmax(DType dtype, float temperature) {
  const bool bf16 = dtype == DType::BF16;
  for (auto [N, V] : {std::pair<int64_t, int64_t>{1, 1}, {4, 7}, {9, 300}, {5, 5003}, {3, 40000}}) {
    const int64_t ld = V + 5;
    auto z = random_vector(N * ld, -8.0f, 8.0f);
    if (bf16) z = round_bf16(z);
    auto targets = random_ints(N, 0, static_cast<int32_t>(V - 1));
    if (N > 2) targets[1] = -1;                                     // no target
    if (N > 3 && V > 4) z[3 * ld + 0] = z[3 * ld + 2] = -INFINITY;  // masked logits
    auto dlogp = random_vector(N), dent = random_vector(N);
    // CPU reference on u = z / T
    std::vector<float> u(N * ld);
    for (size_t i = 0; i < u.size(); ++i) u[i] = z[i] / temperature;
    std::vector<float> logp(N), ent(N), lse(N), dz(N * ld, 0.0f);
    rlhf::cpu::logsoftmax_forward(logp.data(), ent.data(), lse.data(), u.data(), ld, targets.data(), N, V);
    rlhf::cpu::logsoftmax_backward(dz.data(), ld, u.data(), ld, targets.data(), lse.data(), ent.data(), dlogp.data(),
                                   dent.data(), N, V);
    for (auto& d : dz) d /= temperature;

    DeviceArray<T> zd(as_storage<T>(z)), dzd(as_storage<T>(std::vector<float>(N * ld, 0.0f)));
    DeviceArray<int32_t> td(targets);
    DeviceArray<float> logpd(N), entd(N), lsed(N), dlogpd(dlogp), dentd(dent);
    CHECK_OK(rlhf::cuda::logsoftmax_forward(logpd, entd, lsed, zd, ld, td, N, V, temperature, dtype, nullptr));
    // the backward reads the reference statistics, so each pass is checked on its own
    lsed.upload(lse), entd.upload(ent);
    CHECK_OK(rlhf::cuda::logsoftmax_backward(dzd, ld, zd, ld, td, lsed, entd, dlogpd, dentd, N, V, temperature, dtype,
                                             nullptr));
    auto hz = as_f32(dzd.download());
    std::vector<float> gz(N * V), wz(N * V);  // compare the V columns of each row only
    for (int64_t r = 0; r < N; ++r)
      for (int64_t j = 0; j < V; ++j) gz[r * V + j] = hz[r * ld + j], wz[r * V + j] = dz[r * ld + j];
    EXPECT_CLOSE(shape_tag("logp", N, V).c_str(), logpd.download(), logp, 2e-5, 1e-5);
    EXPECT_CLOSE(shape_tag("entropy", N, V).c_str(), entd.download(), ent, 2e-5, 1e-5);
    EXPECT_CLOSE(shape_tag("dz", N, V).c_str(), gz, wz, bf16 ? 1e-4 : 1e-6, bf16 ? 1e-2 : 1e-4);
  }
}

}  // namespace

TEST(cuda_logsoftmax_f32) { check_logsoftmax<float>(DType::F32, 1.0f); }
TEST(cuda_logsoftmax_f32_temperature) { check_logsoftmax<float>(DType::F32, 0.7f); }
TEST(cuda_logsoftmax_bf16_logits) { check_logsoftmax<__nv_bfloat16>(DType::BF16, 1.3f); }

TEST(cuda_logsoftmax_backward_in_place) {
  const int64_t N = 3, V = 77;
  auto z = random_vector(N * V, -3.0f, 3.0f);
  auto targets = random_ints(N, 0, V - 1);
  auto dlogp = random_vector(N);
  std::vector<float> logp(N), ent(N), lse(N), dz(N * V);
  rlhf::cpu::logsoftmax_forward(logp.data(), ent.data(), lse.data(), z.data(), V, targets.data(), N, V);
  rlhf::cpu::logsoftmax_backward(dz.data(), V, z.data(), V, targets.data(), lse.data(), nullptr, dlogp.data(), nullptr,
                                 N, V);
  DeviceArray<float> zd(z), lsed(lse), dlogpd(dlogp);
  DeviceArray<int32_t> td(targets);
  CHECK_OK(rlhf::cuda::logsoftmax_backward(zd, V, zd, V, td, lsed, nullptr, dlogpd, nullptr, N, V, 1.0f, DType::F32,
                                           nullptr));
  EXPECT_CLOSE("dz (aliasing z)", zd.download(), dz, 1e-6, 1e-4);
  CHECK(!rlhf::cuda::logsoftmax_forward(lsed, lsed, lsed, zd, V, td, N, V, 0.0f, DType::F32, nullptr).ok());
}
