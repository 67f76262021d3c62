#include "pg_losses.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../core/error.h"
#include "../core/thread_pool.h"

namespace rlhf {
namespace cpu {

namespace {

// σ(x) and log σ(x) without overflow (the formulas of lib/losses/common.ts).
double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}
double log_sigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }

void check_mask(const char* fn, const float* mask, int64_t n) {
  if (!mask) return;
  for (int64_t i = 0; i < n; ++i)
    RLHF_CHECK(mask[i] == 0.0f || mask[i] == 1.0f, ErrorCode::OutOfRange, fn, ": mask[", i, "] must be 0 or 1, got ",
               mask[i]);
}

int64_t mask_count(const float* mask, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += mask[i] != 0.0f;
  return c;
}

// The pair inputs of the preference losses: h_w, h_l in double.
struct PairInputs {
  const float *pc, *pr, *rc, *rr;
  double hw(int64_t i) const { return double(pc[i]) - double(rc[i]); }
  double hl(int64_t i) const { return double(pr[i]) - double(rr[i]); }
};

// Implicit rewards β h, accuracy (strict) and mean margin, as pairDiagnostics in common.ts.
void pair_diagnostics(const PairInputs& in, int64_t N, double beta, float* rewards_chosen, float* rewards_rejected,
                      double* accuracy, double* margin) {
  int64_t correct = 0;
  double m = 0;
  for (int64_t i = 0; i < N; ++i) {
    const double rw = beta * in.hw(i), rl = beta * in.hl(i);
    if (rewards_chosen) rewards_chosen[i] = static_cast<float>(rw);
    if (rewards_rejected) rewards_rejected[i] = static_cast<float>(rl);
    if (rw > rl) ++correct;
    m += (rw - rl) / double(N);
  }
  if (accuracy) *accuracy = double(correct) / double(N);
  if (margin) *margin = m;
}

// out[i] = scale·x[i] − logsumexp_j(scale·x[j]) over one group of k (groupLogSoftmax in common.ts).
void group_log_softmax(double* out, const double* x, int64_t k, double scale) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < k; ++i) {
    out[i] = scale * x[i];
    m = std::max(m, out[i]);
  }
  double s = 0;
  for (int64_t i = 0; i < k; ++i) s += std::exp(out[i] - m);
  const double lse = m + std::log(s);
  for (int64_t i = 0; i < k; ++i) out[i] -= lse;
}

}  // namespace

// ---- KL estimators ----------------------------------------------------------------------------

void kl_per_token(float* kl, float* dlogp, const float* logp, const float* ref_logp, const float* mask, int64_t n,
                  KlEstimator estimator) {
  RLHF_CHECK(n >= 0, ErrorCode::OutOfRange, "kl_per_token: n must be >= 0, got ", n);
  RLHF_CHECK(estimator == KlEstimator::K1 || estimator == KlEstimator::K2 || estimator == KlEstimator::K3,
             ErrorCode::OutOfRange, "kl_per_token: unknown estimator ", static_cast<int>(estimator));
  check_mask("kl_per_token", mask, n);
  parallel_for(n, 4096, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      double k = 0, g = 0;
      if (!mask || mask[i] != 0.0f) {
        const double d = double(logp[i]) - double(ref_logp[i]);
        if (estimator == KlEstimator::K1) {
          k = d, g = 1;
        } else if (estimator == KlEstimator::K2) {
          k = 0.5 * d * d, g = d;
        } else {
          const double ex = std::exp(-d);
          k = ex - 1 + d, g = 1 - ex;
        }
      }
      kl[i] = static_cast<float>(k);
      if (dlogp) dlogp[i] = static_cast<float>(g);
    }
  });
}

// ---- rewards and advantages -------------------------------------------------------------------

