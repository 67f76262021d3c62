// Fused AdamW against the plain reference loop over many steps (bitwise: same IEEE operations),
// against closed-form first steps, skip-on-NaN/Inf, clipping, segments, and bad options.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "../core/thread_pool.h"
#include "../cpu/adamw.h"
#include "check.h"

using namespace rlhf;
using namespace rlhf::cpu;

namespace {
std::vector<float> randv(int64_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}
}  // namespace

TEST(adamw_matches_reference_bitwise_over_50_steps) {
  std::mt19937 rng(7);
  const int64_t n = 200003;  // odd: exercises vector tails and the thread split
  auto p = randv(n, rng), pr = p;
  std::vector<float> m(n), v(n), mr(n), vr(n);
  AdamWOptions o;
  o.lr = 3e-3f, o.weight_decay = 0.1f, o.max_grad_norm = 50.0f;
  std::vector<AdamWSegment> segs = {{0, 1000, 1.0f}, {1000, 5, 0.0f}, {1005, n - 1005, 1.0f}};
  for (int step = 1; step <= 50; ++step) {
    auto g = randv(n, rng, step % 3 == 0 ? 1.0f : 0.05f);  // some steps clip, some do not
    AdamWResult a = adamw_step(p.data(), g.data(), m.data(), v.data(), n, o, step, segs);
    AdamWResult b = adamw_step_reference(pr.data(), g.data(), mr.data(), vr.data(), n, o, step, segs);
    CHECK(!a.skipped && !b.skipped);
    CHECK_NEAR(a.grad_norm, b.grad_norm, 0, 1e-12);
  }
  CHECK(std::memcmp(p.data(), pr.data(), n * 4) == 0);
  CHECK(std::memcmp(m.data(), mr.data(), n * 4) == 0);
  CHECK(std::memcmp(v.data(), vr.data(), n * 4) == 0);
}

TEST(adamw_first_step_closed_form) {
  // Step 1 without clipping or decay: m̂ = g, v̂ = g², so p -= lr · g / (|g| + eps) ≈ lr·sign(g).
  std::vector<float> p = {1.0f, -2.0f, 0.5f}, g = {0.3f, -4.0f, 1e-3f}, m(3), v(3);
  AdamWOptions o;
  o.lr = 0.01f;
  adamw_step(p.data(), g.data(), m.data(), v.data(), 3, o, 1);
  CHECK_NEAR(p[0], 1.0 - 0.01 * 0.3 / (0.3 + 1e-8), 1e-6, 0);
  CHECK_NEAR(p[1], -2.0 + 0.01 * 4.0 / (4.0 + 1e-8), 1e-6, 0);
  CHECK_NEAR(p[2], 0.5 - 0.01 * 1e-3 / (1e-3 + 1e-8), 1e-6, 0);
  CHECK_NEAR(m[0], 0.1 * 0.3, 1e-7, 1e-6);
  CHECK_NEAR(v[1], 0.001 * 16.0, 1e-7, 2e-5);  // 1 - 0.999f = 0.00099998713 in fp32
}

TEST(adamw_decoupled_weight_decay_with_zero_gradient) {
  // g = 0: the Adam term is 0, only p·(1 − lr·wd) remains.
  std::vector<float> p = {2.0f, -3.0f}, g = {0.0f, 0.0f}, m(2), v(2);
  AdamWOptions o;
  o.lr = 0.1f, o.weight_decay = 0.5f;
  adamw_step(p.data(), g.data(), m.data(), v.data(), 2, o, 1);
  CHECK_NEAR(p[0], 2.0 * 0.95, 1e-6, 0);
  CHECK_NEAR(p[1], -3.0 * 0.95, 1e-6, 0);
}

TEST(adamw_skips_non_finite_gradients_untouched) {
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    std::mt19937 rng(9);
    const int64_t n = 100000;
    auto p = randv(n, rng), g = randv(n, rng), m = randv(n, rng), v = randv(n, rng, 0.1f);
    for (auto& x : v) x = std::fabs(x);
    auto p0 = p, m0 = m, v0 = v;
    g[n / 2 + 17] = bad;
    AdamWResult r = adamw_step(p.data(), g.data(), m.data(), v.data(), n, AdamWOptions{}, 3);
    CHECK(r.skipped);
    CHECK(!std::isfinite(r.grad_norm));
    CHECK(std::memcmp(p.data(), p0.data(), n * 4) == 0);
    CHECK(std::memcmp(m.data(), m0.data(), n * 4) == 0);
    CHECK(std::memcmp(v.data(), v0.data(), n * 4) == 0);
  }
}

