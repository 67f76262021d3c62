// Rotary position embedding on the GPU: native/cpu/rope.h's rope_apply on device buffers (fp32 or
// bf16, fp32 arithmetic), both pair layouts (half-split and interleaved) and partial rotary dims.
// The cos/sin tables are device copies of a cpu::RopeTable's rows (rot_dim/2 floats per
// position, rows 0..max(pos)): cos_table = upload of table.cos_at(0), likewise sin. In place.
#pragma once
#include <cstdint>

#include "../core/dtype.h"
#include "status.h"

namespace rlhf {
namespace cuda {

Status rope_apply(void* x, int64_t N, int64_t ld, int nheads, int HD, const int32_t* pos, const float* cos_table,
                  const float* sin_table, int rot_dim, bool interleaved, bool backward, DType dtype, Stream stream);

}  // namespace cuda
}  // namespace rlhf
