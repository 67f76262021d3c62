#include "adamw.h"

#include <algorithm>
#include <cmath>

#include "../core/error.h"
#include "../core/thread_pool.h"

namespace rlhf {
namespace cpu {

namespace {

// The elementwise update on [b, e) with one weight decay. Compiled for several ISAs (resolved at
// load time); with fp-contract off every clone does the same IEEE operations in the same order,
// so results are bit-identical across ISAs and identical to the reference loop.
__attribute__((target_clones("avx512f", "avx2", "default"))) void adamw_update_range(
    float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t b, int64_t e,
    AdamWScalars s, float decay) {
  for (int64_t i = b; i < e; ++i) {
    float gi = g[i] * s.grad_scale;
    float mi = s.beta1 * m[i] + s.one_minus_beta1 * gi;
    float vi = s.beta2 * v[i] + s.one_minus_beta2 * (gi * gi);
    float denom = std::sqrt(vi) + s.eps_scaled;
    float pi = p[i] * decay;
    p[i] = pi - s.step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
  }
}

// 16 independent double lanes, combined in a fixed order: vectorisable without reassociation.
__attribute__((target_clones("avx512f", "avx2", "default"))) double sumsq_range(const float* __restrict x, int64_t n) {
  double lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += static_cast<double>(x[i + l]) * static_cast<double>(x[i + l]);
  for (; i < n; ++i) lanes[i & 15] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  double total = 0.0;
  for (int l = 0; l < 16; ++l) total += lanes[l];
  return total;
}

constexpr int64_t kMinPerThread = 1 << 15;

// Visits the parts of [b, e) that fall in each segment, with that segment's decay factor.
template <typename F>
void for_each_segment_part(int64_t b, int64_t e, const AdamWScalars& s, const std::vector<AdamWSegment>& segments,
                           F&& f) {
  if (segments.empty()) {
    f(b, e, 1.0f - s.lr_times_wd);
    return;
  }
  for (const auto& seg : segments) {
    int64_t lo = std::max(b, seg.offset), hi = std::min(e, seg.offset + seg.length);
    if (lo < hi) f(lo, hi, 1.0f - s.lr_times_wd * seg.weight_decay_scale);
  }
}

}  // namespace

void adamw_check_options(const AdamWOptions& o) {
  RLHF_CHECK(std::isfinite(o.lr) && o.lr >= 0, ErrorCode::OutOfRange, "adamw: lr must be finite and >= 0, got ", o.lr);
  RLHF_CHECK(o.beta1 >= 0 && o.beta1 < 1, ErrorCode::OutOfRange, "adamw: beta1 must be in [0, 1), got ", o.beta1);
  RLHF_CHECK(o.beta2 >= 0 && o.beta2 < 1, ErrorCode::OutOfRange, "adamw: beta2 must be in [0, 1), got ", o.beta2);
  RLHF_CHECK(std::isfinite(o.eps) && o.eps > 0, ErrorCode::OutOfRange, "adamw: eps must be finite and > 0, got ",
             o.eps);
  RLHF_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, ErrorCode::OutOfRange,
             "adamw: weightDecay must be finite and >= 0, got ", o.weight_decay);
  RLHF_CHECK(!std::isnan(o.max_grad_norm), ErrorCode::OutOfRange, "adamw: maxGradNorm must not be NaN");
}

void adamw_check_segments(const std::vector<AdamWSegment>& segments, int64_t n) {
  int64_t next = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    const auto& seg = segments[i];
    RLHF_CHECK(seg.offset == next && seg.length >= 0, ErrorCode::OutOfRange, "adamw: segment ", i, " must start at ",
               next, " with length >= 0, got offset ", seg.offset, " length ", seg.length);
    RLHF_CHECK(std::isfinite(seg.weight_decay_scale) && seg.weight_decay_scale >= 0, ErrorCode::OutOfRange,
               "adamw: segment ", i, " weight decay scale must be finite and >= 0");
    next += seg.length;
  }
  RLHF_CHECK(segments.empty() || next == n, ErrorCode::OutOfRange, "adamw: segments cover ", next,
             " parameters, expected ", n);
}

