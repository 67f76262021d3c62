// Policy-gradient kernels (contract in pg.h; formulas in native/cpu/pg_losses.h). Per-token and
// per-row work is spread over threads; each loss is one block of kLossThreads threads whose sums
// (double) are block-reduced in a fixed order, so results are deterministic.
// scratch layout: [0..5] results of the launch, [7] count of invalid mask values.
#include "pg.h"

#include <cmath>

#include "cuda_common.h"

namespace rlhf {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kLossThreads = 1024;
constexpr int kScratch = 8, kBadMask = 7;
constexpr int kMaxExoK = 64;

__device__ __forceinline__ double d_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  const double e = exp(x);
  return e / (1.0 + e);
}
__device__ __forceinline__ double d_log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }
__device__ __forceinline__ bool bad_mask_value(float m) { return m != 0.0f && m != 1.0f; }

unsigned grid_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

__global__ void clear_kernel(double* scratch) {
  if (threadIdx.x < kScratch) scratch[threadIdx.x] = 0.0;
}

__global__ void kl_kernel(float* kl, float* dlogp, const float* logp, const float* ref, const float* mask, int64_t n,
                          int estimator, double* scratch) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    double k = 0, g = 0;
    if (mask && bad_mask_value(mask[i])) atomicAdd(&scratch[kBadMask], 1.0);
    if (!mask || mask[i] != 0.0f) {
      const double d = double(logp[i]) - double(ref[i]);
      if (estimator == 1) {
        k = d, g = 1;
      } else if (estimator == 2) {
        k = 0.5 * d * d, g = d;
      } else {
        const double ex = exp(-d);
        k = ex - 1 + d, g = 1 - ex;
      }
    }
    kl[i] = static_cast<float>(k);
    if (dlogp) dlogp[i] = static_cast<float>(g);
  }
}

__global__ void token_rewards_kernel(float* rewards, const float* score, const float* kl, double kl_coef,
                                     const float* mask, int64_t B, int64_t T, double clip_score, double* scratch) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const float* m = mask + b * T;
  int64_t last = -1;
  for (int64_t t = 0; t < T; ++t) {
    if (bad_mask_value(m[t])) atomicAdd(&scratch[kBadMask], 1.0);
    if (m[t] != 0.0f) last = t;
  }
  if (last < 0) {
    atomicAdd(&scratch[0], 1.0);  // a row with no valid token
    return;
  }
  double s = score[b];
  if (clip_score > 0) s = fmin(clip_score, fmax(-clip_score, s));
  for (int64_t t = 0; t < T; ++t) {
    if (m[t] == 0.0f) {
      rewards[b * T + t] = 0.0f;
      continue;
    }
    double v = -kl_coef * double(kl[b * T + t]);
    if (t == last) v += s;
    rewards[b * T + t] = static_cast<float>(v);
  }
}

__global__ void gae_kernel(float* advantages, float* returns, const float* rewards, const float* values,
                           const float* mask, int64_t B, int64_t T, double gamma, double lambda, double* scratch) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const int64_t o = b * T;
  double next_value = 0, next_adv = 0;
  for (int64_t t = T - 1; t >= 0; --t) {
    if (bad_mask_value(mask[o + t])) atomicAdd(&scratch[kBadMask], 1.0);
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

// Σ mask and the count of invalid mask values, by the whole (single) block.
__device__ double mask_count(const float* mask, int64_t n, double* scratch, double* red) {
  double c = 0, bad = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) c += mask[i] != 0.0f, bad += bad_mask_value(mask[i]);
  c = block_sum(c, red);
  bad = block_sum(bad, red);
  if (threadIdx.x == 0) scratch[kBadMask] = bad;
  return c;
}

