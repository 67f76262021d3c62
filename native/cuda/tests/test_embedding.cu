// Embedding on the device against cpu::embedding_* on random tokens, with repeated ids and ids
// outside the shard [vocab_begin, vocab_begin + V). Forward copies exactly (both dtypes: the
// reference reads the same bf16 values); backward adds fp32 in another order: rtol 1e-5 / atol 1e-6.
#include "../../cpu/embedding.h"
#include "../embedding.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;
using rlhf::DType;

namespace {

template <typename T>
void check_embedding(DType dtype) {
  for (auto [N, V, C] : {std::tuple<int64_t, int64_t, int>{1, 1, 1}, {9, 5, 7}, {64, 50, 96}, {200, 17, 300}}) {
    const int64_t begin = V / 3;  // a shard: ids below begin or at/after begin + V are elsewhere
    auto tokens = random_ints(N, 0, static_cast<int32_t>(begin + V + 3));
    auto E = random_vector(V * C), dx = random_vector(N * C), dE0 = random_vector(V * C);
    if (dtype == DType::BF16) E = round_bf16(E), dx = round_bf16(dx);
    std::vector<float> x(N * C), dE = dE0;
    rlhf::cpu::embedding_forward(x.data(), E.data(), tokens.data(), N, V, C, begin);
    rlhf::cpu::embedding_backward(dE.data(), dx.data(), tokens.data(), N, V, C, begin);
    DeviceArray<T> Ed(as_storage<T>(E)), dxd(as_storage<T>(dx)), xd(N * C);
    DeviceArray<int32_t> td(tokens);
    DeviceArray<float> dEd(dE0);
    CHECK_OK(rlhf::cuda::embedding_forward(xd, Ed, td, N, V, C, begin, dtype, nullptr));
    CHECK_OK(rlhf::cuda::embedding_backward(dEd, dxd, td, N, V, C, begin, dtype, nullptr));
    EXPECT_CLOSE(shape_tag("x", N, V, C).c_str(), as_f32(xd.download()), x, 0.0, 0.0);
    EXPECT_CLOSE(shape_tag("dE", N, V, C).c_str(), dEd.download(), dE, 1e-6, 1e-5);
  }
}

}  // namespace

TEST(cuda_embedding_f32) { check_embedding<float>(DType::F32); }
TEST(cuda_embedding_bf16) { check_embedding<__nv_bfloat16>(DType::BF16); }
