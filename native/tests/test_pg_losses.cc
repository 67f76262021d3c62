// Policy-gradient kernels: the closed forms of docs/algorithms.md section 7 (properties 11–14 for PPO / token
// rewards / GAE, and 1–8 for DPO / EXO) in native form, finite differences for every gradient,
// the overwrite contract, thread-count invariance and the errors. The elementwise comparison with
// the float64 TS references is test/engine/pg.test.ts.
#include <cmath>

#include "../core/thread_pool.h"
#include "../cpu/pg_losses.h"
#include "fd.h"

using namespace rlhf;
using namespace rlhf_test;
using cpu::DpoVariant;
using cpu::ExoForm;
using cpu::KlEstimator;

namespace {
const double kFdEps = 1.0 / 1024;  // x ± eps is exact in fp32 for |x| < 8

std::vector<float> random_mask(size_t n, unsigned seed, double p_valid = 0.8) {
  auto u = random_vec(n, seed, 0, 1);
  std::vector<float> m(n);
  for (size_t i = 0; i < n; ++i) m[i] = u[i] < p_valid ? 1.f : 0.f;
  return m;
}

struct Pol {  // ppo_policy_loss outputs
  std::vector<float> d;
  double loss, clip, kl, dual;
};
Pol policy(const std::vector<float>& lp, const std::vector<float>& old, const std::vector<float>& a,
           const std::vector<float>& m, double eps, double eps_high, double dual) {
  Pol r{std::vector<float>(lp.size(), 7.f), 0, 0, 0, 0};  // 7: overwrite is checked
  cpu::ppo_policy_loss(r.d.data(), lp.data(), old.data(), a.data(), m.data(), int64_t(lp.size()), eps, eps_high, dual,
                       &r.loss, &r.clip, &r.kl, &r.dual);
  return r;
}
}  // namespace

TEST(kl_estimators_closed_forms_and_fd) {
  const int64_t n = 300;
  // |d| <= 1.5 keeps kl small: the FD below differences fp32 outputs (rounding 3e-8 / 2eps ≈ 1e-5)
  auto lp = random_vec(n, 1, -1.5, 0), ref = random_vec(n, 2, -1.5, 0), m = random_mask(n, 3), w = random_vec(n, 4);
  for (auto est : {KlEstimator::K1, KlEstimator::K2, KlEstimator::K3}) {
    std::vector<float> kl(n, 7.f), d(n, 7.f);
    cpu::kl_per_token(kl.data(), d.data(), lp.data(), ref.data(), m.data(), n, est);
    for (int64_t i = 0; i < n; ++i) {
      const double x = double(lp[i]) - ref[i];
      const double k = est == KlEstimator::K1 ? x : est == KlEstimator::K2 ? 0.5 * x * x : std::exp(-x) - 1 + x;
      CHECK_NEAR(kl[i], m[i] ? k : 0.0, 1e-7, 1e-6);
      if (est != KlEstimator::K1 && m[i]) CHECK(kl[i] >= 0);
      if (!m[i]) CHECK(d[i] == 0.f);
    }
    auto loss = [&](const std::vector<float>& x) {
      std::vector<float> k(n);
      cpu::kl_per_token(k.data(), nullptr, x.data(), ref.data(), m.data(), n, est);
      return dot(k, w);
    };
    std::vector<float> g(n);  // ∂(Σ w kl)/∂logp = w · dlogp
    for (int64_t i = 0; i < n; ++i) g[i] = w[i] * d[i];
    CHECK(fd_check(loss, lp, g, 60, 1.0 / 256, 5e-5, 2e-3, "kl dlogp"));
    // property 13 (second half): π_old = π_ref gives every KL term exactly 0
    cpu::kl_per_token(kl.data(), d.data(), lp.data(), lp.data(), nullptr, n, est);
    for (int64_t i = 0; i < n; ++i) CHECK(kl[i] == 0.f);
  }
}

