// Log-softmax kernels (contract in logsoftmax.h): one block per row; pass 1 the row maximum,
// pass 2 Σ e^(u−m) and Σ e^(u−m)·u (fp32, block-reduced in a fixed order), backward one pass.
#include "logsoftmax.h"

#include <cmath>

#include "cuda_common.h"

namespace rlhf {
namespace cuda {

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void logsoftmax_forward_kernel(float* __restrict__ logp, float* __restrict__ ent, float* __restrict__ lse,
                                          const T* __restrict__ z, int64_t ldz, const int32_t* __restrict__ targets,
                                          int64_t V, float inv_t) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const int32_t y = targets[r];
  if (y < 0) {  // uniform per block: no thread reaches a barrier
    if (threadIdx.x == 0) {
      logp[r] = 0.0f, lse[r] = 0.0f;
      if (ent) ent[r] = 0.0f;
    }
    return;
  }
  const T* zr = z + r * ldz;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, to_float(zr[j]) * inv_t);
  m = block_max(m, scratch);
  if (m == -INFINITY) {  // every logit masked
    if (threadIdx.x == 0) {
      logp[r] = -INFINITY, lse[r] = -INFINITY;
      if (ent) ent[r] = 0.0f;
    }
    return;
  }
  float se = 0.0f, sz = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float u = to_float(zr[j]) * inv_t;
    float e = expf(u - m);
    se += e;
    sz += e > 0.0f ? e * u : 0.0f;  // 0·(−inf) would be NaN
  }
  se = block_sum(se, scratch);
  sz = block_sum(sz, scratch);
  if (threadIdx.x == 0) {
    const float l = m + logf(se);
    lse[r] = l;
    logp[r] = to_float(zr[y]) * inv_t - l;
    if (ent) ent[r] = l - sz / se;
  }
}

template <typename T>
__global__ void logsoftmax_backward_kernel(T* dz, int64_t lddz, const T* z, int64_t ldz,
                                           const int32_t* __restrict__ targets, const float* __restrict__ lse,
                                           const float* __restrict__ ent, const float* __restrict__ dlogp,
                                           const float* __restrict__ dent, int64_t V, float inv_t) {
  const int64_t r = blockIdx.x;
  const int32_t y = targets[r];
  T* dzr = dz + r * lddz;
  const T* zr = z + r * ldz;
  if (y < 0) {
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) dzr[j] = from_float<T>(0.0f);
    return;
  }
  const float g = dlogp ? dlogp[r] : 0.0f, h = dent ? dent[r] : 0.0f;
  const float a = g + (dent ? h * ent[r] : 0.0f), l = lse[r];
  // p_j = exp(u_j − lse): dz_j = (−p_j·(a + h·(u_j − lse)) + g·1[j = y]) / T. Each element is read
  // before it is written by the same thread, so dz may alias z.
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float ul = to_float(zr[j]) * inv_t - l;
    float p = expf(ul);
    float d = p > 0.0f ? -p * (a + h * ul) : 0.0f;
    if (j == y) d += g;
    dzr[j] = from_float<T>(d * inv_t);
  }
}

Status check(int64_t N, int64_t V, int64_t ld, float temperature, DType dtype, const char* what) {
  if (N < 0 || N > 0x7fffffff || V <= 0 || ld < V)
    return Status::Invalid(std::string(what) + ": need 0 <= N < 2^31, V > 0, row stride >= V");
  if (!(temperature > 0) || !std::isfinite(temperature))
    return Status::Invalid(std::string(what) + ": temperature must be finite and > 0");
  if (dtype != DType::F32 && dtype != DType::BF16)
    return Status::Invalid(std::string(what) + ": dtype must be f32 or bf16");
  return Status::Ok();
}

}  // namespace

Status logsoftmax_forward(float* logp, float* ent, float* lse, const void* z, int64_t ldz, const int32_t* targets,
                          int64_t N, int64_t V, float temperature, DType dtype, Stream stream) {
  Status st = check(N, V, ldz, temperature, dtype, "logsoftmax_forward");
  if (!st.ok() || N == 0) return st;
  const float inv_t = 1.0f / temperature;
  if (dtype == DType::F32)
    RLHF_LAUNCH(logsoftmax_forward_kernel<float>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0, as_stream(stream))
    (logp, ent, lse, static_cast<const float*>(z), ldz, targets, V, inv_t);
  else
    RLHF_LAUNCH(logsoftmax_forward_kernel<__nv_bfloat16>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0,
                as_stream(stream))
    (logp, ent, lse, static_cast<const __nv_bfloat16*>(z), ldz, targets, V, inv_t);
  return launch_status("logsoftmax_forward");
}

Status logsoftmax_backward(void* dz, int64_t lddz, const void* z, int64_t ldz, const int32_t* targets, const float* lse,
                           const float* ent, const float* dlogp, const float* dent, int64_t N, int64_t V,
                           float temperature, DType dtype, Stream stream) {
  Status st = check(N, V, ldz < lddz ? ldz : lddz, temperature, dtype, "logsoftmax_backward");
  if (!st.ok() || N == 0) return st;
  if (dent && !ent) return Status::Invalid("logsoftmax_backward: dent given without ent");
  const float inv_t = 1.0f / temperature;
  if (dtype == DType::F32)
    RLHF_LAUNCH(logsoftmax_backward_kernel<float>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0, as_stream(stream))
    (static_cast<float*>(dz), lddz, static_cast<const float*>(z), ldz, targets, lse, ent, dlogp, dent, V, inv_t);
  else
    RLHF_LAUNCH(logsoftmax_backward_kernel<__nv_bfloat16>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0,
                as_stream(stream))
    (static_cast<__nv_bfloat16*>(dz), lddz, static_cast<const __nv_bfloat16*>(z), ldz, targets, lse, ent, dlogp, dent,
     V, inv_t);
  return launch_status("logsoftmax_backward");
}

}  // namespace cuda
}  // namespace rlhf