__global__ void ppo_policy_kernel(float* dlogp, const float* logp, const float* old_logp, const float* adv,
                                  const float* mask, int64_t n, double lo, double hi, double dual_clip,
                                  double* scratch) {
  __shared__ double red[32];
  const double count = mask_count(mask, n, scratch, red);
  const double w = count > 0 ? 1.0 / count : 0.0;
  const bool dual = dual_clip > 1;
  double total = 0, kl_sum = 0, clipped = 0, dual_clipped = 0;
  for (int64_t t = threadIdx.x; t < n; t += blockDim.x) {
    if (mask[t] == 0.0f) {
      dlogp[t] = 0.0f;
      continue;
    }
    const double log_ratio = double(logp[t]) - double(old_logp[t]);
    const double rho = exp(log_ratio);
    const double A = adv[t];
    const double s1 = rho * A;
    const double s2 = fmin(hi, fmax(lo, rho)) * A;
    double l, g;
    if (s2 < s1) {
      l = -s2, g = 0, clipped += 1;
    } else {
      l = -s1, g = A == 0 ? 0 : -A * rho;
    }
    if (dual && A < 0 && -dual_clip * A < l) l = -dual_clip * A, g = 0, dual_clipped += 1;
    total += w * l;
    dlogp[t] = static_cast<float>(w * g);
    kl_sum += rho - 1 - log_ratio;
  }
  total = block_sum(total, red);
  kl_sum = block_sum(kl_sum, red);
  clipped = block_sum(clipped, red);
  dual_clipped = block_sum(dual_clipped, red);
  if (threadIdx.x == 0) {
    scratch[0] = total;
    scratch[1] = count > 0 ? clipped / count : 0.0;
    scratch[2] = count > 0 ? kl_sum / count : 0.0;
    scratch[3] = count > 0 ? dual_clipped / count : 0.0;
  }
}

__global__ void ppo_value_kernel(float* dvalues, const float* values, const float* old_values, const float* returns,
                                 const float* mask, int64_t n, double eps, double* scratch) {
  __shared__ double red[32];
  const double count = mask_count(mask, n, scratch, red);
  const double w = count > 0 ? 1.0 / count : 0.0;
  double total = 0, clipped = 0;
  for (int64_t t = threadIdx.x; t < n; t += blockDim.x) {
    if (mask[t] == 0.0f) {
      dvalues[t] = 0.0f;
      continue;
    }
    const double v = values[t], g = returns[t], old = old_values[t];
    const double vc = old + fmin(eps, fmax(-eps, v - old));
    const double e1 = (v - g) * (v - g), e2 = (vc - g) * (vc - g);
    if (e2 > e1) {
      total += w * 0.5 * e2;
      dvalues[t] = 0.0f;
      clipped += 1;
    } else {
      total += w * 0.5 * e1;
      dvalues[t] = static_cast<float>(w * (v - g));
    }
  }
  total = block_sum(total, red);
  clipped = block_sum(clipped, red);
  if (threadIdx.x == 0) scratch[0] = total, scratch[1] = count > 0 ? clipped / count : 0.0;
}

// kind 0: DPO / cDPO, 1: IPO, 2: EXO-pref (a = log target for w, b = for l, c = βz minimiser).
__global__ void pair_loss_kernel(float* d_chosen, float* d_rejected, float* p_chosen, float* rewards_chosen,
                                 float* rewards_rejected, const float* pc, const float* pr, const float* rc,
                                 const float* rr, int64_t N, double beta, double ls, int kind, double log_target_w,
                                 double log_target_l, double target, double* scratch) {
  __shared__ double red[32];
  const double dn = double(N);
  double total = 0, correct = 0, margin = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    const double hw = double(pc[i]) - double(rc[i]), hl = double(pr[i]) - double(rr[i]);
    const double z = hw - hl;
    double l, dz;
    if (kind == 1) {
      const double e = z - 1 / (2 * beta);
      l = e * e, dz = 2 * e;
    } else if (kind == 0) {
      const double u = beta * z;
      l = -(1 - ls) * d_log_sigmoid(u) - (ls == 0 ? 0 : ls * d_log_sigmoid(-u));
      dz = -beta * (1 - ls) * d_sigmoid(-u) + beta * ls * d_sigmoid(u);
    } else {
      const double u = beta * z;
      const double p = d_sigmoid(u), q = d_sigmoid(-u);
      if (p_chosen) p_chosen[i] = static_cast<float>(p);
      l = p * (d_log_sigmoid(u) - log_target_w) + q * (d_log_sigmoid(-u) - log_target_l);
      dz = beta * p * q * (u - target);
    }
    total += l / dn;
    d_chosen[i] = static_cast<float>(dz / dn);
    d_rejected[i] = static_cast<float>(-dz / dn);
    const double rw = beta * hw, rl = beta * hl;
    if (rewards_chosen) rewards_chosen[i] = static_cast<float>(rw);
    if (rewards_rejected) rewards_rejected[i] = static_cast<float>(rl);
    correct += rw > rl;
    margin += (rw - rl) / dn;
  }
  total = block_sum(total, red);
  correct = block_sum(correct, red);
  margin = block_sum(margin, red);
  if (threadIdx.x == 0) scratch[0] = total, scratch[1] = correct / dn, scratch[2] = margin;
}