AdamWScalars adamw_scalars(const AdamWOptions& o, int64_t step, float grad_scale) {
  RLHF_CHECK(step >= 1, ErrorCode::OutOfRange, "adamw: step must be >= 1, got ", step);
  AdamWScalars s;
  s.beta1 = o.beta1;
  s.one_minus_beta1 = 1.0f - o.beta1;
  s.beta2 = o.beta2;
  s.one_minus_beta2 = 1.0f - o.beta2;
  double bc1 = 1.0 - std::pow(static_cast<double>(o.beta1), static_cast<double>(step));
  double bc2 = 1.0 - std::pow(static_cast<double>(o.beta2), static_cast<double>(step));
  s.step_size = static_cast<float>(o.lr * std::sqrt(bc2) / bc1);
  s.eps_scaled = static_cast<float>(o.eps * std::sqrt(bc2));
  s.grad_scale = grad_scale;
  s.lr_times_wd = o.lr * o.weight_decay;
  return s;
}

float adamw_clip_scale(double grad_norm, float max_grad_norm) {
  if (!(max_grad_norm > 0) || std::isinf(max_grad_norm)) return 1.0f;
  double c = static_cast<double>(max_grad_norm) / (grad_norm + 1e-6);
  return c < 1.0 ? static_cast<float>(c) : 1.0f;
}

double sum_of_squares(const float* x, int64_t n) {
  const int threads = current_pool().size();
  std::vector<double> partial(threads, 0.0);
  parallel_for(n, kMinPerThread, [&](int64_t b, int64_t e, int t) { partial[t] = sumsq_range(x + b, e - b); });
  double total = 0.0;
  for (double x_t : partial) total += x_t;
  return total;
}

void adamw_apply(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s,
                 const std::vector<AdamWSegment>& segments) {
  parallel_for(n, kMinPerThread, [&](int64_t b, int64_t e, int) {
    for_each_segment_part(b, e, s, segments, [&](int64_t lo, int64_t hi, float decay) {
      adamw_update_range(p, g, m, v, lo, hi, s, decay);
    });
  });
}

AdamWResult adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamWOptions& o, int64_t step,
                       const std::vector<AdamWSegment>& segments) {
  adamw_check_options(o);
  adamw_check_segments(segments, n);
  double norm = std::sqrt(sum_of_squares(g, n));
  if (!std::isfinite(norm)) return {norm, true};
  adamw_apply(p, g, m, v, n, adamw_scalars(o, step, adamw_clip_scale(norm, o.max_grad_norm)), segments);
  return {norm, false};
}

// ‖g‖₂ over (offset, length) ranges of g[0, n), summed range by range.
static double grad_norm(const float* g, int64_t n, const std::vector<std::pair<int64_t, int64_t>>& norm_ranges) {
  double sumsq = 0.0;
  for (const auto& [off, len] : norm_ranges) {
    RLHF_CHECK(off >= 0 && len >= 0 && off + len <= n, ErrorCode::OutOfRange, "adamw: norm range [", off, ", ",
               off + len, ") outside [0, ", n, ")");
    sumsq += sum_of_squares(g + off, len);
  }
  return std::sqrt(sumsq);
}

AdamWResult adamw_step_norm_ranges(float* p, const float* g, float* m, float* v, int64_t n, const AdamWOptions& o,
                                   int64_t step, const std::vector<AdamWSegment>& segments,
                                   const std::vector<std::pair<int64_t, int64_t>>& norm_ranges) {
  adamw_check_options(o);
  adamw_check_segments(segments, n);
  double norm = grad_norm(g, n, norm_ranges);
  if (!std::isfinite(norm)) return {norm, true};
  adamw_apply(p, g, m, v, n, adamw_scalars(o, step, adamw_clip_scale(norm, o.max_grad_norm)), segments);
  return {norm, false};
}

