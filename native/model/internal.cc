#include "internal.h"

#include <algorithm>
#include <string>

#include "../core/error.h"
#include "../core/thread_pool.h"

namespace rlhf {
namespace model {

int64_t cache_layer_offset(const KvCache* c, int l) {
  int64_t place = l;
  if (!c->slot.empty()) {
    RLHF_CHECK(l >= 0 && l < static_cast<int>(c->slot.size()) && c->slot[l] >= 0, ErrorCode::Internal,
               "KV cache: layer ", l, " is not held by this cache");
    place = c->slot[l];
  }
  return 2 * place * c->rows * c->len * c->kvd;
}

void cache_store(Backend& be, KvCache* cache, int l, const float* k, const float* v, int64_t ld, int64_t B, int64_t T,
                 const int64_t* lengths, const int64_t* kv_seq, const int64_t* kv_offset, int64_t kvd) {
  if (cache->bf16) {
    RLHF_CHECK(cache->block_table, ErrorCode::Internal, "a bf16 KV cache is paged");
    be.cache_store_bf16(cache_k16(cache, l), cache_v16(cache, l), cache->rows, cache->len, k, v, ld, B * T, 1,
                        cache->store_len, cache->store_block, cache->store_slot, kvd);
    return;
  }
  if (cache->block_table) {  // one entry per query row: (block, slot), nothing for padding rows
    be.cache_store(cache_k(cache, l), cache_v(cache, l), cache->rows, cache->len, k, v, ld, B * T, 1, cache->store_len,
                   cache->store_block, cache->store_slot, kvd);
    return;
  }
  be.cache_store(cache_k(cache, l), cache_v(cache, l), cache->rows, cache->len, k, v, ld, B, T, lengths, kv_seq,
                 kv_offset, kvd);
}

void cache_bind(KvCache* cache, int l, const int64_t* kv_seq, const int64_t* kv_offset, cpu::AttentionArgs* at) {
  at->k = cache_k(cache, l), at->v = cache_v(cache, l), at->ldk = at->ldv = cache->kvd,
  at->kv_stride = cache_len(cache);
  at->kv_seq = kv_seq, at->kv_offset = kv_offset;
  at->block_table = cache->block_table, at->block_size = cache->block_table ? cache->len : 0;
  at->table_stride = cache->table_stride;
  if (cache->bf16) {
    at->k = at->v = nullptr;
    at->k_bf16 = cache_k16(cache, l), at->v_bf16 = cache_v16(cache, l);
  }
}

Inputs check_inputs(const ModelConfig& c, int64_t vocab, const ForwardInput& in) {
  const int64_t B = in.B, T = in.T, N = B * T;
  Inputs r;
  r.lengths.assign(B, T);
  if (in.lengths)
    for (int64_t b = 0; b < B; ++b) {
      RLHF_CHECK(in.lengths[b] >= 0 && in.lengths[b] <= T, ErrorCode::OutOfRange, "forward: lengths[", b,
                 "] = ", in.lengths[b], " must be in [0, seqLen = ", T, "]");
      r.lengths[b] = in.lengths[b];
    }
  for (int64_t i = 0; i < N; ++i)
    RLHF_CHECK(in.tokens[i] >= 0 && in.tokens[i] < vocab, ErrorCode::OutOfRange, "forward: tokens[", i,
               "] = ", in.tokens[i], " is outside the vocabulary [0, ", vocab, ")");
  r.positions.resize(N);
  for (int64_t i = 0; i < N; ++i) {
    int32_t p = in.positions ? in.positions[i] : static_cast<int32_t>(i % T);
    RLHF_CHECK(p >= 0 && p < c.max_positions, ErrorCode::OutOfRange, "forward: positions[", i, "] = ", p,
               " must be in [0, max_position_embeddings = ", c.max_positions, ")");
    r.positions[i] = p;
    r.max_position = std::max<int64_t>(r.max_position, p);
  }
  r.targets.assign(N, -1);
  if (in.targets)
    for (int64_t i = 0; i < N; ++i) {
      RLHF_CHECK(in.targets[i] >= -1 && in.targets[i] < vocab, ErrorCode::OutOfRange, "forward: targets[", i,
                 "] = ", in.targets[i], " must be -1 (no target) or in [0, ", vocab, ")");
      if (i % T < r.lengths[i / T]) r.targets[i] = in.targets[i];
    }
  return r;
}

void add_row_bias(float* x, const float* bias, int64_t N, int64_t W) {
  parallel_for(N, 64, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r)
      for (int64_t c = 0; c < W; ++c) x[r * W + c] += bias[c];
  });
}

void column_sums(float* out, const float* x, int64_t N, int64_t W) {
  parallel_for(W, 64, [&](int64_t b, int64_t e, int) {
    for (int64_t c = b; c < e; ++c) {
      float s = 0.0f;
      for (int64_t r = 0; r < N; ++r) s += x[r * W + c];
      out[c] += s;
    }
  });
}

void copy_rows(float* dst, const float* src, int64_t n) {
  parallel_for(n, 1 << 15, [&](int64_t b, int64_t e, int) { std::memcpy(dst + b, src + b, sizeof(float) * (e - b)); });
}

void value_head_forward(const float* xf, const float* w, int64_t N, int64_t C, int64_t T, const int64_t* lengths,
                        float* values) {
  if (!values) return;
  parallel_for(N, 64, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      if (r % T >= lengths[r / T]) {
        values[r] = 0.0f;
        continue;
      }
      float s = 0.0f;
      for (int64_t c = 0; c < C; ++c) s += xf[r * C + c] * w[c];
      values[r] = s;
    }
  });
}

}  // namespace model
}  // namespace rlhf