TEST(adamw_clipping_scales_gradient_to_max_norm) {
  // g = (3, 4): ‖g‖ = 5; max_norm 1 → effective g = (0.6, 0.8) (up to the 1e-6 guard): m = 0.1·g_eff.
  std::vector<float> p = {0, 0}, g = {3, 4}, m(2), v(2);
  AdamWOptions o;
  o.max_grad_norm = 1.0f;
  AdamWResult r = adamw_step(p.data(), g.data(), m.data(), v.data(), 2, o, 1);
  CHECK_NEAR(r.grad_norm, 5.0, 1e-12, 0);
  CHECK_NEAR(m[0], 0.06, 1e-7, 1e-5);
  CHECK_NEAR(m[1], 0.08, 1e-7, 1e-5);
  CHECK_NEAR(adamw_clip_scale(0.5, 1.0f), 1.0, 0, 0);   // below the max: no clipping
  CHECK_NEAR(adamw_clip_scale(10.0, 0.0f), 1.0, 0, 0);  // 0 disables clipping
}

TEST(adamw_norm_deterministic_for_thread_count) {
  std::mt19937 rng(11);
  auto g = randv(1 << 20, rng);
  int saved = default_thread_count();
  set_default_threads(2);
  double a = sum_of_squares(g.data(), g.size()), b = sum_of_squares(g.data(), g.size());
  set_default_threads(saved);
  CHECK(a == b);
  double ref = 0;
  for (float x : g) ref += double(x) * x;
  CHECK_NEAR(a, ref, 0, 1e-12);
}

TEST(adamw_rejects_bad_options_and_segments) {
  std::vector<float> x(4);
  AdamWOptions o;
  o.lr = -1.0f;
  CHECK_THROWS(adamw_step(x.data(), x.data(), x.data(), x.data(), 4, o, 1), ErrorCode::OutOfRange);
  o = AdamWOptions{};
  o.beta2 = 1.0f;
  CHECK_THROWS(adamw_step(x.data(), x.data(), x.data(), x.data(), 4, o, 1), ErrorCode::OutOfRange);
  o = AdamWOptions{};
  CHECK_THROWS(adamw_step(x.data(), x.data(), x.data(), x.data(), 4, o, 0), ErrorCode::OutOfRange);
  std::vector<AdamWSegment> gap = {{0, 2, 1.0f}, {3, 1, 1.0f}};
  CHECK_THROWS(adamw_step(x.data(), x.data(), x.data(), x.data(), 4, o, 1, gap), ErrorCode::OutOfRange);
}

int main() { return rlhf_test::run_all_tests(); }

TEST(adamw_step_range_three_shards_equal_one_unsharded_step_bitwise) {
  // ZeRO-1: three ranks each update their range with moments of that range only; put together they
  // must equal one unsharded adamw_step (clipping on the whole norm, segments cut at shard edges).
  std::mt19937 rng(11);
  const int64_t n = 30011;
  auto p = randv(n, rng), ps = p;
  std::vector<float> m(n), v(n);
  AdamWOptions o;
  o.lr = 1e-2f, o.weight_decay = 0.05f, o.max_grad_norm = 1.0f;
  std::vector<AdamWSegment> segs = {{0, 10000, 1.0f}, {10000, 7, 0.0f}, {10007, n - 10007, 1.0f}};
  const int64_t edges[] = {0, 10003, 20010, n};  // one edge inside the 7-element no-decay run
  std::vector<std::vector<float>> ms(3), vs(3);
  for (int r = 0; r < 3; ++r) ms[r].assign(edges[r + 1] - edges[r], 0.0f), vs[r].assign(edges[r + 1] - edges[r], 0.0f);
  for (int step = 1; step <= 5; ++step) {
    auto g = randv(n, rng, 0.5f);  // norm ≫ 1: every step clips
    AdamWResult whole = adamw_step(p.data(), g.data(), m.data(), v.data(), n, o, step, segs);
    for (int r = 0; r < 3; ++r) {
      AdamWResult part = adamw_step_range(ps.data(), g.data(), ms[r].data(), vs[r].data(), n, edges[r], edges[r + 1], o,
                                          step, segs, {});
      CHECK(part.grad_norm == whole.grad_norm);
      CHECK(!part.skipped);
    }
  }
  CHECK(std::memcmp(p.data(), ps.data(), n * 4) == 0);
  for (int r = 0; r < 3; ++r) {
    CHECK(std::memcmp(m.data() + edges[r], ms[r].data(), ms[r].size() * 4) == 0);
    CHECK(std::memcmp(v.data() + edges[r], vs[r].data(), vs[r].size() * 4) == 0);
  }
  bool threw = false;
  try {
    adamw_step_range(ps.data(), p.data(), ms[0].data(), vs[0].data(), n, 5, n + 1, o, 6, segs, {});
  } catch (const Error&) {
    threw = true;
  }
  CHECK(threw);
}