AdamWResult adamw_step_range(float* p, const float* g, float* m, float* v, int64_t n, int64_t begin, int64_t end,
                             const AdamWOptions& o, int64_t step, const std::vector<AdamWSegment>& segments,
                             const std::vector<std::pair<int64_t, int64_t>>& norm_ranges) {
  adamw_check_options(o);
  adamw_check_segments(segments, n);
  RLHF_CHECK(0 <= begin && begin <= end && end <= n, ErrorCode::OutOfRange, "adamw: shard [", begin, ", ", end,
             ") outside [0, ", n, ")");
  double norm = norm_ranges.empty() ? std::sqrt(sum_of_squares(g, n)) : grad_norm(g, n, norm_ranges);
  if (!std::isfinite(norm)) return {norm, true};
  std::vector<AdamWSegment> local;  // the segments' parts inside [begin, end), shifted to start at 0
  for (const auto& seg : segments) {
    int64_t lo = std::max(seg.offset, begin), hi = std::min(seg.offset + seg.length, end);
    if (lo < hi) local.push_back({lo - begin, hi - lo, seg.weight_decay_scale});
  }
  adamw_apply(p + begin, g + begin, m, v, end - begin, adamw_scalars(o, step, adamw_clip_scale(norm, o.max_grad_norm)),
              local);
  return {norm, false};
}

AdamWResult adamw_step_reference(float* p, const float* g, float* m, float* v, int64_t n, const AdamWOptions& o,
                                 int64_t step, const std::vector<AdamWSegment>& segments) {
  adamw_check_options(o);
  adamw_check_segments(segments, n);
  double sumsq = 0.0;
  for (int64_t i = 0; i < n; ++i) sumsq += static_cast<double>(g[i]) * g[i];
  double norm = std::sqrt(sumsq);
  if (!std::isfinite(norm)) return {norm, true};
  AdamWScalars s = adamw_scalars(o, step, adamw_clip_scale(norm, o.max_grad_norm));
  std::vector<float> decay(n, 1.0f - s.lr_times_wd);
  if (!segments.empty()) {
    for (const auto& seg : segments)
      for (int64_t i = seg.offset; i < seg.offset + seg.length; ++i)
        decay[i] = 1.0f - s.lr_times_wd * seg.weight_decay_scale;
  }
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i] * s.grad_scale;
    m[i] = s.beta1 * m[i] + s.one_minus_beta1 * gi;
    v[i] = s.beta2 * v[i] + s.one_minus_beta2 * (gi * gi);
    float denom = std::sqrt(v[i]) + s.eps_scaled;
    p[i] = p[i] * decay[i] - s.step_size * (m[i] / denom);
  }
  return {norm, false};
}

AdamWResult adamw_step_across_ranks(float* p, const float* g, float* m, float* v, int64_t n, int64_t begin, int64_t end,
                                    const AdamWOptions& o, int64_t step, const std::vector<AdamWSegment>& segments,
                                    const std::vector<std::pair<int64_t, int64_t>>& norm_ranges,
                                    const std::function<void(double*, int64_t)>& sum_f64) {
  adamw_check_options(o);
  adamw_check_segments(segments, n);
  RLHF_CHECK(0 <= begin && begin <= end && end <= n, ErrorCode::OutOfRange, "adamw: shard [", begin, ", ", end,
             ") outside [0, ", n, ")");
  double sumsq = 0.0;
  if (norm_ranges.empty()) sumsq = sum_of_squares(g, n);
  for (const auto& [off, len] : norm_ranges) {
    RLHF_CHECK(off >= 0 && len >= 0 && off + len <= n, ErrorCode::OutOfRange, "adamw: norm range [", off, ", ",
               off + len, ") outside [0, ", n, ")");
    sumsq += sum_of_squares(g + off, len);
  }
  sum_f64(&sumsq, 1);
  const double norm = std::sqrt(sumsq);
  if (!std::isfinite(norm)) return {norm, true};
  std::vector<AdamWSegment> local;  // the segments' parts inside [begin, end), shifted to start at 0
  for (const auto& seg : segments) {
    const int64_t lo = std::max(seg.offset, begin), hi = std::min(seg.offset + seg.length, end);
    if (lo < hi) local.push_back({lo - begin, hi - lo, seg.weight_decay_scale});
  }
  if (segments.empty()) local.push_back({0, end - begin, 1.0f});
  adamw_apply(p + begin, g + begin, m, v, end - begin, adamw_scalars(o, step, adamw_clip_scale(norm, o.max_grad_norm)),
              local);
  return {norm, false};
}

}  // namespace cpu
}  // namespace rlhf
