// Included by every native/cuda/*.cu: the real CUDA headers under nvcc, the host emulation
// harness (emu/cuda_emu.h) under a plain C++ compiler, and the few things both need:
//   RLHF_LAUNCH(kernel, grid, block, smem, stream)(args...)  launch syntax valid for both;
//   RLHF_DYNAMIC_SHARED(type, name)                          the dynamic shared-memory area;
//   launch_status("name")                                    the launch's error as a Status;
//   warp_sum / warp_max / block_sum / block_max              fp32 reductions in a fixed order.
#pragma once
#include <cstdint>
#include <string>

#include "status.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define RLHF_HOST_EMULATION 0
#define RLHF_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define RLHF_DYNAMIC_SHARED(type, name)                               \
  extern __shared__ __align__(16) unsigned char rlhf_dynamic_smem_[]; \
  type* name = reinterpret_cast<type*>(rlhf_dynamic_smem_)
#else
#include "emu/cuda_emu.h"
#define RLHF_HOST_EMULATION 1
#define RLHF_LAUNCH RLHF_EMU_LAUNCH
#define RLHF_DYNAMIC_SHARED RLHF_EMU_DYNAMIC_SHARED
#endif

namespace rlhf {
namespace cuda {

inline cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

// The error of the last launch (configuration errors show at once; a kernel's own failure shows
// at the next synchronisation) as a Status naming `what`.
inline Status launch_status(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::Ok();
  return {StatusCode::CudaError, std::string(what) + ": " + cudaGetErrorString(e)};
}
inline Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  cudaGetLastError();
  return {StatusCode::CudaError, std::string(what) + ": " + cudaGetErrorString(e)};
}

inline unsigned ceil_div(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

// ---- reductions (every lane gets the result; fixed butterfly order, so deterministic) --------
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum / max for blocks whose size is a multiple of 32 (≤ 1024); `scratch` is 32
// shared elements. Every thread of the block must call it; all get the result.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = lane < nwarps ? scratch[lane] : T(0);
  return warp_sum(r);
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < nwarps ? scratch[lane] : -INFINITY;
  return warp_max(r);
}

// Storage conversions for kernels templated on the element type (float or __nv_bfloat16).
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}

}  // namespace cuda
}  // namespace rlhf
