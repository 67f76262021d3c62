// Pieces shared by the model's .cc files (not part of the engine's interface).
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "../core/buffer.h"
#include "../cpu/gemm.h"
#include "backend.h"
#include "config.h"
#include "transformer.h"

namespace rlhf {
namespace model {

// One layer's activations (N rows). In training they point into the saved buffer; h and act are
// always scratch (recomputed in backward from x_in/xmid and the saved rstd, and from gu).
struct LayerActs {
  float* x_in;   // (N, C) layer input (residual stream)
  float* xmid;   // (N, C) residual after attention
  float* rstd1;  // (N)
  float* rstd2;  // (N)
  float* qkv;    // (N, QW) q, k (after RoPE), v
  float* lse;    // (N, NH) attention log-sum-exp
  float* attn;   // (N, NH·HD) attention output
  float* gu;     // (N, 2F) gate, up
  float* h;      // (N, C) normalised input of the current sublayer (scratch)
  float* act;    // (N, F) silu(gate)·up (scratch)
  // qk_norm only: q then k before the norm (N, NH·HD + KVH·HD), their per-head rstd (N, NH + KVH)
  float* qk_raw;
  float* qk_rstd;
  // sandwich_norms only: attention / MLP outputs before their norms (N, C) and the rstd (N)
  float* attn_o;
  float* rstd_ao;
  float* mlp_o;
  float* rstd_mo;
};

// Weight matrices packed once for a generate() call (each is used at every decode step).
struct PackedLayer {
  PackedWeight qkv, o, gu, down;
};
struct PackedWeights {
  std::vector<PackedLayer> layers;
  PackedWeight lm_head;
};

// Scratch for one backward (N rows), carved from one allocation.
struct BackScratch {
  float* h;      // (N, C)
  float* act;    // (N, F)
  float* dx;     // (N, C) gradient of the residual stream
  float* dh;     // (N, C)
  float* da;     // (N, F)
  float* dgu;    // (N, 2F)
  float* dqkv;   // (N, QW)
  float* dattn;  // (N, NH·HD)
};

// KV cache of a generation: rows × len positions × KVD floats, per layer k then v (on the backend's device).
// Paged (block_table non-null; model/session.h): rows = blocks of the pool, len = block size, and
// sequence s of a run owns the blocks block_table[s·table_stride ...] (key j in block j / len at
// slot j % len). A paged run also names, per query row r = b·T + t of the run, where cache_store
// puts its k/v: block store_block[r], slot store_slot[r], store_len[r] = 1 (0: padding, not stored).
// bf16 (paged only): buf holds bf16 bits in the same layout (cache_k16 / cache_v16); cache_store
// rounds k/v to nearest even, attention widens them back (cpu::AttentionArgs k_bf16).
// A cache may hold only some of the model's layers (a GenerationSession keeps one paged cache per
// group of layers sharing a sliding window): slot[l] is model layer l's place in buf (−1: not held);
// empty: every layer, layer l at place l. Address a layer through cache_k/cache_v(cache, l).
// Every pointer is device memory (Staging).
struct KvCache {
  int64_t rows = 0, len = 0, kvd = 0;
  bool bf16 = false;
  Buffer buf;
  std::vector<int> slot;
  const int32_t* block_table = nullptr;
  int64_t table_stride = 0;
  const int64_t *store_block = nullptr, *store_slot = nullptr, *store_len = nullptr;
};
int64_t cache_layer_offset(const KvCache* c, int l);  // elements from buf to layer l's k (v follows)
inline float* cache_k(KvCache* c, int l) { return c->buf.as<float>() + cache_layer_offset(c, l); }
inline float* cache_v(KvCache* c, int l) { return cache_k(c, l) + c->rows * c->len * c->kvd; }
inline uint16_t* cache_k16(KvCache* c, int l) { return c->buf.as<uint16_t>() + cache_layer_offset(c, l); }
inline uint16_t* cache_v16(KvCache* c, int l) { return cache_k16(c, l) + c->rows * c->len * c->kvd; }
inline int64_t cache_len(const KvCache* c) { return c->len; }

// Copies k/v of the valid query rows (t < lengths[b]) into the cache of layer l at positions
// kv_offset[b] + t of cache row kv_seq[b] (null: b, 0), through `be` (every pointer its memory).
void cache_store(Backend& be, KvCache* cache, int l, const float* k, const float* v, int64_t ld, int64_t B, int64_t T,
                 const int64_t* lengths, const int64_t* kv_seq, const int64_t* kv_offset, int64_t kvd);

// Points the attention arguments at layer l of the cache (contiguous, or paged through its block
// table): k, v, ldk, ldv, kv_stride, kv_seq, kv_offset and the block-table fields.
void cache_bind(KvCache* cache, int l, const int64_t* kv_seq, const int64_t* kv_offset, cpu::AttentionArgs* at);

// Floats per token per layer that the q/k norm adds to the saved activations (qk_raw, qk_rstd).
int64_t qk_norm_floats_per_token(const ModelConfig& c);
// Floats per token per layer that the sandwich norms add (attn_o, rstd_ao, mlp_o, rstd_mo).
int64_t sandwich_floats_per_token(const ModelConfig& c);
// Carves the qk_norm and sandwich slots (as many floats as the two functions above, for N rows)
// from `base`; returns the end.
float* carve_extra_slots(LayerActs* a, float* base, const ModelConfig& c, int64_t N);

// Validated, owned copies of forward's per-row inputs.
struct Inputs {
  std::vector<int64_t> lengths;    // (B)
  std::vector<int32_t> positions;  // (N)
  std::vector<int32_t> targets;    // (N) −1 past each row's length
  int64_t max_position = 0;
};
// vocab: the full model's vocabulary size (tokens and targets are full-vocabulary ids).
Inputs check_inputs(const ModelConfig& c, int64_t vocab, const ForwardInput& in);

void add_row_bias(float* x, const float* bias, int64_t N, int64_t W);  // x[r] += bias, (N, W)
void column_sums(float* out, const float* x, int64_t N, int64_t W);    // out[c] += Σ_r x[r][c] (deterministic)
void copy_rows(float* dst, const float* src, int64_t n);               // parallel memcpy of n floats

// values[r] = xf[r]·w for rows inside their sequence, 0 past it (values may be null).
void value_head_forward(const float* xf, const float* w, int64_t N, int64_t C, int64_t T, const int64_t* lengths,
                        float* values);

}  // namespace model
}  // namespace rlhf
