// Policy-gradient kernels: per-token KL estimators, token rewards, GAE, the PPO clipped policy and
// value losses, and the sequence-level preference losses DPO / cDPO / IPO, EXO-pref and EXO-rw,
// each with its gradient. The CPU twins of the future CUDA kernels (docs/algorithms.md §1.2–1.3, 3.1–3.4).
//
// The references are the float64 TypeScript functions in lib/losses (kl.ts, gae.ts, ppo.ts,
// preference.ts, exo.ts); test/engine/pg.test.ts compares every kernel with them. The kernels are
// themselves plain loops, so there is no separate `_reference` here.
//
// Precision: storage is fp32, but every per-token formula is evaluated in double from the fp32
// inputs (the same operations, in the same order, as the TS reference) and rounded to fp32 once
// when stored; sums (losses, fractions, GAE's running values) accumulate in double. Scalar
// results are returned as double. Hyperparameters are double so that e.g. the clip bounds
// 1 − ε and 1 + ε_high are the same numbers the TS reference uses (clip decisions match exactly).
//
// Conventions:
// - Flat row-major arrays with explicit sizes. n: number of tokens, B rows × T positions, N pairs,
//   K samples per group. Masks are float arrays of exact 0/1 (anything else throws OutOfRange);
//   1 marks a valid (response) token.
// - Every output array is OVERWRITTEN (masked positions get 0); no kernel accumulates.
// - Gradients are of the returned (mean) loss.
// - Errors: RLHF_CHECK with OutOfRange for a bad size, mask value or hyperparameter.
// - Threads: gae / token_rewards split rows and kl_per_token splits tokens with parallel_for
//   (no reductions, so results do not depend on the thread count). The losses are serial: one
//   fixed summation order, bit-identical for any thread count.
#pragma once
#include <cstdint>