TEST(token_rewards_claim13) {
  const int64_t B = 5, T = 12;
  auto kl = random_vec(B * T, 5, -0.5, 1.5), score = random_vec(B, 6, -4, 4);
  auto m = random_mask(B * T, 7);
  for (int64_t t = 8; t < T; ++t) m[1 * T + t] = 0.f;  // row 1 right-padded
  m[2 * T + 0] = 1.f, m[2 * T + 11] = 0.f;             // row 2: a hole somewhere and a pad at the end
  const double beta = 0.05, clip = 3.0;
  std::vector<float> r(B * T, 7.f);
  cpu::token_rewards(r.data(), score.data(), kl.data(), beta, m.data(), B, T, clip);
  for (int64_t b = 0; b < B; ++b) {
    int64_t last = T - 1;
    while (!m[b * T + last]) --last;
    const double R = std::min(clip, std::max(-clip, double(score[b])));
    double sum = 0, klsum = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t;
      sum += r[i], klsum += m[i] * kl[i];
      if (!m[i])
        CHECK(r[i] == 0.f);
      else if (t != last)
        CHECK_NEAR(r[i], -beta * kl[i], 1e-7, 1e-6);  // the score only at the last valid token
    }
    CHECK_NEAR(sum, R - beta * klsum, 1e-5, 1e-5);
  }
  // π_old = π_ref: kl = 0 everywhere, so the rewards are the score at the last token and 0 elsewhere
  std::vector<float> zero(B * T);
  cpu::kl_per_token(zero.data(), nullptr, kl.data(), kl.data(), m.data(), B * T, KlEstimator::K3);
  cpu::token_rewards(r.data(), score.data(), zero.data(), beta, m.data(), B, T, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    double sum = 0;
    for (int64_t t = 0; t < T; ++t) sum += r[b * T + t];
    CHECK(sum == double(score[b]));  // no clamp with clip_score 0
  }
  m[3 * T + 0] = 0.f;
  for (int64_t t = 0; t < T; ++t) m[4 * T + t] = 0.f;
  CHECK_THROWS(cpu::token_rewards(r.data(), score.data(), kl.data(), beta, m.data(), B, T, 0.0), ErrorCode::OutOfRange);
}

TEST(gae_claim14_and_threads) {
  const int64_t B = 7, T = 33;
  auto rw = random_vec(B * T, 8, -1, 1), v = random_vec(B * T, 9, -2, 2), m = random_mask(B * T, 10);
  for (int64_t t = 20; t < T; ++t) m[3 * T + t] = 0.f;
  std::vector<float> adv(B * T, 7.f), ret(B * T, 7.f);
  // γ = λ = 1: A_t = Σ_{t' >= t} r_t' − V_t (over valid positions)
  cpu::gae(adv.data(), ret.data(), rw.data(), v.data(), m.data(), B, T, 1.0, 1.0);
  for (int64_t b = 0; b < B; ++b) {
    double tail = 0;
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t i = b * T + t;
      if (!m[i]) {
        CHECK(adv[i] == 0.f && ret[i] == 0.f);
        continue;
      }
      tail += rw[i];
      CHECK_NEAR(adv[i], tail - v[i], 1e-5, 1e-5);
      CHECK_NEAR(ret[i], tail, 1e-5, 1e-5);
    }
  }
  // λ = 0: A_t = δ_t = r_t + γ V_next − V_t, V_next the next valid position's value (0 after the last)
  const double gamma = 0.9;
  cpu::gae(adv.data(), ret.data(), rw.data(), v.data(), m.data(), B, T, gamma, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    double next_v = 0;
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t i = b * T + t;
      if (!m[i]) continue;
      CHECK_NEAR(adv[i], rw[i] + gamma * next_v - v[i], 1e-6, 1e-6);
      next_v = v[i];
    }
  }
  // rows are independent: any thread count gives the same bits
  const int64_t BB = 300;
  auto rw2 = random_vec(BB * T, 11), v2 = random_vec(BB * T, 12), m2 = random_mask(BB * T, 13);
  std::vector<float> a1(BB * T), r1(BB * T), a4(BB * T), r4(BB * T);
  ThreadPool one(1), four(4);
  {
    ScopedPool s(&one);
    cpu::gae(a1.data(), r1.data(), rw2.data(), v2.data(), m2.data(), BB, T, 0.99, 0.95);
  }
  {
    ScopedPool s(&four);
    cpu::gae(a4.data(), r4.data(), rw2.data(), v2.data(), m2.data(), BB, T, 0.99, 0.95);
  }
  CHECK(a1 == a4 && r1 == r4);
}

