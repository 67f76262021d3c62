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

int main() { return run_all_tests(); }
