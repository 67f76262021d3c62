// Causal grouped-query attention on the GPU: native/cpu/attention.h's contract (layout, causal and
// segment masks, padding rows, overwrite rules) with every pointer of cpu::AttentionArgs in device
// memory (q/k/v and the kv_seq, kv_offset, q_len, segments, block_table arrays). fp32 arithmetic.
// FlashAttention's scheme: scores are computed a tile of 32 keys at a time with an online softmax,
// so memory is linear in the sequence length; backward recomputes probabilities from the saved
// log-sum-exp. HD ≤ 256. Plain CUDA cores; K/V rows are read through the caches rather than
// staged in shared-memory tiles, and no tensor cores yet: correct first, tuned on a GPU later.
//   forward:  out (B·Tq rows, stride ldo) overwrite, lse (B·Tq, NH) overwrite (may be null).
//             Decode with a KV cache is the same call with Tq = 1, kv_stride = cache length and
//             kv_offset = tokens already cached. Also the paged KV cache (block_table, block_size,
//             table_stride; f32 k/v or a bf16 pool through k_bf16/v_bf16, widened exactly on
//             load), the sliding window and the soft-cap, with the CPU's semantics. Not bitwise
//             the CPU kernel (a different summation order); within fp32 rounding of
//             cpu::attention_forward_reference. The caller guarantees that every table row holds
//             the blocks its keys need (the CPU kernel checks it; here the table is device memory).
//             decode_gather is ignored (a CPU test switch).
//   backward: dq overwrite; dk, dv overwrite on key rows [0, kv_offset + q_len) of each sequence
//             (others untouched); kv_seq must not map two query sequences to one key sequence.
//             workspace: attention_backward_workspace_bytes() device bytes. Contiguous keys
//             without window or soft-cap only (others: InvalidArgument).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../cpu/attention.h"
#include "status.h"

namespace rlhf {
namespace cuda {

Status attention_forward(const cpu::AttentionArgs& a, float* out, int64_t ldo, float* lse, Stream stream);

size_t attention_backward_workspace_bytes(const cpu::AttentionArgs& a);
Status attention_backward(const cpu::AttentionArgs& a, const float* out, int64_t ldo, const float* lse,
                          const float* dout, int64_t lddo, float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv,
                          int64_t lddv, void* workspace, Stream stream);

}  // namespace cuda
}  // namespace rlhf