TEST(ppo_policy_claim11_single_tokens) {
  const double eps = 0.2;
  const std::vector<float> one{1.f};
  auto at = [&](double rho, float A, double eps_high = 0.2, double dual = 0) {
    return policy({float(std::log(rho))}, {0.f}, {A}, one, eps, eps_high, dual);
  };
  for (double rho : {0.85, 1.0, 1.15}) {  // inside [1 − ε, 1 + ε]: ℓ = −ρA, gradient −ρA
    for (float A : {1.5f, -0.7f}) {
      auto r = at(rho, A);
      const double rr = std::exp(double(float(std::log(rho))));
      CHECK_NEAR(r.loss, -rr * A, 1e-12, 1e-12);
      CHECK_NEAR(r.d[0], -rr * A, 1e-7, 1e-6);
      CHECK(r.clip == 0);
    }
  }
  auto hi = at(1.5, 2.f);  // A > 0, ρ > 1 + ε: clipped, gradient exactly 0
  CHECK(hi.d[0] == 0.f && hi.clip == 1);
  CHECK_NEAR(hi.loss, -1.2 * 2, 1e-12, 1e-12);
  auto lo = at(0.5, -1.f);  // A < 0, ρ < 1 − ε: clipped, gradient exactly 0
  CHECK(lo.d[0] == 0.f && lo.clip == 1);
  CHECK_NEAR(lo.loss, 0.8, 1e-12, 1e-12);
  auto free_lo = at(0.5, 1.f);  // A > 0, ρ < 1 − ε: the unclipped term is the smaller one
  CHECK(free_lo.clip == 0 && free_lo.d[0] != 0.f);
  auto zero_a = at(1.5, 0.f);  // A = 0: a tie, not clipped, gradient 0
  CHECK(zero_a.clip == 0 && zero_a.d[0] == 0.f && zero_a.loss == 0);
  auto higher = at(1.25, 1.f, 0.28);  // clip-higher: ρ = 1.25 < 1 + ε_high is not clipped
  CHECK(higher.clip == 0 && higher.d[0] != 0.f);
  auto dual = at(5.0, -1.f, 0.2, 3.0);  // A < 0, ρ > c: the dual clip bounds ℓ at −cA, gradient 0
  CHECK(dual.dual == 1 && dual.clip == 0 && dual.d[0] == 0.f);
  CHECK_NEAR(dual.loss, 3.0, 1e-12, 1e-12);
  auto no_dual = at(5.0, -1.f, 0.2, 1.0);  // dual_clip <= 1: off
  CHECK(no_dual.dual == 0 && no_dual.d[0] != 0.f);
}

TEST(ppo_policy_claim12_and_fd) {
  const int64_t n = 400;
  auto old = random_vec(n, 14, -4, -0.1), a = random_vec(n, 15, -2, 2), m = random_mask(n, 16);
  // property 12: π_θ = π_old gives ρ = 1, so loss = −mean(A), no clipping, approx_kl = 0
  auto r = policy(old, old, a, m, 0.2, 0.2, 3.0);
  double mean = 0, count = 0;
  for (int64_t i = 0; i < n; ++i) mean += m[i] * a[i], count += m[i];
  CHECK_NEAR(r.loss, -mean / count, 1e-12, 1e-12);
  CHECK(r.clip == 0 && r.kl == 0 && r.dual == 0);
  for (int64_t i = 0; i < n; ++i) CHECK_NEAR(r.d[i], m[i] ? -a[i] / count : 0.0, 1e-9, 1e-6);
  // finite differences with ratios on both sides of the clip range
  auto lp = old;
  auto shift = random_vec(n, 17, -0.5, 0.5);
  for (int64_t i = 0; i < n; ++i) lp[i] += shift[i];
  for (double dual : {0.0, 1.5}) {
    auto rr = policy(lp, old, a, m, 0.2, 0.3, dual);
    CHECK(rr.clip > 0.1 && rr.clip < 0.9);
    for (int64_t i = 0; i < n; ++i) CHECK(m[i] || rr.d[i] == 0.f);
    auto loss = [&](const std::vector<float>& x) { return policy(x, old, a, m, 0.2, 0.3, dual).loss; };
    CHECK(fd_check(loss, lp, rr.d, 80, kFdEps, 1e-7, 2e-3, "ppo dlogp"));
  }
  auto none = policy(lp, old, a, std::vector<float>(n, 0.f), 0.2, 0.2, 0);  // no valid token: all 0
  CHECK(none.loss == 0 && none.clip == 0 && none.kl == 0);
  for (float d : none.d) CHECK(d == 0.f);
}

