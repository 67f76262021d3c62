// Sampling: greedy = argmax (first on ties), top-k/top-p support, frequencies follow the
// temperature-scaled softmax, and the choice is a pure function of (logits, params, u).
#include <cmath>
#include <map>

#include "../core/rng.h"
#include "../cpu/sampling.h"
#include "fd.h"

using namespace rlhf;
using namespace rlhf_test;

TEST(greedy_and_filters) {
  std::vector<float> z = {0.1f, 2.0f, 2.0f, -1.0f, 1.5f};
  cpu::SamplingParams g;
  g.temperature = 0;
  CHECK(cpu::sample_token(z.data(), 5, g, 0.5f) == 1);
  cpu::SamplingParams k;
  k.top_k = 2;
  for (float u : {0.0f, 0.3f, 0.7f, 0.999f}) {
    int32_t t = cpu::sample_token(z.data(), 5, k, u);
    CHECK(t == 1 || t == 2);
  }
  cpu::SamplingParams p;
  p.top_p = 0.5f;  // probs ≈ (.07,.34,.34,.02,.21): the top two reach 0.5
  for (float u : {0.0f, 0.5f, 0.99f}) {
    int32_t t = cpu::sample_token(z.data(), 5, p, u);
    CHECK(t == 1 || t == 2);
  }
}

TEST(frequencies_follow_the_softmax) {
  std::vector<float> z = {1.0f, 0.0f, -1.0f, 0.5f};
  cpu::SamplingParams sp;
  sp.temperature = 0.7f;
  std::map<int, int> count;
  const int n = 40000;
  for (int i = 0; i < n; ++i) count[cpu::sample_token(z.data(), 4, sp, philox_uniform(5, 0, i))]++;
  double total = 0;
  for (float x : z) total += std::exp(x / 0.7);
  for (int j = 0; j < 4; ++j) CHECK_NEAR(count[j] / double(n), std::exp(z[j] / 0.7) / total, 0.01, 0);
}

int main() { return run_all_tests(); }