__device__ void group_log_softmax(double* out, const double* x, int64_t k, double scale) {
  double m = -INFINITY;
  for (int64_t i = 0; i < k; ++i) out[i] = scale * x[i], m = fmax(m, out[i]);
  double s = 0;
  for (int64_t i = 0; i < k; ++i) s += exp(out[i] - m);
  const double lse = m + log(s);
  for (int64_t i = 0; i < k; ++i) out[i] -= lse;
}

__global__ void exo_rw_kernel(float* d_policy, float* p, float* q, float* group_kl, const float* policy,
                              const float* ref, const float* rewards, int64_t groups, int64_t K, double beta_pi,
                              double beta_r, double* scratch) {
  __shared__ double red[32];
  const double dg = double(groups);
  double total = 0;
  for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
    const int64_t off = g * K;
    double h[kMaxExoK], r[kMaxExoK], logp[kMaxExoK], logq[kMaxExoK];
    for (int64_t i = 0; i < K; ++i) h[i] = double(policy[off + i]) - double(ref[off + i]), r[i] = rewards[off + i];
    group_log_softmax(logp, h, K, beta_pi);
    group_log_softmax(logq, r, K, 1 / beta_r);
    double kl = 0;
    for (int64_t i = 0; i < K; ++i) kl += exp(logp[i]) * (logp[i] - logq[i]);
    if (group_kl) group_kl[g] = static_cast<float>(kl);
    total += kl / dg;
    for (int64_t i = 0; i < K; ++i) {
      const double pp = exp(logp[i]);
      d_policy[off + i] = static_cast<float>(beta_pi * pp * (logp[i] - logq[i] - kl) / dg);
      if (p) p[off + i] = static_cast<float>(pp);
      if (q) q[off + i] = static_cast<float>(exp(logq[i]));
    }
  }
  total = block_sum(total, red);
  if (threadIdx.x == 0) scratch[0] = total;
}

// Copies the scratch back; InvalidArgument when a mask held a value other than 0/1.
Status read_scratch(double* scratch, double* host, const char* what, Stream stream) {
  Status st = launch_status(what);
  if (!st.ok()) return st;
  cudaError_t e = cudaMemcpyAsync(host, scratch, kScratch * sizeof(double), cudaMemcpyDeviceToHost, as_stream(stream));
  if (e == cudaSuccess) e = cudaStreamSynchronize(as_stream(stream));
  st = cuda_status(e, what);
  if (!st.ok()) return st;
  if (host[kBadMask] != 0) return Status::Invalid(std::string(what) + ": mask values must be 0 or 1");
  return Status::Ok();
}

Status clear(double* scratch, Stream stream) {
  if (!scratch) return Status::Invalid("pg: scratch is null");
  RLHF_LAUNCH(clear_kernel, dim3(1), dim3(32), 0, as_stream(stream))(scratch);
  return launch_status("pg (clear scratch)");
}

}  // namespace

int64_t pg_scratch_doubles() { return kScratch; }

Status kl_per_token(float* kl, float* dlogp, const float* logp, const float* ref_logp, const float* mask, int64_t n,
                    cpu::KlEstimator estimator, double* scratch, Stream stream) {
  const int est = static_cast<int>(estimator);
  if (n < 0 || est < 1 || est > 3)
    return Status::Invalid("kl_per_token: n must be >= 0 and the estimator k1, k2 or k3");
  Status st = clear(scratch, stream);
  if (!st.ok() || n == 0) return st;
  RLHF_LAUNCH(kl_kernel, dim3(grid_for(n)), dim3(kThreads), 0, as_stream(stream))
  (kl, dlogp, logp, ref_logp, mask, n, est, scratch);
  double h[kScratch];
  return read_scratch(scratch, h, "kl_per_token", stream);
}