void token_rewards(float* rewards, const float* score, const float* kl, double kl_coef, const float* mask, int64_t B,
                   int64_t T, double clip_score) {
  RLHF_CHECK(B >= 0 && T >= 0, ErrorCode::OutOfRange, "token_rewards: B and T must be >= 0, got ", B, ", ", T);
  RLHF_CHECK(kl_coef >= 0 && std::isfinite(kl_coef), ErrorCode::OutOfRange,
             "token_rewards: kl_coef must be a finite number >= 0, got ", kl_coef);
  check_mask("token_rewards", mask, B * T);
  for (int64_t b = 0; b < B; ++b)
    RLHF_CHECK(mask_count(mask + b * T, T) > 0, ErrorCode::OutOfRange, "token_rewards: row ", b,
               " of mask has no valid token (the score would have nowhere to go)");
  parallel_for(B, 64, [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b) {
      const float* m = mask + b * T;
      const float* k = kl + b * T;
      float* r = rewards + b * T;
      double s = score[b];
      if (clip_score > 0) s = std::min(clip_score, std::max(-clip_score, s));
      int64_t last = T - 1;
      while (m[last] == 0.0f) --last;  // a valid token exists (checked above)
      for (int64_t t = 0; t < T; ++t) {
        if (m[t] == 0.0f) {
          r[t] = 0.0f;
          continue;
        }
        double v = -kl_coef * double(k[t]);
        if (t == last) v += s;
        r[t] = static_cast<float>(v);
      }
    }
  });
}

void gae(float* advantages, float* returns, const float* rewards, const float* values, const float* mask, int64_t B,
         int64_t T, double gamma, double lambda) {
  RLHF_CHECK(B >= 0 && T >= 0, ErrorCode::OutOfRange, "gae: B and T must be >= 0, got ", B, ", ", T);
  RLHF_CHECK(gamma >= 0 && gamma <= 1, ErrorCode::OutOfRange, "gae: gamma must be in [0, 1], got ", gamma);
  RLHF_CHECK(lambda >= 0 && lambda <= 1, ErrorCode::OutOfRange, "gae: lambda must be in [0, 1], got ", lambda);
  check_mask("gae", mask, B * T);
  parallel_for(B, 64, [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t o = b * T;
      double next_value = 0, next_adv = 0;  // V and A after the last valid position
      for (int64_t t = T - 1; t >= 0; --t) {
        if (mask[o + t] == 0.0f) {
          advantages[o + t] = returns[o + t] = 0.0f;
          continue;
        }
        const double v = values[o + t];
        const double delta = double(rewards[o + t]) + gamma * next_value - v;
        const double adv = delta + gamma * lambda * next_adv;
        advantages[o + t] = static_cast<float>(adv);
        returns[o + t] = static_cast<float>(adv + v);
        next_value = v;
        next_adv = adv;
      }
    }
  });
}

// ---- token aggregation ------------------------------------------------------------------------

void aggregation_weights(double* w, const float* mask, int64_t B, int64_t T, Aggregation mode, double norm) {
  RLHF_CHECK(B >= 0 && T >= 0, ErrorCode::OutOfRange, "aggregation_weights: B and T must be >= 0, got ", B, ", ", T);
  RLHF_CHECK(mode == Aggregation::TokenMean || mode == Aggregation::SeqMeanTokenMean ||
                 mode == Aggregation::SeqMeanTokenSum || mode == Aggregation::SeqMeanTokenSumNorm,
             ErrorCode::OutOfRange, "aggregation_weights: unknown mode ", static_cast<int>(mode));
  RLHF_CHECK(mode != Aggregation::SeqMeanTokenSumNorm || (norm > 0 && std::isfinite(norm)), ErrorCode::OutOfRange,
             "aggregation_weights: norm must be a finite number > 0, got ", norm);
  check_mask("aggregation_weights", mask, B * T);
  std::vector<int64_t> count(B);
  int64_t total = 0, non_empty = 0;
  for (int64_t b = 0; b < B; ++b) {
    count[b] = mask_count(mask + b * T, T);
    total += count[b];
    non_empty += count[b] > 0;
  }
  for (int64_t b = 0; b < B; ++b) {
    double per = 0;  // weight of a valid token of row b
    if (count[b] > 0) {
      if (mode == Aggregation::TokenMean)
        per = 1.0 / double(total);
      else if (mode == Aggregation::SeqMeanTokenMean)
        per = 1.0 / (double(count[b]) * double(non_empty));
      else if (mode == Aggregation::SeqMeanTokenSum)
        per = 1.0 / double(non_empty);
      else
        per = 1.0 / (double(B) * norm);
    }
    for (int64_t t = 0; t < T; ++t) w[b * T + t] = mask[b * T + t] != 0.0f ? per : 0.0;
  }
}

