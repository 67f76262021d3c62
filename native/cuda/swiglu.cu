// SwiGLU kernels (contract in swiglu.h): one thread per output element, grid-stride.
#include "swiglu.h"

#include "cuda_common.h"

namespace rlhf {
namespace cuda {

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void swiglu_forward_kernel(T* __restrict__ a, const T* __restrict__ gu, int64_t N, int F) {
  const int64_t total = N * F, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / F, j = i % F;
    float g = to_float(gu[r * 2 * F + j]), u = to_float(gu[r * 2 * F + F + j]);
    float sig = 1.0f / (1.0f + expf(-g));
    a[i] = from_float<T>((g * sig) * u);
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(T* __restrict__ dgu, const T* __restrict__ da, const T* __restrict__ gu,
                                       int64_t N, int F) {
  const int64_t total = N * F, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / F, j = i % F;
    float g = to_float(gu[r * 2 * F + j]), u = to_float(gu[r * 2 * F + F + j]), d = to_float(da[i]);
    float sig = 1.0f / (1.0f + expf(-g));
    dgu[r * 2 * F + F + j] = from_float<T>(d * (g * sig));
    dgu[r * 2 * F + j] = from_float<T>((d * u) * (sig * (1.0f + g * (1.0f - sig))));
  }
}

unsigned grid_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

Status check(int64_t N, int F, DType dtype, const char* what) {
  if (N < 0 || F <= 0) return Status::Invalid(std::string(what) + ": need N >= 0 and F > 0");
  if (dtype != DType::F32 && dtype != DType::BF16)
    return Status::Invalid(std::string(what) + ": dtype must be f32 or bf16");
  return Status::Ok();
}

}  // namespace

Status swiglu_forward(void* a, const void* gu, int64_t N, int F, DType dtype, Stream stream) {
  Status st = check(N, F, dtype, "swiglu_forward");
  if (!st.ok() || N == 0) return st;
  if (dtype == DType::F32)
    RLHF_LAUNCH(swiglu_forward_kernel<float>, dim3(grid_for(N * F)), dim3(kThreads), 0, as_stream(stream))
    (static_cast<float*>(a), static_cast<const float*>(gu), N, F);
  else
    RLHF_LAUNCH(swiglu_forward_kernel<__nv_bfloat16>, dim3(grid_for(N * F)), dim3(kThreads), 0, as_stream(stream))
    (static_cast<__nv_bfloat16*>(a), static_cast<const __nv_bfloat16*>(gu), N, F);
  return launch_status("swiglu_forward");
}

Status swiglu_backward(void* dgu, const void* da, const void* gu, int64_t N, int F, DType dtype, Stream stream) {
  Status st = check(N, F, dtype, "swiglu_backward");
  if (!st.ok() || N == 0) return st;
  if (dtype == DType::F32)
    RLHF_LAUNCH(swiglu_backward_kernel<float>, dim3(grid_for(N * F)), dim3(kThreads), 0, as_stream(stream))
    (static_cast<float*>(dgu), static_cast<const float*>(da), static_cast<const float*>(gu), N, F);
  else
    RLHF_LAUNCH(swiglu_backward_kernel<__nv_bfloat16>, dim3(grid_for(N * F)), dim3(kThreads), 0, as_stream(stream))
    (static_cast<__nv_bfloat16*>(dgu), static_cast<const __nv_bfloat16*>(da), static_cast<const __nv_bfloat16*>(gu), N,
     F);
  return launch_status("swiglu_backward");
}

}  // namespace cuda
}  // namespace rlhf
