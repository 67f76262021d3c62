// Sampling on the device against cpu::sample_token with the CPU's own Philox draw for each row:
// the same (seed, stream, step) must give the same uniform bit for bit, and the same token, for
// greedy, plain, top-k, top-p and top-k + top-p sampling, at several temperatures, with tied and
// masked (−inf) logits and a row stride wider than V.
#include "../../core/rng.h"
#include "../../cpu/sampling.h"
#include "../sampling.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;

TEST(cuda_philox_matches_cpu_streams) {
  const int64_t N = 3000;
  std::vector<uint64_t> streams(N), steps(N);
  for (int64_t i = 0; i < N; ++i)
    streams[i] = i * 7919 + (uint64_t(i % 3) << 33), steps[i] = (i * 31) % 1000 + (i % 5) * (1ull << 32);
  DeviceArray<uint64_t> sd(streams), td(steps);
  DeviceArray<float> out(N);
  const uint64_t seed = 0x1234567890abcdefull;
  CHECK_OK(rlhf::cuda::philox_uniforms(out, sd, td, N, seed, nullptr));
  auto got = out.download();
  std::vector<float> want(N);
  for (int64_t i = 0; i < N; ++i) want[i] = rlhf::philox_uniform(seed, streams[i], steps[i]);
  EXPECT_CLOSE("philox uniforms", got, want, 0.0, 0.0);
}

TEST(cuda_sampling_matches_cpu_sample_token) {
  struct Case {
    float temperature;
    int64_t top_k;
    float top_p;
  };
  const Case cases[] = {{0.0f, 0, 1.0f}, {1.0f, 0, 1.0f},  {0.7f, 0, 1.0f}, {1.0f, 5, 1.0f},
                        {1.3f, 0, 0.9f}, {0.8f, 40, 0.8f}, {1.0f, 1, 1.0f}, {2.0f, 0, 0.05f}};
  int mismatches = 0, rows_total = 0;
  for (auto [N, V] : {std::pair<int64_t, int64_t>{4, 1}, {16, 10}, {24, 333}, {6, 5000}})
    for (const Case& c : cases) {
      const int64_t ld = V + 3;
      auto z = random_vector(N * ld, -4.0f, 4.0f);
      for (int64_t r = 0; r < N && V > 8; r += 3)
        z[r * ld + 5] = z[r * ld + 2], z[r * ld + 7] = -INFINITY;  // ties, masks
      std::vector<uint64_t> streams(N), steps(N);
      for (int64_t r = 0; r < N; ++r) streams[r] = 100 + r, steps[r] = r % 4;
      const uint64_t seed = 4242 + V;
      rlhf::cpu::SamplingParams sp;
      sp.temperature = c.temperature, sp.top_k = c.top_k, sp.top_p = c.top_p;
      DeviceArray<float> zd(z);
      DeviceArray<uint64_t> sd(streams), td(steps);
      DeviceArray<int32_t> tok(N);
      CHECK_OK(rlhf::cuda::sample_tokens(tok, zd, ld, N, V, sd, td, seed, sp, nullptr));
      auto got = tok.download();
      for (int64_t r = 0; r < N; ++r) {
        float u = rlhf::philox_uniform(seed, streams[r], steps[r]);
        int32_t want = rlhf::cpu::sample_token(z.data() + r * ld, V, sp, u);
        ++rows_total;
        if (got[r] != want) {
          if (mismatches++ < 5)
            std::printf("  row %lld of (%lld, %lld), T=%g k=%lld p=%g: token %d, CPU %d\n", (long long)r, (long long)N,
                        (long long)V, c.temperature, (long long)c.top_k, c.top_p, got[r], want);
        }
      }
    }
  CHECK(mismatches == 0);
  CHECK(rows_total > 300);
}

TEST(cuda_sampling_rejects_bad_params) {
  DeviceArray<float> z(10);
  DeviceArray<uint64_t> s(1);
  DeviceArray<int32_t> t(1);
  rlhf::cpu::SamplingParams sp;
  sp.top_p = 0.0f;
  CHECK(!rlhf::cuda::sample_tokens(t, z, 10, 1, 10, s, s, 1, sp, nullptr).ok());
  sp.top_p = 1.0f, sp.temperature = -1.0f;
  CHECK(!rlhf::cuda::sample_tokens(t, z, 10, 1, 10, s, s, 1, sp, nullptr).ok());
  sp.temperature = 1.0f;
  CHECK(!rlhf::cuda::sample_tokens(t, z, 5, 1, 10, s, s, 1, sp, nullptr).ok());
}
