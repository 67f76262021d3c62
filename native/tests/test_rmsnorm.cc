// RMSNorm: forward against the double reference; backward against the reference backward and
// finite differences; the += contract (two backward calls double the gradients).
#include "../cpu/rmsnorm.h"
#include "fd.h"

using namespace rlhf;
using namespace rlhf_test;

TEST(rmsnorm_forward_matches_reference) {
  const int64_t N = 37;
  const int C = 200;
  auto x = random_vec(N * C, 1, -3, 3), w = random_vec(C, 2, 0.5, 1.5);
  std::vector<float> out(N * C), ref(N * C), rs(N), rr(N);
  cpu::rmsnorm_forward(out.data(), rs.data(), x.data(), w.data(), N, C, 1e-6f);
  cpu::rmsnorm_forward_reference(ref.data(), rr.data(), x.data(), w.data(), N, C, 1e-6f);
  for (int64_t i = 0; i < N * C; ++i) CHECK_NEAR(out[i], ref[i], 1e-6, 2e-6);
  for (int64_t r = 0; r < N; ++r) CHECK_NEAR(rs[r], rr[r], 0, 2e-6);
}

TEST(rmsnorm_backward_reference_fd_and_accumulation) {
  const int64_t N = 9;
  const int C = 48;
  auto x = random_vec(N * C, 3, -2, 2), w = random_vec(C, 4, 0.5, 1.5), gw = random_vec(N * C, 5);
  std::vector<float> out(N * C), rs(N);
  cpu::rmsnorm_forward(out.data(), rs.data(), x.data(), w.data(), N, C, 1e-5f);
  std::vector<float> dx(N * C, 0.f), dw(C, 0.f), rdx(N * C, 0.f), rdw(C, 0.f);
  cpu::rmsnorm_backward(dx.data(), dw.data(), gw.data(), x.data(), w.data(), rs.data(), N, C);
  cpu::rmsnorm_backward_reference(rdx.data(), rdw.data(), gw.data(), x.data(), w.data(), rs.data(), N, C);
  for (int64_t i = 0; i < N * C; ++i) CHECK_NEAR(dx[i], rdx[i], 1e-5, 1e-4);
  for (int c = 0; c < C; ++c) CHECK_NEAR(dw[c], rdw[c], 1e-5, 1e-4);
  auto loss_x = [&](const std::vector<float>& xx) {
    std::vector<float> o(N * C);
    cpu::rmsnorm_forward_reference(o.data(), nullptr, xx.data(), w.data(), N, C, 1e-5f);
    return dot(o, gw);
  };
  CHECK(fd_check(loss_x, x, dx, 40, 1e-3, 2e-4, 2e-3, "rmsnorm dx"));
  auto loss_w = [&](const std::vector<float>& ww) {
    std::vector<float> o(N * C);
    cpu::rmsnorm_forward_reference(o.data(), nullptr, x.data(), ww.data(), N, C, 1e-5f);
    return dot(o, gw);
  };
  CHECK(fd_check(loss_w, w, dw, 20, 1e-3, 2e-4, 2e-3, "rmsnorm dw"));
  std::vector<float> dx2 = dx, dw2 = dw;  // second call accumulates: doubles
  cpu::rmsnorm_backward(dx2.data(), dw2.data(), gw.data(), x.data(), w.data(), rs.data(), N, C);
  for (int c = 0; c < C; ++c) CHECK_NEAR(dw2[c], 2 * dw[c], 1e-6, 1e-5);
  for (int64_t i = 0; i < N * C; ++i) CHECK_NEAR(dx2[i], 2 * dx[i], 1e-6, 1e-5);
}

