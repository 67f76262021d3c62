// Policy-gradient kernels on the device against the CPU kernels of native/cpu/pg_losses (which
// test/engine/pg.test.ts checks against the float64 TypeScript references), on random inputs with
// ragged masks. Both evaluate each formula in double from fp32 inputs: fp32 outputs may differ by
// one fp32 rounding (rtol 1e-6, atol 1e-9), scalar results by the summation order (rtol 1e-9).
// Clip decisions are identical, so fractions are compared exactly.
#include "../../cpu/pg_losses.h"
#include "../pg.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;
namespace cpu = rlhf::cpu;
namespace cu = rlhf::cuda;

namespace {

std::vector<float> random_mask(size_t n, double p_valid) {
  auto u = random_vector(n, 0.0f, 1.0f);
  std::vector<float> m(n);
  for (size_t i = 0; i < n; ++i) m[i] = u[i] < p_valid ? 1.0f : 0.0f;
  return m;
}

const int64_t kSizes[] = {1, 31, 1000, 5003};

}  // namespace

TEST(cuda_pg_kl_per_token) {
  DeviceArray<double> scratch(cu::pg_scratch_doubles());
  for (int64_t n : kSizes)
    for (auto est : {cpu::KlEstimator::K1, cpu::KlEstimator::K2, cpu::KlEstimator::K3}) {
      auto logp = random_vector(n, -5.0f, 0.0f), ref = random_vector(n, -5.0f, 0.0f), mask = random_mask(n, 0.8);
      std::vector<float> kl(n), d(n);
      cpu::kl_per_token(kl.data(), d.data(), logp.data(), ref.data(), mask.data(), n, est);
      DeviceArray<float> lp(logp), rf(ref), mk(mask), kld(n), dd(n);
      CHECK_OK(cu::kl_per_token(kld, dd, lp, rf, mk, n, est, scratch, nullptr));
      EXPECT_CLOSE(shape_tag("kl", n, int(est)).c_str(), kld.download(), kl, 1e-9, 1e-6);
      EXPECT_CLOSE(shape_tag("dlogp", n, int(est)).c_str(), dd.download(), d, 1e-9, 1e-6);
    }
}

TEST(cuda_pg_token_rewards_and_gae) {
  DeviceArray<double> scratch(cu::pg_scratch_doubles());
  for (auto [B, T] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {37, 100}, {300, 9}}) {
    auto kl = random_vector(B * T), values = random_vector(B * T), score = random_vector(B, -3.0f, 3.0f);
    auto mask = random_mask(B * T, 0.7);
    for (int64_t b = 0; b < B; ++b) {
      mask[b * T] = 1.0f;                                                       // every row has a valid token
      for (int64_t t = T - T / 4; t < T && b % 2; ++t) mask[b * T + t] = 0.0f;  // right padding
      if (b % 2) mask[b * T] = 1.0f;
    }
    std::vector<float> rewards(B * T), adv(B * T), ret(B * T);
    cpu::token_rewards(rewards.data(), score.data(), kl.data(), 0.05, mask.data(), B, T, 2.0);
    cpu::gae(adv.data(), ret.data(), rewards.data(), values.data(), mask.data(), B, T, 0.99, 0.95);
    DeviceArray<float> kld(kl), vd(values), sd(score), md(mask), rd(B * T), ad(B * T), gd(B * T);
    CHECK_OK(cu::token_rewards(rd, sd, kld, 0.05, md, B, T, 2.0, scratch, nullptr));
    EXPECT_CLOSE(shape_tag("rewards", B, T).c_str(), rd.download(), rewards, 1e-9, 1e-6);
    rd.upload(rewards);
    CHECK_OK(cu::gae(ad, gd, rd, vd, md, B, T, 0.99, 0.95, scratch, nullptr));
    EXPECT_CLOSE(shape_tag("advantages", B, T).c_str(), ad.download(), adv, 1e-9, 1e-6);
    EXPECT_CLOSE(shape_tag("returns", B, T).c_str(), gd.download(), ret, 1e-9, 1e-6);
  }
}

