// RMSNorm kernels (contract in rmsnorm.h). One block per row; fp32 arithmetic whatever the
// storage type.
#include "rmsnorm.h"

#include "cuda_common.h"

namespace rlhf {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxPartialBlocks = 128;

int partial_blocks(int64_t N) { return static_cast<int>(N < kMaxPartialBlocks ? (N < 1 ? 1 : N) : kMaxPartialBlocks); }

template <typename T>
__global__ void rmsnorm_forward_kernel(T* __restrict__ out, float* __restrict__ rstd, const T* __restrict__ x,
                                       const T* __restrict__ w, int C, float eps) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * C;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float xv = to_float(xr[c]);
    ss += xv * xv;
  }
  ss = block_sum(ss, scratch);
  const float rs = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  if (rstd && threadIdx.x == 0) rstd[r] = rs;
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    out[r * C + c] = from_float<T>((to_float(xr[c]) * rs) * to_float(w[c]));
}

// Block b handles rows b, b + gridDim.x, ...: dx for each, and its own dw partial row
// partial[b][c] (overwrite) over those rows.
template <typename T>
__global__ void rmsnorm_backward_kernel(T* __restrict__ dx, float* __restrict__ partial, const T* __restrict__ dout,
                                        const T* __restrict__ x, const T* __restrict__ w,
                                        const float* __restrict__ rstd, int64_t N, int C) {
  __shared__ float scratch[32];
  float* pb = partial + int64_t(blockIdx.x) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) pb[c] = 0.0f;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T *xr = x + r * C, *gr = dout + r * C;
    const float rs = rstd[r];
    float dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
      dot += (to_float(gr[c]) * to_float(w[c])) * (to_float(xr[c]) * rs);
    dot = block_sum(dot, scratch);
    const float mean = dot / static_cast<float>(C);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
      float xh = to_float(xr[c]) * rs, g = to_float(gr[c]);
      dx[r * C + c] = from_float<T>(to_float(dx[r * C + c]) + rs * (g * to_float(w[c]) - xh * mean));
      pb[c] += g * xh;
    }
  }
}

__global__ void rmsnorm_dw_kernel(float* __restrict__ dw, const float* __restrict__ partial, int blocks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int b = 0; b < blocks; ++b) s += partial[int64_t(b) * C + c];
  dw[c] += s;
}

template <typename T>
Status forward_typed(void* out, float* rstd, const void* x, const void* w, int64_t N, int C, float eps, Stream stream) {
  if (N == 0) return Status::Ok();
  RLHF_LAUNCH(rmsnorm_forward_kernel<T>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0, as_stream(stream))
  (static_cast<T*>(out), rstd, static_cast<const T*>(x), static_cast<const T*>(w), C, eps);
  return launch_status("rmsnorm_forward");
}

template <typename T>
Status backward_typed(void* dx, float* dw, const void* dout, const void* x, const void* w, const float* rstd, int64_t N,
                      int C, void* workspace, Stream stream) {
  if (N == 0) return Status::Ok();
  const int blocks = partial_blocks(N);
  float* partial = static_cast<float*>(workspace);
  RLHF_LAUNCH(rmsnorm_backward_kernel<T>, dim3(blocks), dim3(kThreads), 0, as_stream(stream))
  (static_cast<T*>(dx), partial, static_cast<const T*>(dout), static_cast<const T*>(x), static_cast<const T*>(w), rstd,
   N, C);
  Status st = launch_status("rmsnorm_backward");
  if (!st.ok()) return st;
  RLHF_LAUNCH(rmsnorm_dw_kernel, dim3(ceil_div(C, kThreads)), dim3(kThreads), 0, as_stream(stream))
  (dw, partial, blocks, C);
  return launch_status("rmsnorm_backward (dw)");
}

Status check_args(int64_t N, int C, DType dtype, const char* what) {
  if (N < 0 || N > 0x7fffffff || C <= 0) return Status::Invalid(std::string(what) + ": need 0 <= N < 2^31 and C > 0");
  if (dtype != DType::F32 && dtype != DType::BF16)
    return Status::Invalid(std::string(what) + ": dtype must be f32 or bf16");
  return Status::Ok();
}

}  // namespace

Status rmsnorm_forward(void* out, float* rstd, const void* x, const void* w, int64_t N, int C, float eps, DType dtype,
                       Stream stream) {
  Status st = check_args(N, C, dtype, "rmsnorm_forward");
  if (!st.ok()) return st;
  if (!(eps > 0)) return Status::Invalid("rmsnorm_forward: eps must be > 0");
  return dtype == DType::F32 ? forward_typed<float>(out, rstd, x, w, N, C, eps, stream)
                             : forward_typed<__nv_bfloat16>(out, rstd, x, w, N, C, eps, stream);
}

size_t rmsnorm_backward_workspace_bytes(int64_t N, int C) {
  return static_cast<size_t>(partial_blocks(N)) * static_cast<size_t>(C) * sizeof(float);
}

Status rmsnorm_backward(void* dx, float* dw, const void* dout, const void* x, const void* w, const float* rstd,
                        int64_t N, int C, DType dtype, void* workspace, Stream stream) {
  Status st = check_args(N, C, dtype, "rmsnorm_backward");
  if (!st.ok()) return st;
  if (N > 0 && !workspace) return Status::Invalid("rmsnorm_backward: workspace is null");
  return dtype == DType::F32 ? backward_typed<float>(dx, dw, dout, x, w, rstd, N, C, workspace, stream)
                             : backward_typed<__nv_bfloat16>(dx, dw, dout, x, w, rstd, N, C, workspace, stream);
}

}  // namespace cuda
}  // namespace rlhf