TEST(ppo_value_loss_closed_form_and_fd) {
  const int64_t n = 300;
  auto v = random_vec(n, 18, -2, 2), old = random_vec(n, 19, -2, 2), g = random_vec(n, 20, -2, 2);
  auto m = random_mask(n, 21);
  std::vector<float> d(n, 7.f);
  double loss, clip;
  cpu::ppo_value_loss(d.data(), v.data(), old.data(), g.data(), m.data(), n, 0.0, &loss, &clip);  // no clip
  double ref = 0, count = 0;
  for (int64_t i = 0; i < n; ++i) ref += m[i] * 0.5 * (double(v[i]) - g[i]) * (double(v[i]) - g[i]), count += m[i];
  CHECK_NEAR(loss, ref / count, 1e-12, 1e-10);
  CHECK(clip == 0);
  cpu::ppo_value_loss(d.data(), v.data(), old.data(), g.data(), m.data(), n, 0.3, &loss, &clip);
  CHECK(clip > 0.1 && clip < 0.9);
  for (int64_t i = 0; i < n; ++i) {
    const double vc = old[i] + std::min(0.3, std::max(-0.3, double(v[i]) - old[i]));
    const bool clipped = (vc - g[i]) * (vc - g[i]) > (double(v[i]) - g[i]) * (double(v[i]) - g[i]);
    if (!m[i] || clipped)
      CHECK(d[i] == 0.f);
    else
      CHECK_NEAR(d[i], (double(v[i]) - g[i]) / count, 1e-9, 1e-6);
  }
  auto lossf = [&](const std::vector<float>& x) {
    std::vector<float> dd(n);
    double l, c;
    cpu::ppo_value_loss(dd.data(), x.data(), old.data(), g.data(), m.data(), n, 0.3, &l, &c);
    return l;
  };
  CHECK(fd_check(lossf, v, d, 80, kFdEps, 1e-7, 2e-3, "value dvalues"));
}

namespace {
struct Pair {
  std::vector<float> dc, dr, rc, rr, p;
  double loss, acc, margin;
};
Pair run_pair(bool exo, const std::vector<float>& pc, const std::vector<float>& pr, const std::vector<float>& rfc,
              const std::vector<float>& rfr, double beta, double param, int variant) {
  const int64_t N = int64_t(pc.size());
  Pair r{std::vector<float>(N, 7.f),
         std::vector<float>(N, 7.f),
         std::vector<float>(N),
         std::vector<float>(N),
         std::vector<float>(N),
         0,
         0,
         0};
  if (exo)
    cpu::exo_pref_loss(r.dc.data(), r.dr.data(), r.p.data(), r.rc.data(), r.rr.data(), pc.data(), pr.data(), rfc.data(),
                       rfr.data(), N, beta, param, ExoForm(variant), &r.loss, &r.acc, &r.margin);
  else
    cpu::dpo_loss(r.dc.data(), r.dr.data(), r.rc.data(), r.rr.data(), pc.data(), pr.data(), rfc.data(), rfr.data(), N,
                  beta, param, DpoVariant(variant), &r.loss, &r.acc, &r.margin);
  return r;
}
}  // namespace

TEST(dpo_claims_1_to_3_and_fd) {
  const int64_t N = 24;
  auto pc = random_vec(N, 22, -40, -10), pr = random_vec(N, 23, -40, -10);
  auto rc = random_vec(N, 24, -40, -10), rr = random_vec(N, 25, -40, -10);
  const double beta = 0.1;
  auto same = run_pair(false, pc, pr, pc, pr, beta, 0.0, 0);  // π_θ = π_ref: log 2, gradient −β/2 (÷ N)
  CHECK_NEAR(same.loss, std::log(2.0), 1e-15, 1e-14);
  for (int64_t i = 0; i < N; ++i) CHECK_NEAR(same.dc[i], -beta / 2 / N, 1e-12, 1e-6);
  for (int64_t i = 0; i < N; ++i) CHECK(same.dr[i] == -same.dc[i]);
  auto base = run_pair(false, pc, pr, rc, rr, beta, 0.0, 0);
  auto pc2 = pc, pr2 = pr;  // property 3: adding one constant to both policy log-probs of a pair
  for (int64_t i = 0; i < N; ++i) pc2[i] += 0.5f, pr2[i] += 0.5f;  // exact: |x| < 64, ulp <= 2^-18
  auto shifted = run_pair(false, pc2, pr2, rc, rr, beta, 0.0, 0);
  CHECK_NEAR(shifted.loss, base.loss, 1e-12, 1e-9);
  double acc = 0;
  for (int64_t i = 0; i < N; ++i) acc += (beta * (double(pc[i]) - rc[i]) > beta * (double(pr[i]) - rr[i])) / double(N);
  CHECK_NEAR(base.acc, acc, 1e-12, 0);
  for (int variant : {0, 1})
    for (double ls : {0.0, 0.2}) {
      if (variant == 1 && ls != 0) continue;
      auto r = run_pair(false, pc, pr, rc, rr, beta, ls, variant);
      if (variant == 1) {  // IPO closed form
        double l = 0;
        for (int64_t i = 0; i < N; ++i) {
          const double z = (double(pc[i]) - rc[i]) - (double(pr[i]) - rr[i]), e = z - 1 / (2 * beta);
          l += e * e / N;
        }
        CHECK_NEAR(r.loss, l, 1e-12, 1e-10);
      }
      auto lc = [&](const std::vector<float>& x) { return run_pair(false, x, pr, rc, rr, beta, ls, variant).loss; };
      auto lr = [&](const std::vector<float>& x) { return run_pair(false, pc, x, rc, rr, beta, ls, variant).loss; };
      CHECK(fd_check(lc, pc, r.dc, 12, kFdEps * 8, 1e-7, 2e-3, "dpo d_chosen"));
      CHECK(fd_check(lr, pr, r.dr, 12, kFdEps * 8, 1e-7, 2e-3, "dpo d_rejected"));
    }
  CHECK_THROWS(run_pair(false, pc, pr, rc, rr, beta, 0.1, 1), ErrorCode::OutOfRange);  // ipo + label smoothing
}

