// Token embedding on the GPU: native/cpu/embedding.h's contract on device buffers. The table E
// and x are fp32 or bf16 (`dtype`); the gradient dE is fp32.
//   forward:  x (N, C) overwrite; tokens outside [vocab_begin, vocab_begin + V) give zero rows.
//   backward: dE[tokens[r] − vocab_begin] += dx[r] (ACCUMULATES, fp32 atomics: repeated tokens
//             add in an unspecified order on a GPU, so the last bits may vary run to run).
#pragma once
#include <cstdint>

#include "../core/dtype.h"
#include "status.h"

namespace rlhf {
namespace cuda {

Status embedding_forward(void* x, const void* E, const int32_t* tokens, int64_t N, int64_t V, int C,
                         int64_t vocab_begin, DType dtype, Stream stream);
Status embedding_backward(float* dE, const void* dx, const int32_t* tokens, int64_t N, int64_t V, int C,
                          int64_t vocab_begin, DType dtype, Stream stream);

}  // namespace cuda
}  // namespace rlhf