TEST(cuda_pg_bad_masks_are_errors) {
  DeviceArray<double> scratch(cu::pg_scratch_doubles());
  std::vector<float> mask = {1, 0.5f, 0};
  DeviceArray<float> m(mask), x(random_vector(3)), out(3), out2(3);
  CHECK(!cu::kl_per_token(out, out2, x, x, m, 3, cpu::KlEstimator::K3, scratch, nullptr).ok());
  CHECK(!cu::gae(out, out2, x, x, m, 1, 3, 1.0, 1.0, scratch, nullptr).ok());
  DeviceArray<float> empty(std::vector<float>{0, 0, 0});
  CHECK(!cu::token_rewards(out, x, x, 0.1, empty, 1, 3, 0.0, scratch, nullptr).ok());  // no valid token
  cu::PpoPolicyStats ps;
  CHECK(!cu::ppo_policy_loss(out, x, x, x, m, 3, 0.2, 0.2, 0.0, &ps, scratch, nullptr).ok());
  CHECK(!cu::ppo_policy_loss(out, x, x, x, empty, 3, 1.5, 0.2, 0.0, &ps, scratch, nullptr).ok());
}

TEST(cuda_pg_ppo_policy_and_value_losses) {
  DeviceArray<double> scratch(cu::pg_scratch_doubles());
  for (int64_t n : kSizes)
    for (double dual : {0.0, 3.0}) {
      auto logp = random_vector(n, -3.0f, 0.0f), old = logp, adv = random_vector(n, -2.0f, 2.0f);
      auto pert = random_vector(n, -0.4f, 0.4f);
      for (int64_t i = 0; i < n; ++i) old[i] += pert[i];  // ratios on both sides of the clip range
      if (n > 3) adv[2] = 0.0f;
      auto mask = random_mask(n, 0.85);
      std::vector<float> d(n);
      double loss, cf, akl, dcf;
      cpu::ppo_policy_loss(d.data(), logp.data(), old.data(), adv.data(), mask.data(), n, 0.2, 0.28, dual, &loss, &cf,
                           &akl, &dcf);
      DeviceArray<float> lp(logp), od(old), ad(adv), md(mask), dd(n);
      cu::PpoPolicyStats s;
      CHECK_OK(cu::ppo_policy_loss(dd, lp, od, ad, md, n, 0.2, 0.28, dual, &s, scratch, nullptr));
      EXPECT_CLOSE(shape_tag("ppo dlogp", n, int(dual)).c_str(), dd.download(), d, 1e-9, 1e-6);
      CHECK_NEAR(s.loss, loss, 1e-12, 1e-9);
      CHECK_NEAR(s.approx_kl, akl, 1e-12, 1e-9);
      CHECK(s.clip_fraction == cf);
      CHECK(s.dual_clip_fraction == dcf);

      auto values = random_vector(n), ov = random_vector(n), ret = random_vector(n);
      std::vector<float> dv(n);
      double vloss, vcf;
      cpu::ppo_value_loss(dv.data(), values.data(), ov.data(), ret.data(), mask.data(), n, dual > 0 ? 0.2 : 0.0, &vloss,
                          &vcf);
      DeviceArray<float> vd(values), ovd(ov), rd(ret), dvd(n);
      cu::PpoValueStats vs;
      CHECK_OK(cu::ppo_value_loss(dvd, vd, ovd, rd, md, n, dual > 0 ? 0.2 : 0.0, &vs, scratch, nullptr));
      EXPECT_CLOSE(shape_tag("value dvalues", n, int(dual)).c_str(), dvd.download(), dv, 1e-9, 1e-6);
      CHECK_NEAR(vs.loss, vloss, 1e-12, 1e-9);
      CHECK(vs.clip_fraction == vcf);
    }
}