// ---- PPO ----------------------------------------------------------------------------------------

void ppo_policy_loss(float* dlogp, const float* logp, const float* old_logp, const float* adv, const float* mask,
                     int64_t n, double clip_eps, double clip_eps_high, double dual_clip, double* loss,
                     double* clip_fraction, double* approx_kl, double* dual_clip_fraction, const double* weights) {
  RLHF_CHECK(n >= 0, ErrorCode::OutOfRange, "ppo_policy_loss: n must be >= 0, got ", n);
  RLHF_CHECK(clip_eps > 0 && clip_eps < 1, ErrorCode::OutOfRange, "ppo_policy_loss: clip_eps must be in (0, 1), got ",
             clip_eps);
  RLHF_CHECK(clip_eps_high > 0 && std::isfinite(clip_eps_high), ErrorCode::OutOfRange,
             "ppo_policy_loss: clip_eps_high must be a finite number > 0, got ", clip_eps_high);
  check_mask("ppo_policy_loss", mask, n);
  const int64_t count = mask_count(mask, n);
  const double w = count > 0 ? 1.0 / double(count) : 0.0;  // token-mean weight of a valid token
  const double lo = 1 - clip_eps, hi = 1 + clip_eps_high;
  const bool dual = dual_clip > 1;
  double total = 0, kl_sum = 0;
  int64_t clipped = 0, dual_clipped = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (mask[t] == 0.0f) {
      dlogp[t] = 0.0f;
      continue;
    }
    const double log_ratio = double(logp[t]) - double(old_logp[t]);
    const double rho = std::exp(log_ratio);
    const double A = adv[t];
    const double s1 = rho * A;
    const double s2 = std::min(hi, std::max(lo, rho)) * A;
    double l, g;
    if (s2 < s1) {
      l = -s2, g = 0, ++clipped;
    } else {
      l = -s1, g = A == 0 ? 0 : -A * rho;
    }
    if (dual && A < 0 && -dual_clip * A < l) l = -dual_clip * A, g = 0, ++dual_clipped;
    const double wt = weights ? weights[t] : w;
    total += wt * l;
    dlogp[t] = static_cast<float>(wt * g);
    kl_sum += rho - 1 - log_ratio;
  }
  if (loss) *loss = total;
  if (clip_fraction) *clip_fraction = count > 0 ? double(clipped) / double(count) : 0.0;
  if (dual_clip_fraction) *dual_clip_fraction = count > 0 ? double(dual_clipped) / double(count) : 0.0;
  if (approx_kl) *approx_kl = count > 0 ? kl_sum / double(count) : 0.0;
}