TEST(exo_pref_claims_4_to_6_and_fd) {
  const int64_t N = 16;
  auto pc = random_vec(N, 26, -3, 0), pr = random_vec(N, 27, -3, 0), rc = random_vec(N, 28, -3, 0),
       rr = random_vec(N, 29, -3, 0);
  const double beta = 2.0, eps = 1e-3, target = std::log((1 - eps) / eps);
  auto r = run_pair(true, pc, pr, rc, rr, beta, eps, 0);
  CHECK(r.loss >= 0);
  for (int64_t i = 0; i < N; ++i) {  // property 6: the gradient pushes βz towards the target from both sides
    const double u = beta * ((double(pc[i]) - rc[i]) - (double(pr[i]) - rr[i]));
    CHECK((u < target) == (r.dc[i] < 0));
    CHECK(r.dr[i] == -r.dc[i]);
  }
  // property 4: ℓ = 0 and ∂ℓ/∂z = 0 at βz = log((1 − ε)/ε)
  std::vector<float> z1{float(target / beta)}, z0{0.f};
  auto at = run_pair(true, z1, z0, z0, z0, beta, eps, 0);
  CHECK_NEAR(at.loss, 0, 1e-12, 0);
  CHECK_NEAR(at.dc[0], 0, 1e-6, 0);
  // property 5: the official form = TRL form + log(1 − ε) for ε = 1/(1 + e^10), same gradients
  const double eo = 1 / (1 + std::exp(10.0));
  auto trl = run_pair(true, pc, pr, rc, rr, beta, eo, 0), off = run_pair(true, pc, pr, rc, rr, beta, eo, 1);
  CHECK_NEAR(off.loss - trl.loss, std::log1p(-eo), 1e-12, 0);
  CHECK(off.dc == trl.dc && off.dr == trl.dr);
  auto lc = [&](const std::vector<float>& x) { return run_pair(true, x, pr, rc, rr, beta, eps, 0).loss; };
  auto lr = [&](const std::vector<float>& x) { return run_pair(true, pc, x, rc, rr, beta, eps, 0).loss; };
  CHECK(fd_check(lc, pc, r.dc, 12, kFdEps, 1e-7, 2e-3, "exo-pref d_chosen"));
  CHECK(fd_check(lr, pr, r.dr, 12, kFdEps, 1e-7, 2e-3, "exo-pref d_rejected"));
}

TEST(exo_rw_claims_7_8_and_fd) {
  const int64_t K = 4, G = 6, N = K * G;
  auto pol = random_vec(N, 30, -3, 0), ref = random_vec(N, 31, -3, 0), rw = random_vec(N, 32, -2, 2);
  const double bp = 1.5, br = 0.5;
  std::vector<float> d(N, 7.f), p(N), q(N), gkl(G);
  double loss;
  cpu::exo_rw_loss(d.data(), p.data(), q.data(), gkl.data(), pol.data(), ref.data(), rw.data(), N, K, bp, br, &loss);
  double mean = 0;
  for (int64_t g = 0; g < G; ++g) {
    double s = 0, ps = 0, qs = 0;
    for (int64_t i = 0; i < K; ++i) s += d[g * K + i], ps += p[g * K + i], qs += q[g * K + i];
    CHECK_NEAR(s, 0, 1e-7, 0);  // property 8: gradients sum to 0 over a group
    CHECK_NEAR(ps, 1, 1e-6, 0);
    CHECK_NEAR(qs, 1, 1e-6, 0);
    CHECK(gkl[g] >= 0);
    mean += gkl[g] / double(G);
  }
  CHECK_NEAR(loss, mean, 1e-7, 1e-6);
  auto lf = [&](const std::vector<float>& x) {
    std::vector<float> dd(N);
    double l;
    cpu::exo_rw_loss(dd.data(), nullptr, nullptr, nullptr, x.data(), ref.data(), rw.data(), N, K, bp, br, &l);
    return l;
  };
  CHECK(fd_check(lf, pol, d, 24, kFdEps, 1e-7, 2e-3, "exo-rw d_policy"));
  // property 7: L = 0 when h_i − h_j = (r_i − r_j)/(β_π β_r); a constant added to a group changes nothing
  std::vector<float> zero(N, 0.f), pol2(N);
  for (int64_t i = 0; i < N; ++i) pol2[i] = float(rw[i] / (bp * br) + (i / K) * 0.25);
  cpu::exo_rw_loss(d.data(), nullptr, nullptr, nullptr, pol2.data(), zero.data(), rw.data(), N, K, bp, br, &loss);
  CHECK_NEAR(loss, 0, 1e-12, 0);
  for (float x : d) CHECK_NEAR(x, 0, 1e-7, 0);
  CHECK_THROWS(
      cpu::exo_rw_loss(d.data(), nullptr, nullptr, nullptr, pol.data(), ref.data(), rw.data(), N - 1, K, bp, br, &loss),
      ErrorCode::OutOfRange);
  CHECK_THROWS(
      cpu::exo_rw_loss(d.data(), nullptr, nullptr, nullptr, pol.data(), ref.data(), rw.data(), N, 1, bp, br, &loss),
      ErrorCode::OutOfRange);
}

