// RoPE: identity at position 0, unrotated tail dims for partial rotary (GLM), the relative
// property q(p)·k(p') depending only on p − p', the interleaved / half-split pairings against a
// direct formula, backward as the exact inverse, and scaled RoPE (given frequencies, a cos/sin
// factor, a position limit).
#include <cmath>

#include "../cpu/rope.h"
#include "fd.h"

using namespace rlhf;
using namespace rlhf_test;

namespace {
std::vector<float> rotate(const std::vector<float>& v, int HD, int32_t pos, const cpu::RopeTable& t, bool bwd = false) {
  std::vector<float> x = v;
  cpu::rope_apply(x.data(), 1, HD, 1, HD, &pos, t, bwd);
  return x;
}
}  // namespace

TEST(rope_position_zero_is_identity_and_partial_tail_untouched) {
  for (bool inter : {false, true}) {
    cpu::RopeTable t(8, 10000.f, inter);  // HD 16, rotary 8 (GLM: partial factor 0.5)
    t.ensure(100);
    auto v = random_vec(16, 7);
    auto r0 = rotate(v, 16, 0, t);
    for (int d = 0; d < 16; ++d) CHECK(r0[d] == v[d]);
    auto r = rotate(v, 16, 37, t);
    for (int d = 8; d < 16; ++d) CHECK(r[d] == v[d]);
    double n0 = 0, n1 = 0;  // rotation preserves the norm
    for (int d = 0; d < 16; ++d) n0 += double(v[d]) * v[d], n1 += double(r[d]) * r[d];
    CHECK_NEAR(n1, n0, 1e-5, 1e-5);
  }
}

TEST(rope_pairs_follow_hf_convention) {
  const int HD = 8;
  const double theta = 10000.0;
  auto v = random_vec(HD, 8);
  for (bool inter : {false, true}) {
    cpu::RopeTable t(HD, static_cast<float>(theta), inter);
    t.ensure(5);
    auto r = rotate(v, HD, 5, t);
    for (int i = 0; i < HD / 2; ++i) {
      double ang = 5.0 / std::pow(theta, 2.0 * i / HD);
      int a = inter ? 2 * i : i, b = inter ? 2 * i + 1 : i + HD / 2;
      CHECK_NEAR(r[a], v[a] * std::cos(ang) - v[b] * std::sin(ang), 1e-5, 0);
      CHECK_NEAR(r[b], v[b] * std::cos(ang) + v[a] * std::sin(ang), 1e-5, 0);
    }
  }
}

TEST(rope_relative_property_and_inverse) {
  cpu::RopeTable t(16, 10000.f, true);
  t.ensure(200);
  auto q = random_vec(16, 9), k = random_vec(16, 10);
  auto score = [&](int pq, int pk) {
    auto a = rotate(q, 16, pq, t), b = rotate(k, 16, pk, t);
    double s = 0;
    for (int d = 0; d < 16; ++d) s += double(a[d]) * b[d];
    return s;
  };
  CHECK_NEAR(score(10, 3), score(107, 100), 1e-4, 0);
  CHECK_NEAR(score(50, 50), score(0, 0), 1e-4, 0);
  auto back = rotate(rotate(q, 16, 123, t), 16, 123, t, true);
  for (int d = 0; d < 16; ++d) CHECK_NEAR(back[d], q[d], 1e-6, 0);
}

TEST(rope_scaled_frequencies_factor_and_limit) {
  const int HD = 8;
  const std::vector<float> inv = {1.0f, 0.25f, 0.01f, 0.001f};
  const float scale = 1.25f;
  cpu::RopeTable t(HD, 10000.f, false, inv, scale, 50);
  t.ensure(49);
  auto v = random_vec(HD, 11);
  auto r = rotate(v, HD, 7, t);
  for (int i = 0; i < HD / 2; ++i) {
    double ang = 7.0 * inv[i];  // the given frequencies, and both components scaled
    CHECK_NEAR(r[i], scale * (v[i] * std::cos(ang) - v[i + HD / 2] * std::sin(ang)), 1e-5, 0);
    CHECK_NEAR(r[i + HD / 2], scale * (v[i + HD / 2] * std::cos(ang) + v[i] * std::sin(ang)), 1e-5, 0);
  }
  // backward is the transpose: scale² times the inverse
  auto back = rotate(r, HD, 7, t, true);
  for (int d = 0; d < HD; ++d) CHECK_NEAR(back[d], scale * scale * v[d], 1e-5, 0);
  CHECK_THROWS(t.ensure(50), ErrorCode::Unsupported);
  CHECK_THROWS(cpu::RopeTable(HD, 10000.f, false, {1.0f, 2.0f}, 1.0f, 0), ErrorCode::OutOfRange);
  CHECK_THROWS(cpu::RopeTable(HD, 10000.f, false, inv, 0.0f, 0), ErrorCode::OutOfRange);
}

int main() { return run_all_tests(); }