void gspo_policy_loss(float* dlogp, const float* logp, const float* old_logp, const float* adv, const float* mask,
                      const double* weights, int64_t B, int64_t T, double clip_eps, double clip_eps_high, double* loss,
                      double* clip_fraction, double* approx_kl) {
  RLHF_CHECK(B >= 0 && T >= 0, ErrorCode::OutOfRange, "gspo_policy_loss: B and T must be >= 0, got ", B, ", ", T);
  RLHF_CHECK(clip_eps > 0 && clip_eps < 1, ErrorCode::OutOfRange, "gspo_policy_loss: clip_eps must be in (0, 1), got ",
             clip_eps);
  RLHF_CHECK(clip_eps_high > 0 && std::isfinite(clip_eps_high), ErrorCode::OutOfRange,
             "gspo_policy_loss: clip_eps_high must be a finite number > 0, got ", clip_eps_high);
  check_mask("gspo_policy_loss", mask, B * T);
  std::vector<double> own;
  if (!weights) {
    own.resize(B * T);
    aggregation_weights(own.data(), mask, B, T, Aggregation::SeqMeanTokenMean, 1.0);
    weights = own.data();
  }
  const double lo = 1 - clip_eps, hi = 1 + clip_eps_high;
  double total = 0, kl_sum = 0;
  int64_t count = 0, clipped = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t o = b * T;
    const int64_t nb = mask_count(mask + o, T);
    double mean_lr = 0;
    for (int64_t t = 0; t < T; ++t)
      if (mask[o + t] != 0.0f) mean_lr += (double(logp[o + t]) - double(old_logp[o + t])) / double(nb);
    const double s = std::exp(mean_lr), sc = std::min(hi, std::max(lo, s));
    double wa = 0;  // Σ over unclipped tokens of w_t A_t
    for (int64_t t = 0; t < T; ++t) {
      if (mask[o + t] == 0.0f) continue;
      const double A = adv[o + t], s1 = s * A, s2 = sc * A;
      ++count;
      if (s2 < s1) {
        total += weights[o + t] * -s2, ++clipped;
      } else {
        total += weights[o + t] * -s1, wa += weights[o + t] * A;
      }
      const double lr = double(logp[o + t]) - double(old_logp[o + t]);
      kl_sum += std::exp(lr) - 1 - lr;
    }
    const double g = nb > 0 ? -s * wa / double(nb) : 0.0;
    for (int64_t t = 0; t < T; ++t) dlogp[o + t] = mask[o + t] != 0.0f ? static_cast<float>(g) : 0.0f;
  }
  if (loss) *loss = total;
  if (clip_fraction) *clip_fraction = count > 0 ? double(clipped) / double(count) : 0.0;
  if (approx_kl) *approx_kl = count > 0 ? kl_sum / double(count) : 0.0;
}

void entropy_bonus(float* dent, const float* ent, const float* mask, const double* weights, int64_t n, double coef,
                   double* loss, double* mean_entropy) {
  RLHF_CHECK(n >= 0, ErrorCode::OutOfRange, "entropy_bonus: n must be >= 0, got ", n);
  RLHF_CHECK(coef >= 0 && std::isfinite(coef), ErrorCode::OutOfRange,
             "entropy_bonus: coef must be a finite number >= 0, got ", coef);
  check_mask("entropy_bonus", mask, n);
  const int64_t count = mask_count(mask, n);
  const double w = count > 0 ? 1.0 / double(count) : 0.0;
  double total = 0, sum = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (mask[t] == 0.0f) {
      dent[t] = 0.0f;
      continue;
    }
    const double wt = weights ? weights[t] : w;
    total -= coef * wt * double(ent[t]);
    dent[t] = static_cast<float>(-coef * wt);
    sum += ent[t];
  }
  if (loss) *loss = total;
  if (mean_entropy) *mean_entropy = count > 0 ? sum / double(count) : 0.0;
}

void kl_loss(float* dlogp, const float* logp, const float* ref_logp, const float* mask, const double* weights,
             int64_t n, KlEstimator estimator, double coef, double* loss, double* mean_kl) {
  RLHF_CHECK(n >= 0, ErrorCode::OutOfRange, "kl_loss: n must be >= 0, got ", n);
  RLHF_CHECK(coef >= 0 && std::isfinite(coef), ErrorCode::OutOfRange,
             "kl_loss: coef must be a finite number >= 0, got ", coef);
  RLHF_CHECK(estimator == KlEstimator::K1 || estimator == KlEstimator::K2 || estimator == KlEstimator::K3,
             ErrorCode::OutOfRange, "kl_loss: unknown estimator ", static_cast<int>(estimator));
  check_mask("kl_loss", mask, n);
  const int64_t count = mask_count(mask, n);
  const double w = count > 0 ? 1.0 / double(count) : 0.0;
  double total = 0, sum = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (mask[t] == 0.0f) {
      dlogp[t] = 0.0f;
      continue;
    }
    const double d = double(logp[t]) - double(ref_logp[t]);
    double k, g;
    if (estimator == KlEstimator::K1) {
      k = d, g = 1;
    } else if (estimator == KlEstimator::K2) {
      k = 0.5 * d * d, g = d;
    } else {
      const double ex = std::exp(-d);
      k = ex - 1 + d, g = 1 - ex;
    }
    const double wt = weights ? weights[t] : w;
    total += coef * wt * k;
    dlogp[t] = static_cast<float>(coef * wt * g);
    sum += k;
  }
  if (loss) *loss = total;
  if (mean_kl) *mean_kl = count > 0 ? sum / double(count) : 0.0;
}

