// RMSNorm on the GPU: native/cpu/rmsnorm.h's contract (same formulas, same accumulate/overwrite
// rules) on device buffers whose activations and weight are fp32 or bf16 (`dtype`); statistics
// (rstd), reductions and dw are fp32.
//   forward:  out (N, C) overwrite, rstd (N) fp32 overwrite (may be null)
//   backward: dx (N, C) ACCUMULATES (dtype), dw (C) fp32 ACCUMULATES; workspace of
//             rmsnorm_backward_workspace_bytes(N, C) device bytes (per-block dw partials, added in
//             block order: deterministic).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../core/dtype.h"
#include "status.h"

namespace rlhf {
namespace cuda {

Status rmsnorm_forward(void* out, float* rstd, const void* x, const void* w, int64_t N, int C, float eps, DType dtype,
                       Stream stream);
size_t rmsnorm_backward_workspace_bytes(int64_t N, int C);
Status rmsnorm_backward(void* dx, float* dw, const void* dout, const void* x, const void* w, const float* rstd,
                        int64_t N, int C, DType dtype, void* workspace, Stream stream);

}  // namespace cuda
}  // namespace rlhf
