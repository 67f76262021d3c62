// Pieces of the CPU attention shared by attention.cc (prefill, training, gather decode) and
// attention_decode.cc (decode reading the paged pool in place). Not a public interface.
#pragma once
#include <cstddef>
#include <cstdint>

#include "attention.h"

namespace rlhf {
namespace cpu {
namespace attention_internal {

// Thread-local growable scratch, one buffer per slot: 0..2 for attention.cc, 3..6 for the decode.
constexpr int kScratchSlots = 7;
float* scratch(int slot, size_t floats);

// Softmax of row s[0..=kmax] in place with masked entries (−inf) giving 0; entries past kmax set
// to 0 up to width. Returns the log-sum-exp. Fixed lane order: the same bits for the same row in
// every caller, on every ISA.
float softmax_row(float* s, int64_t kmax, int64_t width);

// Soft-cap of scores s[0..=kmax]: s ← c·tanh(s / c) (c > 0). factor (may be null) receives
// ds_capped/ds = 1 − tanh² for the backward.
void softcap_row(float* s, int64_t kmax, float c, float* factor);

// Row of k/v holding key j of the paged sequence whose block-table row is `table`.
inline int64_t paged_row(const AttentionArgs& a, const int32_t* table, int64_t j) {
  return int64_t(table[j / a.block_size]) * a.block_size + j % a.block_size;
}

// Block-table row of query sequence b, checked to hold kv_end keys (ErrorCode::OutOfRange).
const int32_t* paged_table(const AttentionArgs& a, int64_t b, int64_t kv_end);

// Decode of query sequence b (its one query at key position kv_end − 1, kv_end >= 1) for every
// query head, reading keys/values of the paged pool (f32 or bf16) in place through `table`:
// out row b (stride ldo) and lse row b (may be null) overwritten. Bit-identical to gathering the
// keys/values contiguously and running the GEMM path: each score is the GEMM micro-kernel's
// sequential chain over head_dim (per depth block kc, then ·scale and + C), each output element
// its chain over key positions per depth block kc, merged the way the GEMM merges k blocks.
void decode_paged_in_place(const AttentionArgs& a, int64_t b, int64_t kv_end, const int32_t* table, float* out,
                           int64_t ldo, float* lse);

// Paged decode (Tq == 1) of every sequence of `a` in place (attention_decode_shared.cc): runs
// decode_paged_in_place per sequence, or per shared-prefix cluster of sequences (bitwise the same
// results); padding queries get zeros. out/lse overwritten as attention_forward's.
void decode_paged_batch(const AttentionArgs& a, float* out, int64_t ldo, float* lse);

}  // namespace attention_internal
}  // namespace cpu
}  // namespace rlhf
