// Embedding kernels (contract in embedding.h): one block per token row.
#include "embedding.h"

#include "cuda_common.h"

namespace rlhf {
namespace cuda {

namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void embedding_forward_kernel(T* __restrict__ x, const T* __restrict__ E, const int32_t* __restrict__ tokens,
                                         int64_t V, int C, int64_t vocab_begin) {
  const int64_t r = blockIdx.x;
  const int64_t id = int64_t(tokens[r]) - vocab_begin;
  const bool inside = id >= 0 && id < V;
  for (int c = threadIdx.x; c < C; c += blockDim.x) x[r * C + c] = inside ? E[id * C + c] : from_float<T>(0.0f);
}

template <typename T>
__global__ void embedding_backward_kernel(float* __restrict__ dE, const T* __restrict__ dx,
                                          const int32_t* __restrict__ tokens, int64_t V, int C, int64_t vocab_begin) {
  const int64_t r = blockIdx.x;
  const int64_t id = int64_t(tokens[r]) - vocab_begin;
  if (id < 0 || id >= V) return;
  for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(&dE[id * C + c], to_float(dx[r * C + c]));
}

Status check(int64_t N, int64_t V, int C, DType dtype, const char* what) {
  if (N < 0 || N > 0x7fffffff || V < 0 || C <= 0)
    return Status::Invalid(std::string(what) + ": need 0 <= N < 2^31, V >= 0, C > 0");
  if (dtype != DType::F32 && dtype != DType::BF16)
    return Status::Invalid(std::string(what) + ": dtype must be f32 or bf16");
  return Status::Ok();
}

}  // namespace

Status embedding_forward(void* x, const void* E, const int32_t* tokens, int64_t N, int64_t V, int C,
                         int64_t vocab_begin, DType dtype, Stream stream) {
  Status st = check(N, V, C, dtype, "embedding_forward");
  if (!st.ok() || N == 0) return st;
  if (dtype == DType::F32)
    RLHF_LAUNCH(embedding_forward_kernel<float>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0, as_stream(stream))
    (static_cast<float*>(x), static_cast<const float*>(E), tokens, V, C, vocab_begin);
  else
    RLHF_LAUNCH(embedding_forward_kernel<__nv_bfloat16>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0,
                as_stream(stream))
    (static_cast<__nv_bfloat16*>(x), static_cast<const __nv_bfloat16*>(E), tokens, V, C, vocab_begin);
  return launch_status("embedding_forward");
}

Status embedding_backward(float* dE, const void* dx, const int32_t* tokens, int64_t N, int64_t V, int C,
                          int64_t vocab_begin, DType dtype, Stream stream) {
  Status st = check(N, V, C, dtype, "embedding_backward");
  if (!st.ok() || N == 0) return st;
  if (dtype == DType::F32)
    RLHF_LAUNCH(embedding_backward_kernel<float>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0, as_stream(stream))
    (dE, static_cast<const float*>(dx), tokens, V, C, vocab_begin);
  else
    RLHF_LAUNCH(embedding_backward_kernel<__nv_bfloat16>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0,
                as_stream(stream))
    (dE, static_cast<const __nv_bfloat16*>(dx), tokens, V, C, vocab_begin);
  return launch_status("embedding_backward");
}

}  // namespace cuda
}  // namespace rlhf
