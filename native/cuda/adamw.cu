// Fused AdamW (contract in adamw.h; the formula in native/cpu/adamw.h). 28 bytes per parameter
// (read p, g, m, v; write p, m, v), 30 with the bf16 copy: a memory-bound grid-stride loop.
#include "adamw.h"

#include <cmath>

#include "cuda_common.h"

namespace rlhf {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kSumsqBlocks = 512;

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, __nv_bfloat16* __restrict__ p_bf16, int64_t begin, int64_t end,
                             cpu::AdamWScalars s, float decay) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = begin + int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < end; i += stride) {
    float gi = g[i] * s.grad_scale;
    float mi = s.beta1 * m[i] + s.one_minus_beta1 * gi;
    float vi = s.beta2 * v[i] + s.one_minus_beta2 * (gi * gi);
    float denom = sqrtf(vi) + s.eps_scaled;
    float pi = p[i] * decay;
    pi = pi - s.step_size * (mi / denom);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
    if (p_bf16) p_bf16[i] = __float2bfloat16(pi);
  }
}

// Block b sums a fixed strided subset in double; the second kernel adds the partials in order.
__global__ void sumsq_partial_kernel(double* partials, const float* __restrict__ x, int64_t n) {
  __shared__ double scratch[32];
  double acc = 0.0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    acc += double(x[i]) * double(x[i]);
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void sumsq_final_kernel(double* partials, int count) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partials[0] = acc;
}

unsigned grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65536 ? 65536 : blocks));
}

}  // namespace

int64_t adamw_sumsq_partials() { return kSumsqBlocks; }

Status adamw_sum_of_squares(const float* g, int64_t n, double* partials, double* host_out, Stream stream) {
  if (n < 0 || (n > 0 && !g) || !partials || !host_out) return Status::Invalid("adamw_sum_of_squares: bad arguments");
  RLHF_LAUNCH(sumsq_partial_kernel, dim3(kSumsqBlocks), dim3(kThreads), 0, as_stream(stream))(partials, g, n);
  Status st = launch_status("adamw_sum_of_squares");
  if (!st.ok()) return st;
  RLHF_LAUNCH(sumsq_final_kernel, dim3(1), dim3(kThreads), 0, as_stream(stream))(partials, kSumsqBlocks);
  st = launch_status("adamw_sum_of_squares (final)");
  if (!st.ok()) return st;
  return cuda_status(
      cudaMemcpyAsync(host_out, partials, sizeof(double), cudaMemcpyDeviceToHost, as_stream(stream)) == cudaSuccess
          ? cudaStreamSynchronize(as_stream(stream))
          : cudaGetLastError(),
      "adamw_sum_of_squares (copy)");
}

Status adamw_apply(float* p, const float* g, float* m, float* v, void* p_bf16, int64_t n, const cpu::AdamWScalars& s,
                   const std::vector<cpu::AdamWSegment>& segments, Stream stream) {
  if (n < 0 || (n > 0 && (!p || !g || !m || !v))) return Status::Invalid("adamw_apply: null buffer or n < 0");
  int64_t next = 0;
  for (const auto& seg : segments) {
    if (seg.offset != next || seg.length < 0 || !(seg.weight_decay_scale >= 0))
      return Status::Invalid("adamw_apply: segments must tile [0, n) in order with scales >= 0");
    next += seg.length;
  }
  if (!segments.empty() && next != n) return Status::Invalid("adamw_apply: segments do not cover [0, n)");
  auto run = [&](int64_t b, int64_t e, float decay) {
    if (e <= b) return Status::Ok();
    RLHF_LAUNCH(adamw_kernel, dim3(grid_for(e - b)), dim3(kThreads), 0, as_stream(stream))
    (p, g, m, v, static_cast<__nv_bfloat16*>(p_bf16), b, e, s, decay);
    return launch_status("adamw_apply");
  };
  if (segments.empty()) return run(0, n, 1.0f - s.lr_times_wd);
  size_t i = 0;
  while (i < segments.size()) {
    size_t j = i + 1;
    while (j < segments.size() && segments[j].weight_decay_scale == segments[i].weight_decay_scale) ++j;
    Status st = run(segments[i].offset, segments[j - 1].offset + segments[j - 1].length,
                    1.0f - s.lr_times_wd * segments[i].weight_decay_scale);
    if (!st.ok()) return st;
    i = j;
  }
  return Status::Ok();
}

Status adamw_step(float* p, const float* g, float* m, float* v, void* p_bf16, int64_t n, const cpu::AdamWOptions& o,
                  int64_t step, const std::vector<cpu::AdamWSegment>& segments, double* partials,
                  cpu::AdamWResult* result, Stream stream) {
  if (!result) return Status::Invalid("adamw_step: result must not be null");
  if (step < 1) return Status::Invalid("adamw_step: step must be >= 1");
  if (!(std::isfinite(o.lr) && o.lr >= 0 && o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1 &&
        std::isfinite(o.eps) && o.eps > 0 && std::isfinite(o.weight_decay) && o.weight_decay >= 0 &&
        !std::isnan(o.max_grad_norm)))
    return Status::Invalid("adamw_step: options out of range (see cpu::adamw_check_options)");
  double sumsq = 0.0;
  Status st = adamw_sum_of_squares(g, n, partials, &sumsq, stream);
  if (!st.ok()) return st;
  double norm = std::sqrt(sumsq);
  *result = {norm, !std::isfinite(norm)};
  if (result->skipped) return Status::Ok();
  return adamw_apply(p, g, m, v, p_bf16, n, cpu::adamw_scalars(o, step, cpu::adamw_clip_scale(norm, o.max_grad_norm)),
                     segments, stream);
}

}  // namespace cuda
}  // namespace rlhf