Status token_rewards(float* rewards, const float* score, const float* kl, double kl_coef, const float* mask, int64_t B,
                     int64_t T, double clip_score, double* scratch, Stream stream) {
  if (B < 0 || T < 0 || !(kl_coef >= 0) || !std::isfinite(kl_coef))
    return Status::Invalid("token_rewards: need B, T >= 0 and a finite kl_coef >= 0");
  Status st = clear(scratch, stream);
  if (!st.ok() || B == 0) return st;
  RLHF_LAUNCH(token_rewards_kernel, dim3(grid_for(B)), dim3(kThreads), 0, as_stream(stream))
  (rewards, score, kl, kl_coef, mask, B, T, clip_score, scratch);
  double h[kScratch];
  st = read_scratch(scratch, h, "token_rewards", stream);
  if (st.ok() && h[0] != 0) return Status::Invalid("token_rewards: a row of mask has no valid token");
  return st;
}

Status gae(float* advantages, float* returns, const float* rewards, const float* values, const float* mask, int64_t B,
           int64_t T, double gamma, double lambda, double* scratch, Stream stream) {
  if (B < 0 || T < 0 || !(gamma >= 0 && gamma <= 1) || !(lambda >= 0 && lambda <= 1))
    return Status::Invalid("gae: need B, T >= 0 and gamma, lambda in [0, 1]");
  Status st = clear(scratch, stream);
  if (!st.ok() || B == 0) return st;
  RLHF_LAUNCH(gae_kernel, dim3(grid_for(B)), dim3(kThreads), 0, as_stream(stream))
  (advantages, returns, rewards, values, mask, B, T, gamma, lambda, scratch);
  double h[kScratch];
  return read_scratch(scratch, h, "gae", stream);
}

Status ppo_policy_loss(float* dlogp, const float* logp, const float* old_logp, const float* adv, const float* mask,
                       int64_t n, double clip_eps, double clip_eps_high, double dual_clip, PpoPolicyStats* stats,
                       double* scratch, Stream stream) {
  if (n < 0 || !(clip_eps > 0 && clip_eps < 1) || !(clip_eps_high > 0) || !std::isfinite(clip_eps_high) || !stats)
    return Status::Invalid("ppo_policy_loss: need n >= 0, clip_eps in (0, 1), finite clip_eps_high > 0, stats");
  Status st = clear(scratch, stream);
  if (!st.ok()) return st;
  RLHF_LAUNCH(ppo_policy_kernel, dim3(1), dim3(kLossThreads), 0, as_stream(stream))
  (dlogp, logp, old_logp, adv, mask, n, 1 - clip_eps, 1 + clip_eps_high, dual_clip, scratch);
  double h[kScratch];
  st = read_scratch(scratch, h, "ppo_policy_loss", stream);
  if (st.ok()) *stats = {h[0], h[1], h[2], h[3]};
  return st;
}

Status ppo_value_loss(float* dvalues, const float* values, const float* old_values, const float* returns,
                      const float* mask, int64_t n, double clip_eps, PpoValueStats* stats, double* scratch,
                      Stream stream) {
  if (n < 0 || !stats) return Status::Invalid("ppo_value_loss: need n >= 0 and stats");
  Status st = clear(scratch, stream);
  if (!st.ok()) return st;
  RLHF_LAUNCH(ppo_value_kernel, dim3(1), dim3(kLossThreads), 0, as_stream(stream))
  (dvalues, values, old_values, returns, mask, n, clip_eps > 0 ? clip_eps : INFINITY, scratch);
  double h[kScratch];
  st = read_scratch(scratch, h, "ppo_value_loss", stream);
  if (st.ok()) *stats = {h[0], h[1]};
  return st;
}