// ---- aggregation weights, weighted losses, GSPO ------------------------------------------------
namespace {
// rows 1 and 4 empty: the seq-mean modes leave them out of the mean
std::vector<float> rows_mask(int64_t B, int64_t T, unsigned seed) {
  auto m = random_mask(B * T, seed, 0.7);
  for (int64_t t = 0; t < T; ++t) m[1 * T + t] = 0.f, m[4 * T + t] = 0.f;
  m[0] = 1.f;
  return m;
}
}  // namespace

TEST(aggregation_weights_against_plain_reference) {
  const int64_t B = 6, T = 9;
  auto m = rows_mask(B, T, 40);
  const double norm = 12;
  for (auto mode : {cpu::Aggregation::TokenMean, cpu::Aggregation::SeqMeanTokenMean, cpu::Aggregation::SeqMeanTokenSum,
                    cpu::Aggregation::SeqMeanTokenSumNorm}) {
    std::vector<double> w(B * T, 7.0);
    cpu::aggregation_weights(w.data(), m.data(), B, T, mode, norm);
    double total = 0, rows = 0;
    for (float x : m) total += x;
    for (int64_t b = 0; b < B; ++b) {
      double c = 0;
      for (int64_t t = 0; t < T; ++t) c += m[b * T + t];
      rows += c > 0;
    }
    double sum = 0;
    for (int64_t b = 0; b < B; ++b) {
      double c = 0;
      for (int64_t t = 0; t < T; ++t) c += m[b * T + t];
      for (int64_t t = 0; t < T; ++t) {
        const double want = !m[b * T + t]                                ? 0
                            : mode == cpu::Aggregation::TokenMean        ? 1 / total
                            : mode == cpu::Aggregation::SeqMeanTokenMean ? 1 / (c * rows)
                            : mode == cpu::Aggregation::SeqMeanTokenSum  ? 1 / rows
                                                                         : 1 / (B * norm);
        CHECK_NEAR(w[b * T + t], want, 1e-17, 1e-15);
        sum += w[b * T + t];
      }
    }
    if (mode == cpu::Aggregation::TokenMean || mode == cpu::Aggregation::SeqMeanTokenMean)
      CHECK_NEAR(sum, 1.0, 1e-14, 0);
  }
  std::vector<float> none(B * T, 0.f);
  std::vector<double> w(B * T, 7.0);
  cpu::aggregation_weights(w.data(), none.data(), B, T, cpu::Aggregation::SeqMeanTokenMean, 1);
  for (double x : w) CHECK(x == 0.0);
  CHECK_THROWS(cpu::aggregation_weights(w.data(), m.data(), B, T, cpu::Aggregation::SeqMeanTokenSumNorm, 0),
               ErrorCode::OutOfRange);
}