TEST(cuda_pg_preference_losses) {
  DeviceArray<double> scratch(cu::pg_scratch_doubles());
  for (int64_t N : {1, 7, 1500}) {
    auto pc = random_vector(N, -60.0f, -10.0f), pr = random_vector(N, -60.0f, -10.0f);
    auto rc = random_vector(N, -60.0f, -10.0f), rr = random_vector(N, -60.0f, -10.0f);
    DeviceArray<float> pcd(pc), prd(pr), rcd(rc), rrd(rr), dc(N), dr(N), wc(N), wr(N), pp(N);
    struct Dpo {
      double ls;
      cpu::DpoVariant v;
    };
    for (Dpo c : {Dpo{0.0, cpu::DpoVariant::Dpo}, Dpo{0.1, cpu::DpoVariant::Dpo}, Dpo{0.0, cpu::DpoVariant::Ipo}}) {
      std::vector<float> d1(N), d2(N), r1(N), r2(N);
      double loss, acc, margin;
      cpu::dpo_loss(d1.data(), d2.data(), r1.data(), r2.data(), pc.data(), pr.data(), rc.data(), rr.data(), N, 0.1,
                    c.ls, c.v, &loss, &acc, &margin);
      cu::PairStats s;
      CHECK_OK(cu::dpo_loss(dc, dr, wc, wr, pcd, prd, rcd, rrd, N, 0.1, c.ls, c.v, &s, scratch, nullptr));
      EXPECT_CLOSE(shape_tag("dpo d_chosen", N, int(c.v)).c_str(), dc.download(), d1, 1e-12, 1e-6);
      EXPECT_CLOSE(shape_tag("dpo d_rejected", N, int(c.v)).c_str(), dr.download(), d2, 1e-12, 1e-6);
      EXPECT_CLOSE("dpo rewards_chosen", wc.download(), r1, 1e-9, 1e-6);
      CHECK_NEAR(s.loss, loss, 1e-12, 1e-9);
      CHECK(s.accuracy == acc);
      CHECK_NEAR(s.margin, margin, 1e-12, 1e-9);
    }
    for (auto form : {cpu::ExoForm::Trl, cpu::ExoForm::Official}) {
      std::vector<float> d1(N), d2(N), p(N);
      double loss, acc, margin;
      cpu::exo_pref_loss(d1.data(), d2.data(), p.data(), nullptr, nullptr, pc.data(), pr.data(), rc.data(), rr.data(),
                         N, 0.1, 1e-3, form, &loss, &acc, &margin);
      cu::PairStats s;
      CHECK_OK(cu::exo_pref_loss(dc, dr, pp, nullptr, nullptr, pcd, prd, rcd, rrd, N, 0.1, 1e-3, form, &s, scratch,
                                 nullptr));
      EXPECT_CLOSE(shape_tag("exo d_chosen", N, int(form)).c_str(), dc.download(), d1, 1e-12, 1e-6);
      EXPECT_CLOSE("exo p", pp.download(), p, 1e-12, 1e-6);
      CHECK_NEAR(s.loss, loss, 1e-12, 1e-9);
      CHECK(s.accuracy == acc);
    }
  }
}

TEST(cuda_pg_exo_rw_loss) {
  DeviceArray<double> scratch(cu::pg_scratch_doubles());
  for (auto [N, K] : {std::pair<int64_t, int64_t>{2, 2}, {12, 4}, {640, 8}, {64, 64}}) {
    auto pol = random_vector(N, -30.0f, -5.0f), ref = random_vector(N, -30.0f, -5.0f),
         rw = random_vector(N, -2.0f, 2.0f);
    std::vector<float> d(N), p(N), q(N), gk(N / K);
    double loss;
    cpu::exo_rw_loss(d.data(), p.data(), q.data(), gk.data(), pol.data(), ref.data(), rw.data(), N, K, 0.1, 0.5, &loss);
    DeviceArray<float> pd(pol), rd(ref), wd(rw), dd(N), pp(N), qq(N), gkd(N / K);
    double got;
    CHECK_OK(cu::exo_rw_loss(dd, pp, qq, gkd, pd, rd, wd, N, K, 0.1, 0.5, &got, scratch, nullptr));
    EXPECT_CLOSE(shape_tag("exo_rw d_policy", N, K).c_str(), dd.download(), d, 1e-12, 1e-6);
    EXPECT_CLOSE(shape_tag("exo_rw p", N, K).c_str(), pp.download(), p, 1e-12, 1e-6);
    EXPECT_CLOSE(shape_tag("exo_rw q", N, K).c_str(), qq.download(), q, 1e-12, 1e-6);
    EXPECT_CLOSE(shape_tag("exo_rw group_kl", N, K).c_str(), gkd.download(), gk, 1e-12, 1e-6);
    CHECK_NEAR(got, loss, 1e-12, 1e-9);
  }
}
