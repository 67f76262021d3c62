// SwiGLU on the GPU: native/cpu/swiglu.h's contract on fp32 or bf16 device buffers (fp32
// arithmetic). gu: (N, 2F), gate in columns [0, F), up in [F, 2F).
//   forward:  a (N, F) overwrite;   backward: dgu (N, 2F) overwrite.
#pragma once
#include <cstdint>

#include "../core/dtype.h"
#include "status.h"

namespace rlhf {
namespace cuda {

Status swiglu_forward(void* a, const void* gu, int64_t N, int F, DType dtype, Stream stream);
Status swiglu_backward(void* dgu, const void* da, const void* gu, int64_t N, int F, DType dtype, Stream stream);

}  // namespace cuda
}  // namespace rlhf