TEST(weighted_ppo_policy_loss_clip_higher_against_plain_reference_and_fd) {
  const int64_t B = 6, T = 9, n = B * T;
  auto m = rows_mask(B, T, 41);
  auto old = random_vec(n, 42, -3, -0.5), lr = random_vec(n, 43, -0.4, 0.4), a = random_vec(n, 44, -2, 2);
  std::vector<float> lp(n);
  for (int64_t i = 0; i < n; ++i) lp[i] = old[i] + lr[i];
  const double eps = 0.2, eps_high = 0.28;
  // token-mean weights give the unweighted kernel's numbers exactly
  std::vector<double> w(n);
  cpu::aggregation_weights(w.data(), m.data(), B, T, cpu::Aggregation::TokenMean, 1);
  Pol plain = policy(lp, old, a, m, eps, eps_high, 0);
  std::vector<float> d(n, 7.f);
  double loss, clip, kl;
  cpu::ppo_policy_loss(d.data(), lp.data(), old.data(), a.data(), m.data(), n, eps, eps_high, 0, &loss, &clip, &kl,
                       nullptr, w.data());
  CHECK(loss == plain.loss);
  for (int64_t i = 0; i < n; ++i) CHECK(d[i] == plain.d[i]);
  // seq-mean-token-sum with clip-higher: mean over non-empty rows of Σ_t −min(ρA, clip(ρ, 1 − ε, 1 + ε_h)A)
  cpu::aggregation_weights(w.data(), m.data(), B, T, cpu::Aggregation::SeqMeanTokenSum, 1);
  cpu::ppo_policy_loss(d.data(), lp.data(), old.data(), a.data(), m.data(), n, eps, eps_high, 0, &loss, &clip, &kl,
                       nullptr, w.data());
  double want = 0;
  int rows = 0, highs = 0;
  for (int64_t b = 0; b < B; ++b) {
    double row = 0;
    bool any = false;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t;
      if (!m[i]) continue;
      any = true;
      const double rho = std::exp(double(lp[i]) - double(old[i]));
      row += -std::min(rho * a[i], std::min(1 + eps_high, std::max(1 - eps, rho)) * a[i]);
      highs += a[i] > 0 && rho > 1 + eps && rho <= 1 + eps_high;  // clipped only by a symmetric clip
    }
    if (any) want += row, ++rows;
  }
  CHECK_NEAR(loss, want / rows, 1e-14, 1e-12);
  CHECK(highs > 0);  // the test exercises the band between 1 + ε and 1 + ε_high
  auto f = [&](const std::vector<float>& x) {
    std::vector<float> g(n);
    double l, c, k;
    cpu::ppo_policy_loss(g.data(), x.data(), old.data(), a.data(), m.data(), n, eps, eps_high, 0, &l, &c, &k, nullptr,
                         w.data());
    return l;
  };
  CHECK(fd_check(f, lp, d, 60, kFdEps / 8, 5e-6, 2e-3, "weighted ppo dlogp"));
}

TEST(gspo_closed_form_fd_and_sequence_clipping) {
  const int64_t B = 6, T = 9, n = B * T;
  auto m = rows_mask(B, T, 45);
  auto old = random_vec(n, 46, -3, -0.5), lr = random_vec(n, 47, -0.3, 0.3), arow = random_vec(B, 48, -2, 2);
  std::vector<float> lp(n), a(n);
  arow[0] = 1.5f;  // row 0: A > 0 and every token ratio raised, so s_0 > 1.1 is clipped at 1 + ε = 1.02
  for (int64_t i = 0; i < n; ++i) lp[i] = old[i] + lr[i] + (i < T ? 0.4f : 0.f), a[i] = arow[i / T];
  // the paper's J_GSPO with one advantage per sequence: mean over non-empty rows of min(s A, clip(s) A)
  for (double eps : {0.9, 0.02}) {
    std::vector<float> d(n, 7.f);
    double loss, clip, kl;
    cpu::gspo_policy_loss(d.data(), lp.data(), old.data(), a.data(), m.data(), nullptr, B, T, eps, eps, &loss, &clip,
                          &kl);
    double want = 0;
    int rows = 0;
    for (int64_t b = 0; b < B; ++b) {
      double sum = 0, c = 0;
      for (int64_t t = 0; t < T; ++t)
        if (m[b * T + t]) sum += double(lp[b * T + t]) - double(old[b * T + t]), ++c;
      if (!c) continue;
      const double s = std::exp(sum / c), A = arow[b];
      const bool clipped = std::min(1 + eps, std::max(1 - eps, s)) * A < s * A;
      want += -std::min(s * A, std::min(1 + eps, std::max(1 - eps, s)) * A), ++rows;
      for (int64_t t = 0; t < T; ++t) {  // ∂/∂logp_t = −(s / n_b) A / B' unless the sequence is clipped (B' = 4)
        if (m[b * T + t])
          CHECK_NEAR(d[b * T + t], clipped ? 0.0 : -s * A / c / 4.0, 1e-7, 1e-5);
        else
          CHECK(d[b * T + t] == 0.f);
      }
    }
    CHECK(rows == 4);
    CHECK_NEAR(loss, want / rows, 1e-14, 1e-12);
    if (eps < 0.5)
      CHECK(clip > 0);
    else
      CHECK(clip == 0);
  }
  // token-varying advantages and arbitrary weights: the gradient is exact (finite differences)
  auto at = random_vec(n, 49, -2, 2);
  std::vector<double> w(n);
  cpu::aggregation_weights(w.data(), m.data(), B, T, cpu::Aggregation::SeqMeanTokenSum, 1);
  std::vector<float> d(n);
  double loss, clip, kl;
  cpu::gspo_policy_loss(d.data(), lp.data(), old.data(), at.data(), m.data(), w.data(), B, T, 0.9, 0.9, &loss, &clip,
                        &kl);
  auto f = [&](const std::vector<float>& x) {
    std::vector<float> g(n);
    double l, c, k;
    cpu::gspo_policy_loss(g.data(), x.data(), old.data(), at.data(), m.data(), w.data(), B, T, 0.9, 0.9, &l, &c, &k);
    return l;
  };
  CHECK(fd_check(f, lp, d, 60, kFdEps / 8, 5e-6, 2e-3, "gspo dlogp"));
}

