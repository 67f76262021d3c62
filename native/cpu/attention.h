// Causal grouped-query attention (Vaswani et al. 2017; GQA: Ainslie et al. 2023), computed like
// FlashAttention (Dao et al. 2022): one block of query rows at a time, so the scores held at once
// are (query block × keys up to the block), never T×T; backward recomputes probabilities from the
// saved log-sum-exp.
//
// Query head h reads key/value head g = h / (NH / KVH).
//   out_i = Σ_{j ≤ pos_i, seg_j = seg_i} softmax_j(scale · q_i·k_j) v_j
// With a sliding window W > 0 (Mistral, Gemma's local layers) also j > pos_i − W: each query sees
// at most W keys, itself included (transformers' sliding_window_overlay: kv_idx > q_idx − W).
// With a logit soft-cap c > 0 (Gemma 2) the scores scale·q_i·k_j become c·tanh(scale·q_i·k_j / c)
// before the mask and the softmax.
//
// Layout (row-major, strides in floats):
//   query i < Tq of sequence b, head h:    q   + (b·Tq + i)·ldq + h·HD        (out, dq alike)
//   key j of sequence b, head g:           k   + (kv_seq[b]·kv_stride + j)·ldk + g·HD   (v, dk, dv alike)
//   query i of sequence b sits at key position kv_offset[b] + i and sees keys j ≤ that position
//   queries i >= q_len[b] are padding: out = 0, lse = 0, dq = 0.
// Training: q/k/v are column ranges of the fused QKV activation, Tq = kv_stride = T, offsets 0.
// Generation: k/v live in the KV cache (kv_stride = cache length), decode has Tq = 1.
// Paged KV cache (block_table non-null, forward only): k/v are a pool of fixed-size blocks and
//   key j of sequence b is row  block_table[kv_seq[b]·table_stride + j / block_size]·block_size
//   + j % block_size  of k (and v); kv_stride is unused. The forward gathers each sequence's keys
//   into contiguous scratch and runs the same arithmetic in the same key order, so its results are
//   bit-identical to the contiguous layout holding the same keys.
// Paged decode (Tq == 1) reads each key/value row from its block in place (attention_decode.cc),
//   reproducing per element the GEMMs' multiply-add chains and depth blocking, so its bits equal the
//   gather path's (decode_gather = true keeps that path: gather, then GEMM). Sequences sharing
//   leading blocks (a prompt's samples) are decoded together over those keys, in the same chains.
// bf16 KV (k_bf16 / v_bf16 non-null, paged only; k / v unused): the pool holds bf16 bits with the
//   same row layout; the gather widens them to f32 (exact), and everything after it is the f32
//   arithmetic above, so the result is that of f32 keys/values equal to the bf16 ones.
#pragma once
#include <cstdint>

namespace rlhf {
namespace cpu {

struct AttentionArgs {
  int64_t B = 0;  // sequences
  int NH = 0, KVH = 0, HD = 0;
  float scale = 1.0f;
  int64_t Tq = 0;
  const float* q = nullptr;
  int64_t ldq = 0;
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t ldk = 0, ldv = 0, kv_stride = 0;
  const int64_t* kv_seq = nullptr;       // (B) key/value sequence of query sequence b; null: b
  const int64_t* kv_offset = nullptr;    // (B) null: 0
  const int64_t* q_len = nullptr;        // (B) null: Tq
  const int32_t* segments = nullptr;     // (·, kv_stride) indexed like keys; null: one segment
  int64_t window = 0;                    // > 0: sliding window of this many keys; 0: none
  float softcap = 0.0f;                  // > 0: scores soft-capped at ±softcap; 0: none
  const int32_t* block_table = nullptr;  // (·, table_stride) block ids (paged cache); null: contiguous
  int64_t block_size = 0;                // keys per block (paged cache)
  int64_t table_stride = 0;              // entries per block-table row (paged cache)
  const uint16_t* k_bf16 = nullptr;      // bf16 keys (paged cache only): replace k, same ldk
  const uint16_t* v_bf16 = nullptr;      // bf16 values, with k_bf16: replace v, same ldv
  bool decode_gather = false;  // paged decode (Tq == 1): gather K/V and run the GEMMs (tests); else read in place
  // paged decode in place: sequences whose block tables begin with the same blocks read those
  // keys once for all of them (bitwise the same results; false: each alone, for tests and benches)
  bool decode_share_prefix = true;
};

// out: (B·Tq, ·) with stride ldo, overwrite; lse: (B·Tq, NH), overwrite, may be null. Contiguous
// or paged (block_table) keys.
void attention_forward(const AttentionArgs& a, float* out, int64_t ldo, float* lse);

// Contiguous keys only (a block table is refused: ErrorCode::Unsupported).
// Given dout (stride lddo) and the forward's out and lse: dq overwrite; dk, dv overwrite on key rows
// [0, kv_offset + q_len) of each sequence (other rows untouched).
void attention_backward(const AttentionArgs& a, const float* out, int64_t ldo, const float* lse, const float* dout,
                        int64_t lddo, float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv, int64_t lddv);

// Plain loops in double, one query at a time (tests).
void attention_forward_reference(const AttentionArgs& a, float* out, int64_t ldo, float* lse);

}  // namespace cpu
}  // namespace rlhf
