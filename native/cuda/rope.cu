// RoPE kernel (contract in rope.h): one block per row, one thread per (head, pair).
#include "rope.h"

#include "cuda_common.h"

namespace rlhf {
namespace cuda {

namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void rope_kernel(T* __restrict__ x, int64_t ld, int nheads, int HD, const int32_t* __restrict__ pos,
                            const float* __restrict__ cos_table, const float* __restrict__ sin_table, int half,
                            int interleaved, float sign) {
  const int64_t r = blockIdx.x;
  const int64_t p = pos[r];
  const float* cs = cos_table + p * half;
  const float* sn = sin_table + p * half;
  for (int k = threadIdx.x; k < nheads * half; k += blockDim.x) {
    const int h = k / half, i = k % half;
    T* v = x + r * ld + int64_t(h) * HD;
    T* pa = interleaved ? v + 2 * i : v + i;
    T* pb = interleaved ? v + 2 * i + 1 : v + i + half;
    float a = to_float(*pa), b = to_float(*pb), c = cs[i], s = sign * sn[i];
    *pa = from_float<T>(a * c - b * s);
    *pb = from_float<T>(b * c + a * s);
  }
}

}  // namespace

Status rope_apply(void* x, int64_t N, int64_t ld, int nheads, int HD, const int32_t* pos, const float* cos_table,
                  const float* sin_table, int rot_dim, bool interleaved, bool backward, DType dtype, Stream stream) {
  if (N < 0 || N > 0x7fffffff || nheads <= 0 || HD <= 0 || rot_dim < 2 || rot_dim % 2 != 0 || rot_dim > HD ||
      ld < int64_t(nheads) * HD)
    return Status::Invalid("rope_apply: need N >= 0, heads > 0, even 2 <= rot_dim <= HD, ld >= nheads·HD");
  if (dtype != DType::F32 && dtype != DType::BF16) return Status::Invalid("rope_apply: dtype must be f32 or bf16");
  if (N == 0) return Status::Ok();
  const float sign = backward ? -1.0f : 1.0f;
  if (dtype == DType::F32)
    RLHF_LAUNCH(rope_kernel<float>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0, as_stream(stream))
    (static_cast<float*>(x), ld, nheads, HD, pos, cos_table, sin_table, rot_dim / 2, interleaved ? 1 : 0, sign);
  else
    RLHF_LAUNCH(rope_kernel<__nv_bfloat16>, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0, as_stream(stream))
    (static_cast<__nv_bfloat16*>(x), ld, nheads, HD, pos, cos_table, sin_table, rot_dim / 2, interleaved ? 1 : 0, sign);
  return launch_status("rope_apply");
}

}  // namespace cuda
}  // namespace rlhf