TEST(entropy_bonus_and_kl_loss_against_plain_reference_and_fd) {
  const int64_t B = 6, T = 9, n = B * T;
  auto m = rows_mask(B, T, 50);
  auto ent = random_vec(n, 51, 0, 4), lp = random_vec(n, 52, -2, 0), ref = random_vec(n, 53, -2, 0);
  std::vector<double> w(n);
  cpu::aggregation_weights(w.data(), m.data(), B, T, cpu::Aggregation::SeqMeanTokenMean, 1);
  const double coef = 0.3;
  std::vector<float> d(n, 7.f);
  double loss, mean;
  cpu::entropy_bonus(d.data(), ent.data(), m.data(), w.data(), n, coef, &loss, &mean);
  double want = 0, s = 0, c = 0;
  for (int64_t i = 0; i < n; ++i)
    if (m[i]) want -= coef * w[i] * ent[i], s += ent[i], ++c;
  CHECK_NEAR(loss, want, 1e-14, 1e-12);
  CHECK_NEAR(mean, s / c, 1e-14, 1e-12);
  for (int64_t i = 0; i < n; ++i) CHECK_NEAR(d[i], m[i] ? -coef * w[i] : 0.0, 1e-9, 1e-6);
  for (auto est : {KlEstimator::K1, KlEstimator::K2, KlEstimator::K3}) {
    std::vector<float> g(n, 7.f), k(n);
    cpu::kl_loss(g.data(), lp.data(), ref.data(), m.data(), w.data(), n, est, coef, &loss, &mean);
    cpu::kl_per_token(k.data(), nullptr, lp.data(), ref.data(), m.data(), n, est);
    double want_kl = 0;
    for (int64_t i = 0; i < n; ++i) want_kl += coef * w[i] * k[i];
    CHECK_NEAR(loss, want_kl, 1e-7, 1e-5);  // k rounded to fp32 in kl_per_token
    auto f = [&](const std::vector<float>& x) {
      std::vector<float> gg(n);
      double l, mm;
      cpu::kl_loss(gg.data(), x.data(), ref.data(), m.data(), w.data(), n, est, coef, &l, &mm);
      return l;
    };
    CHECK(fd_check(f, lp, g, 60, kFdEps, 5e-6, 2e-3, "kl_loss dlogp"));
  }
}

TEST(argument_errors) {
  std::vector<float> x(4, 0.f), m{1.f, 0.5f, 1.f, 0.f}, out(4);
  double l, c, k;
  CHECK_THROWS(cpu::ppo_policy_loss(out.data(), x.data(), x.data(), x.data(), m.data(), 4, 0.2, 0.2, 0, &l, &c, &k),
               ErrorCode::OutOfRange);  // mask value 0.5
  m[1] = 1.f;
  CHECK_THROWS(cpu::ppo_policy_loss(out.data(), x.data(), x.data(), x.data(), m.data(), 4, 1.0, 0.2, 0, &l, &c, &k),
               ErrorCode::OutOfRange);  // clip_eps must be < 1
  CHECK_THROWS(cpu::gae(out.data(), out.data(), x.data(), x.data(), m.data(), 1, 4, 1.5, 1.0), ErrorCode::OutOfRange);
  CHECK_THROWS(cpu::kl_per_token(out.data(), nullptr, x.data(), x.data(), m.data(), 4, KlEstimator(7)),
               ErrorCode::OutOfRange);
  CHECK_THROWS(cpu::token_rewards(out.data(), x.data(), x.data(), -1.0, m.data(), 1, 4, 0), ErrorCode::OutOfRange);
}

int main() { return run_all_tests(); }