namespace rlhf {
namespace cpu {

// ---- KL estimators ----------------------------------------------------------------------------
// With d = logp − ref_logp (Schulman's k1/k2/k3; OpenRLHF compute_approx_kl, veRL kl_penalty):
//   k1 = d                ∂/∂logp = 1
//   k2 = d²/2             ∂/∂logp = d
//   k3 = e^(−d) − 1 + d   ∂/∂logp = 1 − e^(−d)     (not clamped, unlike veRL)
enum class KlEstimator : int { K1 = 1, K2 = 2, K3 = 3 };

// kl, dlogp: (n) overwrite; dlogp may be null. logp, ref_logp: (n). mask: (n) 0/1 or null (all
// valid); masked positions get kl = dlogp = 0. dlogp[t] = ∂kl[t]/∂logp[t] (the reference is frozen).
void kl_per_token(float* kl, float* dlogp, const float* logp, const float* ref_logp, const float* mask, int64_t n,
                  KlEstimator estimator);

// ---- rewards and advantages -------------------------------------------------------------------

// Per-token rewards of B sequences (OpenRLHF compute_reward; lib/losses/gae.ts tokenRewards):
//   r[b][t] = −kl_coef · kl[b][t] · m[b][t] + 1[t = last_b] · clip(score[b], −c, c)
// where last_b is row b's last position with mask 1. clip_score c <= 0: no clamp.
// rewards, kl, mask: (B, T); score: (B). Throws OutOfRange if a row has no valid token (its score
// would have nowhere to go), kl_coef < 0 or a mask value is not 0/1.
void token_rewards(float* rewards, const float* score, const float* kl, double kl_coef, const float* mask, int64_t B,
                   int64_t T, double clip_score);

// Generalised advantage estimation per row (lib/losses/gae.ts gae):
//   δ_t = r_t + γ V_{t+1} − V_t,   A_t = δ_t + γλ A_{t+1},   G_t = A_t + V_t,
// where "t+1" is the row's next VALID position (masked positions are not time steps, so a hole
// does not leak values) and V / A after the last valid position are 0. For the usual right-padded
// mask this is OpenRLHF/TRL's GAE. advantages, returns: (B, T) overwrite, 0 where masked.
// rewards, values, mask: (B, T). gamma, lambda in [0, 1].
void gae(float* advantages, float* returns, const float* rewards, const float* values, const float* mask, int64_t B,
         int64_t T, double gamma, double lambda);

// ---- token aggregation ------------------------------------------------------------------------
// How per-token losses reduce to one number: loss = Σ_t w_t ℓ_t, so ∂loss/∂ℓ_t = w_t. B sequences
// stored as rows of T positions; m: the 0/1 mask; n_b: valid tokens of row b; B': rows with n_b > 0.
//   TokenMean            w = m / Σ m                  (DAPO; the default)
//   SeqMeanTokenMean     w = m / (n_b · B')           (original GRPO: mean of each response's mean)
//   SeqMeanTokenSum      w = m / B'                   (mean of each response's sum)
//   SeqMeanTokenSumNorm  w = m / (B · norm)           (Dr. GRPO: a constant normaliser, norm = the
//                                                      largest response length; TRL's "dr_grpo")
// Every weight is 0 when no token is valid. lib/losses/common.ts aggregationWeights is the reference.
enum class Aggregation : int { TokenMean = 0, SeqMeanTokenMean = 1, SeqMeanTokenSum = 2, SeqMeanTokenSumNorm = 3 };

// w: (B, T) overwrite, double (the weights the float64 references use). mask: (B, T) 0/1.
// norm > 0 (read by SeqMeanTokenSumNorm only).
void aggregation_weights(double* w, const float* mask, int64_t B, int64_t T, Aggregation mode, double norm);

// ---- PPO (token-mean aggregation unless `weights` is given: w_t = m_t / Σ m, 0 when none valid) --

// Clipped surrogate (lib/losses/ppo.ts ppoPolicyLoss), ρ_t = exp(logp_t − old_logp_t):
//   ℓ_t = −min(ρ_t A_t, clip(ρ_t, 1 − ε, 1 + ε_high) A_t);  dual clip (c > 1, A_t < 0): min(ℓ_t, −c A_t)
//   loss = Σ_t w_t ℓ_t,   dlogp_t = −w_t A_t ρ_t where the unclipped term is selected, EXACTLY 0
//   where a clip is active or A_t = 0.
// A ratio clip is active when the clipped term is strictly smaller (a tie is not clipped; TRL's
// pg_clipfrac); the dual clip when −c A_t is strictly smaller than ℓ_t.
// dlogp: (n) overwrite. logp, old_logp, adv, mask: (n). clip_eps in (0, 1), clip_eps_high > 0
// (pass clip_eps for the symmetric clip), dual_clip <= 1: off.
// Outputs (double, written): loss; clip_fraction and dual_clip_fraction (may be null): fractions
// of valid tokens with the ratio / dual clip active; approx_kl: token mean of (ρ − 1) − log ρ.
// weights (n, may be null): the aggregation weights w_t (aggregation_weights, times any per-token
// importance weight); null = token mean. Diagnostics stay token means over valid tokens.
void ppo_policy_loss(float* dlogp, const float* logp, const float* old_logp, const float* adv, const float* mask,
                     int64_t n, double clip_eps, double clip_eps_high, double dual_clip, double* loss,
                     double* clip_fraction, double* approx_kl, double* dual_clip_fraction = nullptr,
                     const double* weights = nullptr);

// GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization", eq. 5–7): one importance ratio per
// sequence, the geometric mean of its token ratios, clipped at the sequence level:
//   s_b = exp((1/n_b) Σ_{t∈b} m_t (logp_t − old_logp_t)),
//   ℓ_t = −min(s_b A_t, clip(s_b, 1 − ε, 1 + ε_high) A_t),   loss = Σ_t w_t ℓ_t,
//   ∂loss/∂logp_u = −(s_b / n_b) Σ_{t∈b, not clipped} w_t A_t   for every valid u of row b
// (the exact gradient: s_b depends on every token of its row). With A constant per row and
// SeqMeanTokenMean weights this is the paper's J_GSPO = mean_b min(s_b A_b, clip(s_b) A_b).
// dlogp: (B, T) overwrite. logp, old_logp, adv, mask: (B, T); weights: (B, T) or null (SeqMeanTokenMean).
// clip_fraction: fraction of valid tokens whose sequence ratio is clipped; approx_kl: token mean of
// (ρ_t − 1) − log ρ_t with the token ratios ρ_t (a diagnostic).
void gspo_policy_loss(float* dlogp, const float* logp, const float* old_logp, const float* adv, const float* mask,
                      const double* weights, int64_t B, int64_t T, double clip_eps, double clip_eps_high, double* loss,
                      double* clip_fraction, double* approx_kl);

// Entropy bonus as a loss term: loss = −coef Σ_t w_t H_t, dent_t = −coef w_t (lib/losses/ppo.ts
// entropyBonus). dent: (n) overwrite; ent, mask: (n); weights: (n) or null (token mean);
// mean_entropy: token mean over valid tokens. coef >= 0.
void entropy_bonus(float* dent, const float* ent, const float* mask, const double* weights, int64_t n, double coef,
                   double* loss, double* mean_entropy);

// KL to the reference as a loss term (lib/losses/kl.ts klLoss): loss = coef Σ_t w_t k(d_t),
// dlogp_t = coef w_t k'(d_t), d = logp − ref_logp, k one of the estimators above. dlogp: (n)
// overwrite; weights: (n) or null (token mean); mean_kl: token mean of k over valid tokens. coef >= 0.
void kl_loss(float* dlogp, const float* logp, const float* ref_logp, const float* mask, const double* weights,
             int64_t n, KlEstimator estimator, double coef, double* loss, double* mean_kl);

// Clipped value loss (lib/losses/ppo.ts ppoValueLoss):
//   V^c = V^old + clip(V − V^old, −ε, ε),   ℓ_t = ½ max((V − G)², (V^c − G)²),   loss = Σ w_t ℓ_t,
//   dvalues_t = w_t (V_t − G_t) where the unclipped error is selected, 0 where the clipped one is
//   strictly larger (that is also when a token counts in clip_fraction).
// dvalues: (n) overwrite. values, old_values, returns, mask: (n). clip_eps <= 0: no clip (½(V − G)²).
void ppo_value_loss(float* dvalues, const float* values, const float* old_values, const float* returns,
                    const float* mask, int64_t n, double clip_eps, double* loss, double* clip_fraction);

// ---- preference losses over N pairs of sequence log-probs (means over pairs) ------------------
// h_w = policy_chosen − ref_chosen, h_l = policy_rejected − ref_rejected, z = h_w − h_l.
// d_chosen = ∂loss/∂policy_chosen, d_rejected = ∂loss/∂policy_rejected = −d_chosen: (N) overwrite.
// rewards_chosen / rewards_rejected (may be null): β h_w, β h_l (implicit rewards), (N).
// accuracy: fraction of pairs with β h_w > β h_l (strict); margin: mean of β h_w − β h_l.
// N >= 1; β > 0.

enum class DpoVariant : int { Dpo = 0, Ipo = 1 };

// dpo: ℓ = −(1 − ε_ls) log σ(βz) − ε_ls log σ(−βz)   (ε_ls = label_smoothing in [0, 0.5]; > 0 is cDPO)
// ipo: ℓ = (z − 1/(2β))²                              (label_smoothing must be 0)
// (lib/losses/preference.ts dpoLoss; Rafailov et al. 2023, Azar et al. 2023.)
void dpo_loss(float* d_chosen, float* d_rejected, float* rewards_chosen, float* rewards_rejected,
              const float* policy_chosen, const float* policy_rejected, const float* ref_chosen,
              const float* ref_rejected, int64_t N, double beta, double label_smoothing, DpoVariant variant,
              double* loss, double* accuracy, double* margin);

enum class ExoForm : int { Trl = 0, Official = 1 };

// EXO-pref (lib/losses/exo.ts exoPrefLoss; Ji et al. 2024 Eq. 16), p = σ(βz):
//   Trl:      ℓ = p [log p − log(1 − ε)] + (1 − p) [log(1 − p) − log ε]   = KL(Bern(p) ‖ Bern(1 − ε))
//   Official: ℓ = p log p + (1 − p) [log(1 − p) − log(ε/(1 − ε))]        = Trl + log(1 − ε)
//   ∂ℓ/∂z = β p (1 − p) (βz − log((1 − ε)/ε)) for both.
// p_chosen (may be null): p per pair, (N). epsilon in (0, 1).
void exo_pref_loss(float* d_chosen, float* d_rejected, float* p_chosen, float* rewards_chosen, float* rewards_rejected,
                   const float* policy_chosen, const float* policy_rejected, const float* ref_chosen,
                   const float* ref_rejected, int64_t N, double beta, double epsilon, ExoForm form, double* loss,
                   double* accuracy, double* margin);

// EXO-rw over N / K groups of K consecutive samples (lib/losses/exo.ts exoRwLoss):
//   f_i = β_π h_i,  log p = log_softmax(f),  log q = log_softmax(r / β_r)  (per group),
//   L_group = KL(p ‖ q),   ∂L_group/∂f_i = p_i [(log p_i − log q_i) − KL(p ‖ q)],
//   loss = mean over groups,  d_policy_i = β_π ∂L_group/∂f_i / #groups.
// d_policy: (N) overwrite; p, q: (N) and group_kl: (N / K), each may be null.
// policy, ref, rewards: (N). K >= 2 dividing N >= 1; β_π, β_r > 0.
void exo_rw_loss(float* d_policy, float* p, float* q, float* group_kl, const float* policy, const float* ref,
                 const float* rewards, int64_t N, int64_t K, double beta_pi, double beta_r, double* loss);

}  // namespace cpu
}  // namespace rlhf