Status dpo_loss(float* d_chosen, float* d_rejected, float* rewards_chosen, float* rewards_rejected,
                const float* policy_chosen, const float* policy_rejected, const float* ref_chosen,
                const float* ref_rejected, int64_t N, double beta, double label_smoothing, cpu::DpoVariant variant,
                PairStats* stats, double* scratch, Stream stream) {
  const bool ipo = variant == cpu::DpoVariant::Ipo;
  if (N < 1 || !(beta > 0) || !std::isfinite(beta) || !(label_smoothing >= 0 && label_smoothing <= 0.5) ||
      (variant != cpu::DpoVariant::Dpo && !ipo) || (ipo && label_smoothing != 0) || !stats)
    return Status::Invalid("dpo_loss: need N >= 1, finite beta > 0, label_smoothing in [0, 0.5] (0 for ipo), stats");
  Status st = clear(scratch, stream);
  if (!st.ok()) return st;
  RLHF_LAUNCH(pair_loss_kernel, dim3(1), dim3(kLossThreads), 0, as_stream(stream))
  (d_chosen, d_rejected, nullptr, rewards_chosen, rewards_rejected, policy_chosen, policy_rejected, ref_chosen,
   ref_rejected, N, beta, label_smoothing, ipo ? 1 : 0, 0.0, 0.0, 0.0, scratch);
  double h[kScratch];
  st = read_scratch(scratch, h, "dpo_loss", stream);
  if (st.ok()) *stats = {h[0], h[1], h[2]};
  return st;
}

Status exo_pref_loss(float* d_chosen, float* d_rejected, float* p_chosen, float* rewards_chosen,
                     float* rewards_rejected, const float* policy_chosen, const float* policy_rejected,
                     const float* ref_chosen, const float* ref_rejected, int64_t N, double beta, double epsilon,
                     cpu::ExoForm form, PairStats* stats, double* scratch, Stream stream) {
  if (N < 1 || !(beta > 0) || !std::isfinite(beta) || !(epsilon > 0 && epsilon < 1) ||
      (form != cpu::ExoForm::Trl && form != cpu::ExoForm::Official) || !stats)
    return Status::Invalid("exo_pref_loss: need N >= 1, finite beta > 0, epsilon in (0, 1), a known form, stats");
  const bool trl = form == cpu::ExoForm::Trl;
  const double log_target_w = trl ? std::log1p(-epsilon) : 0.0;
  const double log_target_l = trl ? std::log(epsilon) : std::log(epsilon) - std::log1p(-epsilon);
  const double target = std::log1p(-epsilon) - std::log(epsilon);
  Status st = clear(scratch, stream);
  if (!st.ok()) return st;
  RLHF_LAUNCH(pair_loss_kernel, dim3(1), dim3(kLossThreads), 0, as_stream(stream))
  (d_chosen, d_rejected, p_chosen, rewards_chosen, rewards_rejected, policy_chosen, policy_rejected, ref_chosen,
   ref_rejected, N, beta, 0.0, 2, log_target_w, log_target_l, target, scratch);
  double h[kScratch];
  st = read_scratch(scratch, h, "exo_pref_loss", stream);
  if (st.ok()) *stats = {h[0], h[1], h[2]};
  return st;
}

Status exo_rw_loss(float* d_policy, float* p, float* q, float* group_kl, const float* policy, const float* ref,
                   const float* rewards, int64_t N, int64_t K, double beta_pi, double beta_r, double* loss,
                   double* scratch, Stream stream) {
  if (N < 1 || K < 2 || K > kMaxExoK || N % K != 0 || !(beta_pi > 0) || !std::isfinite(beta_pi) || !(beta_r > 0) ||
      !std::isfinite(beta_r) || !loss)
    return Status::Invalid("exo_rw_loss: need N >= 1, 2 <= K <= 64 dividing N, finite betas > 0, loss");
  Status st = clear(scratch, stream);
  if (!st.ok()) return st;
  RLHF_LAUNCH(exo_rw_kernel, dim3(1), dim3(kThreads), 0, as_stream(stream))
  (d_policy, p, q, group_kl, policy, ref, rewards, N / K, K, beta_pi, beta_r, scratch);
  double h[kScratch];
  st = read_scratch(scratch, h, "exo_rw_loss", stream);
  if (st.ok()) *loss = h[0];
  return st;
}

}  // namespace cuda
}  // namespace rlhf