void ppo_value_loss(float* dvalues, const float* values, const float* old_values, const float* returns,
                    const float* mask, int64_t n, double clip_eps, double* loss, double* clip_fraction) {
  RLHF_CHECK(n >= 0, ErrorCode::OutOfRange, "ppo_value_loss: n must be >= 0, got ", n);
  check_mask("ppo_value_loss", mask, n);
  const int64_t count = mask_count(mask, n);
  const double w = count > 0 ? 1.0 / double(count) : 0.0;
  const double eps = clip_eps > 0 ? clip_eps : std::numeric_limits<double>::infinity();
  double total = 0;
  int64_t clipped = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (mask[t] == 0.0f) {
      dvalues[t] = 0.0f;
      continue;
    }
    const double v = values[t], g = returns[t], old = old_values[t];
    const double vc = old + std::min(eps, std::max(-eps, v - old));
    const double e1 = (v - g) * (v - g), e2 = (vc - g) * (vc - g);
    if (e2 > e1) {
      total += w * 0.5 * e2;
      dvalues[t] = 0.0f;
      ++clipped;
    } else {
      total += w * 0.5 * e1;
      dvalues[t] = static_cast<float>(w * (v - g));
    }
  }
  if (loss) *loss = total;
  if (clip_fraction) *clip_fraction = count > 0 ? double(clipped) / double(count) : 0.0;
}

// ---- preference losses ------------------------------------------------------------------------

void dpo_loss(float* d_chosen, float* d_rejected, float* rewards_chosen, float* rewards_rejected,
              const float* policy_chosen, const float* policy_rejected, const float* ref_chosen,
              const float* ref_rejected, int64_t N, double beta, double label_smoothing, DpoVariant variant,
              double* loss, double* accuracy, double* margin) {
  RLHF_CHECK(N >= 1, ErrorCode::OutOfRange, "dpo_loss: N must be >= 1, got ", N);
  RLHF_CHECK(beta > 0 && std::isfinite(beta), ErrorCode::OutOfRange, "dpo_loss: beta must be a finite number > 0, got ",
             beta);
  RLHF_CHECK(label_smoothing >= 0 && label_smoothing <= 0.5, ErrorCode::OutOfRange,
             "dpo_loss: label_smoothing must be in [0, 0.5], got ", label_smoothing);
  RLHF_CHECK(variant == DpoVariant::Dpo || variant == DpoVariant::Ipo, ErrorCode::OutOfRange,
             "dpo_loss: unknown variant ", static_cast<int>(variant));
  RLHF_CHECK(variant == DpoVariant::Dpo || label_smoothing == 0, ErrorCode::OutOfRange,
             "dpo_loss: label_smoothing must be 0 with the ipo variant, got ", label_smoothing);
  const PairInputs in{policy_chosen, policy_rejected, ref_chosen, ref_rejected};
  const double ls = label_smoothing, dn = double(N);
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    const double z = in.hw(i) - in.hl(i);
    double l, dz;
    if (variant == DpoVariant::Ipo) {
      const double e = z - 1 / (2 * beta);
      l = e * e, dz = 2 * e;
    } else {
      const double u = beta * z;
      l = -(1 - ls) * log_sigmoid(u) - (ls == 0 ? 0 : ls * log_sigmoid(-u));
      dz = -beta * (1 - ls) * sigmoid(-u) + beta * ls * sigmoid(u);
    }
    total += l / dn;
    d_chosen[i] = static_cast<float>(dz / dn);
    d_rejected[i] = static_cast<float>(-dz / dn);
  }
  if (loss) *loss = total;
  pair_diagnostics(in, N, beta, rewards_chosen, rewards_rejected, accuracy, margin);
}

