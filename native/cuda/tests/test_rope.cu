// RoPE on the device against cpu::rope_apply with the same cpu::RopeTable, forward and backward,
// half-split and interleaved pairs, full and partial rotary dims, a row stride wider than the
// heads (q/k columns of a fused QKV row). fp32: same operations, rtol 1e-6 / atol 1e-6 (a GPU may
// fuse multiply-adds); bf16 (reference on the rounded inputs): rtol 1e-2 / atol 1e-2.
#include "../../cpu/rope.h"
#include "../rope.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;
using rlhf::DType;

namespace {

template <typename T>
void check_rope(DType dtype, double atol, double rtol) {
  struct Case {
    int64_t N;
    int nheads, HD, rot_dim;
    bool interleaved, backward;
  };
  for (Case c : {Case{1, 1, 2, 2, false, false}, Case{5, 3, 8, 8, false, true}, Case{13, 2, 64, 32, true, false},
                 Case{7, 4, 16, 10, true, true}, Case{40, 5, 128, 128, false, false}}) {
    const int64_t ld = int64_t(c.nheads) * c.HD + 3;
    rlhf::cpu::RopeTable table(c.rot_dim, 10000.0f, c.interleaved);
    auto pos = random_ints(c.N, 0, 4000);
    table.ensure(4000);
    auto x = random_vector(c.N * ld);
    if (dtype == DType::BF16) x = round_bf16(x);
    std::vector<float> want = x;
    rlhf::cpu::rope_apply(want.data(), c.N, ld, c.nheads, c.HD, pos.data(), table, c.backward);
    const int half = c.rot_dim / 2;
    std::vector<float> cs(table.cos_at(0), table.cos_at(0) + 4001 * half),
        sn(table.sin_at(0), table.sin_at(0) + 4001 * half);
    DeviceArray<float> csd(cs), snd(sn);
    DeviceArray<int32_t> posd(pos);
    DeviceArray<T> xd(as_storage<T>(x));
    CHECK_OK(rlhf::cuda::rope_apply(xd, c.N, ld, c.nheads, c.HD, posd, csd, snd, c.rot_dim, c.interleaved, c.backward,
                                    dtype, nullptr));
    EXPECT_CLOSE(shape_tag("x", c.N, c.HD, c.rot_dim).c_str(), as_f32(xd.download()), want, atol, rtol);
  }
}

}  // namespace

TEST(cuda_rope_f32) { check_rope<float>(DType::F32, 1e-6, 1e-6); }
TEST(cuda_rope_bf16) { check_rope<__nv_bfloat16>(DType::BF16, 1e-2, 1e-2); }

TEST(cuda_rope_rejects_bad_shapes) {
  DeviceArray<float> x(16);
  CHECK(!rlhf::cuda::rope_apply(x, 1, 16, 2, 8, nullptr, nullptr, nullptr, 9, false, false, DType::F32, nullptr).ok());
  CHECK(!rlhf::cuda::rope_apply(x, 1, 8, 2, 8, nullptr, nullptr, nullptr, 8, false, false, DType::F32, nullptr).ok());
}
