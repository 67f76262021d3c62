// Fused AdamW on the GPU over flat fp32 buffers: the same update as native/cpu/adamw.h (fp32
// master weights p, moments m and v; per-step scalars and bias corrections computed on the host
// by cpu::adamw_scalars), one kernel over the whole buffer, optionally also writing a bf16 copy of
// the updated weights (the working copy the forward pass reads).
// All pointers are device memory. Launchers check their arguments, never throw or abort.
#pragma once
#include <cstdint>
#include <vector>

#include "../cpu/adamw.h"
#include "status.h"

namespace rlhf {
namespace cuda {

// Σ g² over n elements in double: fixed grid, fixed order (deterministic). `partials` is device
// scratch of adamw_sumsq_partials() doubles; the result lands in *host_out (synchronises).
int64_t adamw_sumsq_partials();
Status adamw_sum_of_squares(const float* g, int64_t n, double* partials, double* host_out, Stream stream);

// The update pass (p, m, v overwritten in place; p_bf16, when not null, receives bf16(p)).
// segments as in cpu::adamw_apply (empty: one segment with scale 1); consecutive segments with
// the same scale share a launch.
Status adamw_apply(float* p, const float* g, float* m, float* v, void* p_bf16, int64_t n, const cpu::AdamWScalars& s,
                   const std::vector<cpu::AdamWSegment>& segments, Stream stream);

// Norm, skip-or-clip, update: cpu::adamw_step's contract on device buffers. *result as there.
Status adamw_step(float* p, const float* g, float* m, float* v, void* p_bf16, int64_t n, const cpu::AdamWOptions& o,
                  int64_t step, const std::vector<cpu::AdamWSegment>& segments, double* partials,
                  cpu::AdamWResult* result, Stream stream);

}  // namespace cuda
}  // namespace rlhf