void exo_pref_loss(float* d_chosen, float* d_rejected, float* p_chosen, float* rewards_chosen, float* rewards_rejected,
                   const float* policy_chosen, const float* policy_rejected, const float* ref_chosen,
                   const float* ref_rejected, int64_t N, double beta, double epsilon, ExoForm form, double* loss,
                   double* accuracy, double* margin) {
  RLHF_CHECK(N >= 1, ErrorCode::OutOfRange, "exo_pref_loss: N must be >= 1, got ", N);
  RLHF_CHECK(beta > 0 && std::isfinite(beta), ErrorCode::OutOfRange,
             "exo_pref_loss: beta must be a finite number > 0, got ", beta);
  RLHF_CHECK(epsilon > 0 && epsilon < 1, ErrorCode::OutOfRange, "exo_pref_loss: epsilon must be in (0, 1), got ",
             epsilon);
  RLHF_CHECK(form == ExoForm::Trl || form == ExoForm::Official, ErrorCode::OutOfRange, "exo_pref_loss: unknown form ",
             static_cast<int>(form));
  const PairInputs in{policy_chosen, policy_rejected, ref_chosen, ref_rejected};
  const bool trl = form == ExoForm::Trl;
  const double log_target_w = trl ? std::log1p(-epsilon) : 0.0;
  const double log_target_l = trl ? std::log(epsilon) : std::log(epsilon) - std::log1p(-epsilon);
  const double target = std::log1p(-epsilon) - std::log(epsilon);  // the βz where ℓ is minimal
  const double dn = double(N);
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    const double u = beta * (in.hw(i) - in.hl(i));
    const double p = sigmoid(u), q = sigmoid(-u);
    if (p_chosen) p_chosen[i] = static_cast<float>(p);
    total += (p * (log_sigmoid(u) - log_target_w) + q * (log_sigmoid(-u) - log_target_l)) / dn;
    const double dz = beta * p * q * (u - target);
    d_chosen[i] = static_cast<float>(dz / dn);
    d_rejected[i] = static_cast<float>(-dz / dn);
  }
  if (loss) *loss = total;
  pair_diagnostics(in, N, beta, rewards_chosen, rewards_rejected, accuracy, margin);
}

void exo_rw_loss(float* d_policy, float* p, float* q, float* group_kl, const float* policy, const float* ref,
                 const float* rewards, int64_t N, int64_t K, double beta_pi, double beta_r, double* loss) {
  RLHF_CHECK(N >= 1, ErrorCode::OutOfRange, "exo_rw_loss: N must be >= 1, got ", N);
  RLHF_CHECK(K >= 2, ErrorCode::OutOfRange, "exo_rw_loss: K must be >= 2, got ", K);
  RLHF_CHECK(N % K == 0, ErrorCode::OutOfRange, "exo_rw_loss: N (", N, ") must be a multiple of K (", K, ")");
  RLHF_CHECK(beta_pi > 0 && std::isfinite(beta_pi), ErrorCode::OutOfRange,
             "exo_rw_loss: beta_pi must be a finite number > 0, got ", beta_pi);
  RLHF_CHECK(beta_r > 0 && std::isfinite(beta_r), ErrorCode::OutOfRange,
             "exo_rw_loss: beta_r must be a finite number > 0, got ", beta_r);
  const int64_t groups = N / K;
  const double dg = double(groups);
  std::vector<double> h(K), r(K), logp(K), logq(K), pp(K);
  double total = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t off = g * K;
    for (int64_t i = 0; i < K; ++i) h[i] = double(policy[off + i]) - double(ref[off + i]), r[i] = rewards[off + i];
    group_log_softmax(logp.data(), h.data(), K, beta_pi);
    group_log_softmax(logq.data(), r.data(), K, 1 / beta_r);
    double kl = 0;
    for (int64_t i = 0; i < K; ++i) {
      pp[i] = std::exp(logp[i]);
      kl += pp[i] * (logp[i] - logq[i]);
    }
    if (group_kl) group_kl[g] = static_cast<float>(kl);
    total += kl / dg;
    for (int64_t i = 0; i < K; ++i) {
      d_policy[off + i] = static_cast<float>(beta_pi * pp[i] * (logp[i] - logq[i] - kl) / dg);
      if (p) p[off + i] = static_cast<float>(pp[i]);
      if (q) q[off + i] = static_cast<float>(std::exp(logq[i]));
    }
  }
  if (loss) *loss = total;
}

}  // namespace cpu
}  // namespace rlhf