// Per-head RMSNorm on strided head vectors (q/k inside a fused q/k/v row): forward against the
// double reference, columns outside the heads untouched, in place == out of place; backward
// against the reference and finite differences, dx overwritten (also in place), dw accumulated.
TEST(rmsnorm_heads_forward_backward) {
  const int64_t N = 7, ld = 3 * 24 + 5;  // 3 heads of 24 at column 0, 5 other columns after them
  const int H = 3, HD = 24;
  auto x = random_vec(N * ld, 11, -2, 2), w = random_vec(HD, 12, 0.5, 1.5), gw = random_vec(N * ld, 13);
  std::vector<float> out(N * ld, 7.f), ref(N * ld, 7.f), rs(N * H), rr(N * H);
  cpu::rmsnorm_heads_forward(out.data(), ld, rs.data(), x.data(), ld, w.data(), N, H, HD, 1e-6f);
  cpu::rmsnorm_heads_forward_reference(ref.data(), ld, rr.data(), x.data(), ld, w.data(), N, H, HD, 1e-6f);
  for (int64_t i = 0; i < N * ld; ++i) CHECK_NEAR(out[i], ref[i], 1e-6, 2e-6);
  for (int64_t i = 0; i < N * H; ++i) CHECK_NEAR(rs[i], rr[i], 0, 2e-6);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = H * HD; c < ld; ++c) CHECK(out[r * ld + c] == 7.f);
  std::vector<float> inplace = x;
  cpu::rmsnorm_heads_forward(inplace.data(), ld, nullptr, inplace.data(), ld, w.data(), N, H, HD, 1e-6f);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = 0; c < H * HD; ++c) CHECK(inplace[r * ld + c] == out[r * ld + c]);

  // backward: the loss Σ gw·out over the head columns
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = H * HD; c < ld; ++c) gw[r * ld + c] = 0.f;
  std::vector<float> dx(N * ld, 0.f), dw(HD, 0.5f), rdx(N * ld, 0.f), rdw(HD, 0.5f);
  cpu::rmsnorm_heads_backward(dx.data(), ld, dw.data(), gw.data(), ld, x.data(), ld, w.data(), rs.data(), N, H, HD);
  cpu::rmsnorm_heads_backward_reference(rdx.data(), ld, rdw.data(), gw.data(), ld, x.data(), ld, w.data(), rs.data(), N,
                                        H, HD);
  for (int64_t i = 0; i < N * ld; ++i) CHECK_NEAR(dx[i], rdx[i], 1e-5, 1e-4);
  for (int c = 0; c < HD; ++c) CHECK_NEAR(dw[c], rdw[c], 1e-5, 1e-4);
  auto loss_x = [&](const std::vector<float>& xx) {
    std::vector<float> o(N * ld, 0.f);
    cpu::rmsnorm_heads_forward_reference(o.data(), ld, nullptr, xx.data(), ld, w.data(), N, H, HD, 1e-6f);
    return dot(o, gw);
  };
  CHECK(fd_check(loss_x, x, dx, 40, 1e-3, 2e-4, 2e-3, "rmsnorm_heads dx"));
  std::vector<float> dw_only(HD, 0.f);
  cpu::rmsnorm_heads_backward(dx.data(), ld, dw_only.data(), gw.data(), ld, x.data(), ld, w.data(), rs.data(), N, H,
                              HD);
  auto loss_w = [&](const std::vector<float>& ww) {
    std::vector<float> o(N * ld, 0.f);
    cpu::rmsnorm_heads_forward_reference(o.data(), ld, nullptr, x.data(), ld, ww.data(), N, H, HD, 1e-6f);
    return dot(o, gw);
  };
  CHECK(fd_check(loss_w, w, dw_only, 20, 1e-3, 2e-4, 2e-3, "rmsnorm_heads dw"));
  for (int c = 0; c < HD; ++c) CHECK_NEAR(dw[c], 0.5f + dw_only[c], 1e-5, 1e-5);  // accumulated onto 0.5
  std::vector<float> d_inplace = gw;                                              // dx written over dout
  cpu::rmsnorm_heads_backward(d_inplace.data(), ld, nullptr, d_inplace.data(), ld, x.data(), ld, w.data(), rs.data(), N,
                              H, HD);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = 0; c < H * HD; ++c) CHECK(d_inplace[r * ld + c] == dx[r * ld + c]);
}

int main() { return run_all_tests(); }
