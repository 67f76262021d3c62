// Policy-gradient kernels on the GPU: native/cpu/pg_losses.h's functions (same formulas evaluated
// in double from fp32 inputs, same clip rules, same overwrite conventions, same argument checks)
// on device buffers. Scalar results (loss, fractions, accuracy, margin) come back to host doubles
// (the launcher synchronises). `scratch` is device memory of pg_scratch_doubles() doubles.
// Masks must hold exact 0/1 values; any other value gives an InvalidArgument status (the outputs
// are then unspecified).
#pragma once
#include <cstdint>

#include "../cpu/pg_losses.h"
#include "status.h"

namespace rlhf {
namespace cuda {

int64_t pg_scratch_doubles();

Status kl_per_token(float* kl, float* dlogp, const float* logp, const float* ref_logp, const float* mask, int64_t n,
                    cpu::KlEstimator estimator, double* scratch, Stream stream);

Status token_rewards(float* rewards, const float* score, const float* kl, double kl_coef, const float* mask, int64_t B,
                     int64_t T, double clip_score, double* scratch, Stream stream);

Status gae(float* advantages, float* returns, const float* rewards, const float* values, const float* mask, int64_t B,
           int64_t T, double gamma, double lambda, double* scratch, Stream stream);

struct PpoPolicyStats {
  double loss = 0, clip_fraction = 0, approx_kl = 0, dual_clip_fraction = 0;
};
Status ppo_policy_loss(float* dlogp, const float* logp, const float* old_logp, const float* adv, const float* mask,
                       int64_t n, double clip_eps, double clip_eps_high, double dual_clip, PpoPolicyStats* stats,
                       double* scratch, Stream stream);

struct PpoValueStats {
  double loss = 0, clip_fraction = 0;
};
Status ppo_value_loss(float* dvalues, const float* values, const float* old_values, const float* returns,
                      const float* mask, int64_t n, double clip_eps, PpoValueStats* stats, double* scratch,
                      Stream stream);

struct PairStats {
  double loss = 0, accuracy = 0, margin = 0;
};
Status dpo_loss(float* d_chosen, float* d_rejected, float* rewards_chosen, float* rewards_rejected,
                const float* policy_chosen, const float* policy_rejected, const float* ref_chosen,
                const float* ref_rejected, int64_t N, double beta, double label_smoothing, cpu::DpoVariant variant,
                PairStats* stats, double* scratch, Stream stream);

Status exo_pref_loss(float* d_chosen, float* d_rejected, float* p_chosen, float* rewards_chosen,
                     float* rewards_rejected, const float* policy_chosen, const float* policy_rejected,
                     const float* ref_chosen, const float* ref_rejected, int64_t N, double beta, double epsilon,
                     cpu::ExoForm form, PairStats* stats, double* scratch, Stream stream);

// Groups of K ≤ 64 samples (one thread per group; the CPU kernel takes any K >= 2).
Status exo_rw_loss(float* d_policy, float* p, float* q, float* group_kl, const float* policy, const float* ref,
                   const float* rewards, int64_t N, int64_t K, double beta_pi, double beta_r, double* loss,
                   double* scratch, Stream stream);

}  // namespace cuda
}  // namespace rlhf
