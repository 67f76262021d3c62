// Fused log-softmax + gather + entropy on the GPU, and its backward: native/cpu/logsoftmax.h's
// contract on device buffers, with a sampling temperature. Logits z are fp32 or bf16 (`dtype`);
// every statistic and every output except dz is fp32. With u = z / temperature:
//   lse = log Σ_j exp(u_j),  logp = u_y − lse,  H = lse − Σ_j p_j u_j        (p = softmax(u))
//   dz_j = (dlogp·(1[j = y] − p_j) − dH·p_j·(log p_j + H)) / temperature
// temperature = 1 gives exactly the CPU kernel's function. A row with target < 0 has logp = H =
// lse = 0 and dz = 0. Shapes: z, dz (N, V) with row strides ldz, lddz; the rest (N).
//   forward:  logp, lse overwrite; ent overwrite when not null.
//   backward: dz overwrite (dtype as z; may alias z); dlogp or dent may be null (zero); ent is
//             read only with dent.
#pragma once
#include <cstdint>

#include "../core/dtype.h"
#include "status.h"

namespace rlhf {
namespace cuda {

Status logsoftmax_forward(float* logp, float* ent, float* lse, const void* z, int64_t ldz, const int32_t* targets,
                          int64_t N, int64_t V, float temperature, DType dtype, Stream stream);
Status logsoftmax_backward(void* dz, int64_t lddz, const void* z, int64_t ldz, const int32_t* targets, const float* lse,
                           const float* ent, const float* dlogp, const float* dent, int64_t N, int64_t V,
                           float temperature, DType dtype, Stream stream);

}  // namespace cuda
}  // namespace rlhf
