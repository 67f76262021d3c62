// Fused AdamW over flat fp32 buffers (Loshchilov & Hutter, "Decoupled Weight Decay
// Regularization"; the update follows torch.optim.AdamW):
//
//   g  = grad · clip                         clip = min(1, max_norm / (‖grad‖₂ + 1e-6))
//   p  = p · (1 − lr·wd)                     decoupled weight decay (per segment wd)
//   m  = β1·m + (1−β1)·g
//   v  = β2·v + (1−β2)·g²
//   p  = p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + eps)
//      = p − (lr·√(1−β2ᵗ) / (1−β1ᵗ)) · m / (√v + eps·√(1−β2ᵗ))   (computed form: one division)
//
// One pass reads grad to get ‖grad‖₂ (double partial sums per thread, added in thread order:
// deterministic for a fixed thread count); a second pass reads p, g, m, v and writes p, m, v:
// 28 bytes per parameter. A non-finite norm (any NaN/Inf gradient) skips the step and leaves
// p, m and v untouched.
#pragma once
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace rlhf {
namespace cpu {

struct AdamWOptions {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  float max_grad_norm = 0.0f;  // <= 0: no clipping
};

// A run of parameters sharing one weight-decay multiplier (e.g. 0 for norms and biases). When
// segments are given they must tile [0, n) in order, without gaps or overlap (checked).
struct AdamWSegment {
  int64_t offset, length;
  float weight_decay_scale;  // effective wd = options.weight_decay · scale
};

// Per-step scalars, computed on the host once per step (the kernel reads only these).
struct AdamWScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;    // lr·√(1 − β2ᵗ) / (1 − β1ᵗ)
  float eps_scaled;   // eps·√(1 − β2ᵗ)
  float grad_scale;   // clipping coefficient, 1 when not clipping
  float lr_times_wd;  // lr · weight_decay (times segment scale at use)
};
AdamWScalars adamw_scalars(const AdamWOptions& o, int64_t step, float grad_scale);

struct AdamWResult {
  double grad_norm;  // ‖grad‖₂ before clipping (NaN/Inf when non-finite)
  bool skipped;      // true: non-finite gradients, nothing was changed
};

// Σ x², double accumulation, deterministic for a fixed thread count.
double sum_of_squares(const float* x, int64_t n);

// Clip coefficient for a norm: min(1, max_norm / (norm + 1e-6)); 1 when max_norm <= 0.
float adamw_clip_scale(double grad_norm, float max_grad_norm);

// The fused update pass alone (for callers that combine norms across ranks first).
// segments == empty: one segment over [0, n) with scale 1.
void adamw_apply(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s,
                 const std::vector<AdamWSegment>& segments);

// Norm, skip-or-clip, update. `step` is the 1-based number of this step (bias correction).
AdamWResult adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamWOptions& o, int64_t step,
                       const std::vector<AdamWSegment>& segments = {});

// adamw_step with ‖grad‖₂ taken over `norm_ranges` (offset, length) only; the update still covers
// [0, n). For tensor-parallel shards in one buffer, where replicated parameters must count once.
AdamWResult adamw_step_norm_ranges(float* p, const float* g, float* m, float* v, int64_t n, const AdamWOptions& o,
                                   int64_t step, const std::vector<AdamWSegment>& segments,
                                   const std::vector<std::pair<int64_t, int64_t>>& norm_ranges);

// ZeRO stage 1 (sharded optimizer state): ‖grad‖₂ over all of g[0, n) (or over `norm_ranges`),
// exactly as adamw_step / adamw_step_norm_ranges compute it, then the update of p[begin, end) only,
// with m and v holding that range (length end − begin). Every element gets the update adamw_step
// gives it, bit for bit, so ranks that each update their range and then share it end up with the
// weights of one unsharded step.
AdamWResult adamw_step_range(float* p, const float* g, float* m, float* v, int64_t n, int64_t begin, int64_t end,
                             const AdamWOptions& o, int64_t step, const std::vector<AdamWSegment>& segments,
                             const std::vector<std::pair<int64_t, int64_t>>& norm_ranges);

// AdamW over a tensor-parallel shard whose gradient norm spans the group of processes: Σg² over norm_ranges (all of [0,
// n) when empty) on this rank, summed over the ranks with sum_f64, then adamw_apply on [begin, end) (ZeRO-1 range; [0,
// n) when not sharded). Every rank gets the same norm, so replicated parameters receive identical updates. The moments
// m, v hold [begin, end).
AdamWResult adamw_step_across_ranks(float* p, const float* g, float* m, float* v, int64_t n, int64_t begin, int64_t end,
                                    const AdamWOptions& o, int64_t step, const std::vector<AdamWSegment>& segments,
                                    const std::vector<std::pair<int64_t, int64_t>>& norm_ranges,
                                    const std::function<void(double*, int64_t)>& sum_f64);

// Plain single-threaded loops computing the same thing: the reference the tests compare with.
AdamWResult adamw_step_reference(float* p, const float* g, float* m, float* v, int64_t n, const AdamWOptions& o,
                                 int64_t step, const std::vector<AdamWSegment>& segments = {});

void adamw_check_options(const AdamWOptions& o);  // throws OutOfRange naming the bad field
void adamw_check_segments(const std::vector<AdamWSegment>& segments, int64_t n);

}  // namespace cpu
}  // namespace rlhf
