#include "attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/buffer.h"
#include "../core/cpu_features.h"
#include "../core/dtype.h"
#include "../core/error.h"
#include "../core/thread_pool.h"
#include "attention_internal.h"
#include "gemm.h"
#include "vmath.h"
#include "vmath_avx512.h"

namespace rlhf {
namespace cpu {

namespace attention_internal {

float* scratch(int slot, size_t floats) {
  thread_local Workspace bufs[kScratchSlots];
  return bufs[slot].grow(floats);
}

namespace {

// softmax_row with explicit AVX-512 (the scalar loops' lanes, order and operations, so the same bits).
RLHF_VMATH_AVX512 float softmax_row_avx512(float* s, int64_t kmax, int64_t width) {
  const int64_t n = kmax + 1;
  auto tail = [&](int64_t j) {
    return n - j >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - j)) - 1u);
  };
  __m512 ml = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = tail(j);
    const __m512 sj = _mm512_maskz_loadu_ps(k, s + j);
    ml = _mm512_mask_blend_ps(_mm512_mask_cmp_ps_mask(k, sj, ml, _CMP_GT_OQ), ml, sj);
  }
  float lanes[16];
  _mm512_storeu_ps(lanes, ml);
  float m = lanes[0];
  for (int l = 1; l < 16; ++l) m = lanes[l] > m ? lanes[l] : m;
  const __m512 vm = _mm512_set1_ps(m);
  __m512 sl = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = tail(j);
    const __m512 e = exp_approx16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), vm));
    _mm512_mask_storeu_ps(s + j, k, e);
    sl = _mm512_mask_add_ps(sl, k, sl, e);
  }
  _mm512_storeu_ps(lanes, sl);
  float sum = 0.0f;
  for (int l = 0; l < 16; ++l) sum += lanes[l];
  const __m512 inv = _mm512_set1_ps(1.0f / sum);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = tail(j);
    _mm512_mask_storeu_ps(s + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + j), inv));
  }
  for (int64_t j = n; j < width; ++j) s[j] = 0.0f;
  return m + std::log(sum);
}

// 16 index lanes: the same bits for the same row in every caller.
__attribute__((target_clones("avx512f", "avx2", "default"))) float softmax_row_lanes(float* __restrict s, int64_t kmax,
                                                                                     int64_t width) {
  const int64_t n = kmax + 1;
  float ml[16];
  for (int l = 0; l < 16; ++l) ml[l] = -INFINITY;
  // blocks of 16 (lane l holds the indices j ≡ l mod 16, in order) so that the loops vectorise
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int l = 0; l < 16; ++l) ml[l] = s[j + l] > ml[l] ? s[j + l] : ml[l];
  for (; j < n; ++j) ml[j & 15] = s[j] > ml[j & 15] ? s[j] : ml[j & 15];
  float m = ml[0];
  for (int l = 1; l < 16; ++l) m = ml[l] > m ? ml[l] : m;
  float sl[16] = {};
  for (j = 0; j + 16 <= n; j += 16)
    for (int l = 0; l < 16; ++l) {
      const float e = exp_approx(s[j + l] - m);
      s[j + l] = e;
      sl[l] += e;
    }
  for (; j < n; ++j) {
    const float e = exp_approx(s[j] - m);
    s[j] = e;
    sl[j & 15] += e;
  }
  float sum = 0.0f;
  for (int l = 0; l < 16; ++l) sum += sl[l];
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < n; ++j) s[j] = s[j] * inv;
  for (int64_t j = n; j < width; ++j) s[j] = 0.0f;
  return m + std::log(sum);
}

}  // namespace

float softmax_row(float* s, int64_t kmax, int64_t width) {
  return simd_level() == SimdLevel::Avx512 ? softmax_row_avx512(s, kmax, width) : softmax_row_lanes(s, kmax, width);
}

const int32_t* paged_table(const AttentionArgs& a, int64_t b, int64_t kv_end) {
  RLHF_CHECK((kv_end + a.block_size - 1) / a.block_size <= a.table_stride, ErrorCode::OutOfRange,
             "attention: sequence ", b, " reads ", kv_end, " keys, more than its block table holds");
  return a.block_table + (a.kv_seq ? a.kv_seq[b] : b) * a.table_stride;
}

void softcap_row(float* s, int64_t kmax, float c, float* factor) {
  for (int64_t j = 0; j <= kmax; ++j) {
    const float t = std::tanh(s[j] / c);
    s[j] = c * t;
    if (factor) factor[j] = 1.0f - t * t;
  }
}

}  // namespace attention_internal

namespace {

using namespace attention_internal;

constexpr int64_t kQueryBlock = 64;

struct Seq {
  int64_t kv_base;  // row index of key 0 of this sequence in k/v
  int64_t offset, qlen;
};

Seq seq_of(const AttentionArgs& a, int64_t b) {
  Seq s;
  int64_t kb = a.kv_seq ? a.kv_seq[b] : b;
  s.kv_base = kb * a.kv_stride;
  s.offset = a.kv_offset ? a.kv_offset[b] : 0;
  s.qlen = a.q_len ? a.q_len[b] : a.Tq;
  return s;
}

// Attention backward of one query row: p ← P = exp(s − lse), dp ← dS = P·(dP − D) (before the
// scale) for j <= kmax; both 0 past kmax up to width. Element-wise: the same bits on every ISA.
__attribute__((target_clones("avx512f", "avx2", "default"))) void softmax_backward_row(float* __restrict p,
                                                                                       float* __restrict dp,
                                                                                       int64_t kmax, int64_t width,
                                                                                       float lse, float D) {
  for (int64_t j = 0; j <= kmax; ++j) {
    const float pj = exp_approx(p[j] - lse);
    p[j] = pj;
    dp[j] = pj * (dp[j] - D);
  }
  for (int64_t j = kmax + 1; j < width; ++j) p[j] = 0.0f, dp[j] = 0.0f;
}

void mask_segments(float* s, const AttentionArgs& a, const Seq& sq, int64_t kmax) {
  if (!a.segments) return;
  const int32_t* seg = a.segments + sq.kv_base;
  const int32_t mine = seg[kmax];
  for (int64_t j = 0; j <= kmax; ++j)
    if (seg[j] != mine) s[j] = -INFINITY;
}

// Sliding window: keys j <= kmax − window masked (−inf, so they get probability 0).
void mask_window(float* s, const AttentionArgs& a, int64_t kmax) {
  if (a.window <= 0) return;
  for (int64_t j = 0; j <= kmax - a.window; ++j) s[j] = -INFINITY;
}

void check(const AttentionArgs& a) {
  RLHF_CHECK(a.NH > 0 && a.KVH > 0 && a.HD > 0 && a.NH % a.KVH == 0, ErrorCode::OutOfRange,
             "attention: need NH % KVH == 0 and positive sizes, got NH=", a.NH, " KVH=", a.KVH, " HD=", a.HD);
  RLHF_CHECK(a.window >= 0, ErrorCode::OutOfRange, "attention: window must be >= 0, got ", a.window);
  RLHF_CHECK(a.block_table || (!a.k_bf16 && !a.v_bf16), ErrorCode::Unsupported,
             "attention: bf16 keys/values (k_bf16, v_bf16) need a paged KV cache (block table)");
  RLHF_CHECK(a.softcap >= 0 && std::isfinite(a.softcap), ErrorCode::OutOfRange,
             "attention: softcap must be finite and >= 0, got ", a.softcap);
}

}  // namespace

namespace {

// Query block blk of sequence b, head h; kb / vb: key 0 of the sequence at this head's kv group,
// rows ldk / ldv apart (the cache itself, or a paged sequence's keys gathered contiguously).
void forward_block(const AttentionArgs& a, int64_t b, int64_t h, int64_t blk, const Seq& sq, const float* kb,
                   int64_t ldk, const float* vb, int64_t ldv, float* out, int64_t ldo, float* lse) {
  const int64_t i0 = blk * kQueryBlock, i1 = std::min(a.Tq, i0 + kQueryBlock);
  const int64_t v1 = std::min(i1, sq.qlen);          // valid queries end
  for (int64_t i = std::max(i0, v1); i < i1; ++i) {  // padding queries
    std::memset(out + (b * a.Tq + i) * ldo + h * a.HD, 0, sizeof(float) * a.HD);
    if (lse) lse[(b * a.Tq + i) * a.NH + h] = 0.0f;
  }
  if (v1 <= i0) return;
  const int64_t nb = v1 - i0, kv_end = sq.offset + v1;
  float* S = scratch(0, static_cast<size_t>(nb * kv_end));
  const float* qb = a.q + (b * a.Tq + i0) * a.ldq + h * a.HD;
  sgemm(false, true, nb, kv_end, a.HD, a.scale, qb, a.ldq, kb, ldk, 0.0f, S, kv_end);
  for (int64_t r = 0; r < nb; ++r) {
    const int64_t kmax = sq.offset + i0 + r;
    float* s = S + r * kv_end;
    if (a.softcap > 0) softcap_row(s, kmax, a.softcap, nullptr);
    mask_segments(s, a, sq, kmax);
    mask_window(s, a, kmax);
    float l = softmax_row(s, kmax, kv_end);
    if (lse) lse[(b * a.Tq + i0 + r) * a.NH + h] = l;
  }
  sgemm(false, false, nb, a.HD, kv_end, 1.0f, S, kv_end, vb, ldv, 0.0f, out + (b * a.Tq + i0) * ldo + h * a.HD, ldo);
}

// Query i0 of sequence b (the block's only valid query), every head of kv group g, keys gathered
// at kg / vg (rows ldkv apart): the group's NH/KVH query heads are consecutive in the query row, so
// they are the rows of one score GEMM and one output GEMM. Each score and output element is the
// same dot product, in the same order, as forward_block computes for that head alone (the GEMM's
// per-element arithmetic does not depend on the row count; test_attention checks the bits).
void decode_group(const AttentionArgs& a, int64_t b, int64_t g, int64_t i0, const Seq& sq, const float* kg,
                  const float* vg, int64_t ldkv, int64_t kv_end, float* out, int64_t ldo, float* lse) {
  const int group = a.NH / a.KVH;
  const int64_t i1 = std::min(a.Tq, i0 + kQueryBlock), h0 = g * group;
  for (int64_t i = i0 + 1; i < i1; ++i)  // padding queries of the block
    for (int64_t h = h0; h < h0 + group; ++h) {
      std::memset(out + (b * a.Tq + i) * ldo + h * a.HD, 0, sizeof(float) * a.HD);
      if (lse) lse[(b * a.Tq + i) * a.NH + h] = 0.0f;
    }
  float* S = scratch(0, static_cast<size_t>(group * kv_end));
  const float* qb = a.q + (b * a.Tq + i0) * a.ldq + h0 * a.HD;
  sgemm(false, true, group, kv_end, a.HD, a.scale, qb, a.HD, kg, ldkv, 0.0f, S, kv_end);
  const int64_t kmax = sq.offset + i0;
  for (int r = 0; r < group; ++r) {
    float* s = S + r * kv_end;
    if (a.softcap > 0) softcap_row(s, kmax, a.softcap, nullptr);
    mask_window(s, a, kmax);
    const float l = softmax_row(s, kmax, kv_end);
    if (lse) lse[(b * a.Tq + i0) * a.NH + h0 + r] = l;
  }
  sgemm(false, false, group, a.HD, kv_end, 1.0f, S, kv_end, vg, ldkv, 0.0f, out + (b * a.Tq + i0) * ldo + h0 * a.HD,
        a.HD);
}

void check_paged(const AttentionArgs& a) {
  RLHF_CHECK(a.block_size > 0 && a.table_stride > 0, ErrorCode::OutOfRange,
             "attention: a block table needs block_size > 0 and table_stride > 0, got ", a.block_size, ", ",
             a.table_stride);
  RLHF_CHECK(!a.segments, ErrorCode::Unsupported, "attention: packed segments with a paged KV cache");
  RLHF_CHECK(!a.k_bf16 == !a.v_bf16, ErrorCode::InvalidArgument, "attention: k_bf16 and v_bf16 go together");
}

// n consecutive k (or v) elements starting at element `at` of the pool, as f32 (bf16 widened).
inline void gather(const AttentionArgs& a, bool values, int64_t at, int64_t n, float* dst) {
  const uint16_t* h = values ? a.v_bf16 : a.k_bf16;
  if (h) {
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(h[at + i]);
    return;
  }
  std::memcpy(dst, (values ? a.v : a.k) + at, sizeof(float) * n);
}

}  // namespace

void attention_forward(const AttentionArgs& a, float* out, int64_t ldo, float* lse) {
  check(a);
  const int64_t nblocks = (a.Tq + kQueryBlock - 1) / kQueryBlock;
  const int group = a.NH / a.KVH;
  if (!a.block_table) {
    parallel_for(a.B * a.NH * nblocks, 1, [&](int64_t tb, int64_t te, int) {
      for (int64_t task = tb; task < te; ++task) {
        const int64_t blk = task % nblocks, h = (task / nblocks) % a.NH, b = task / (nblocks * a.NH);
        const int64_t g = h / group;
        const Seq sq = seq_of(a, b);
        forward_block(a, b, h, blk, sq, a.k + sq.kv_base * a.ldk + g * a.HD, a.ldk, a.v + sq.kv_base * a.ldv + g * a.HD,
                      a.ldv, out, ldo, lse);
      }
    });
    return;
  }
  check_paged(a);
  if (a.Tq == 1 && !a.decode_gather) return decode_paged_batch(a, out, ldo, lse);  // in place
  const int64_t KVD = int64_t(a.KVH) * a.HD;
  if (a.Tq == 1 && a.ldk == KVD && a.ldv == KVD) {
    // Decode: a task owns a sequence; it gathers its keys/values for every kv head at once (one
    // copy per block: a block's rows are consecutive), then runs every query head on them.
    parallel_for(a.B, 1, [&](int64_t tb, int64_t te, int) {
      for (int64_t b = tb; b < te; ++b) {
        const Seq sq = seq_of(a, b);
        const int64_t kv_end = sq.qlen >= 1 ? sq.offset + 1 : 0;
        const int32_t* table = paged_table(a, b, kv_end);
        float* kall = scratch(1, static_cast<size_t>(std::max<int64_t>(kv_end, 1) * KVD));
        float* vall = scratch(2, static_cast<size_t>(std::max<int64_t>(kv_end, 1) * KVD));
        for (int64_t j0 = 0; j0 < kv_end; j0 += a.block_size) {
          const int64_t n = std::min(a.block_size, kv_end - j0), row0 = paged_row(a, table, j0);
          gather(a, false, row0 * KVD, n * KVD, kall + j0 * KVD);
          gather(a, true, row0 * KVD, n * KVD, vall + j0 * KVD);
        }
        for (int64_t g = 0; g < a.KVH; ++g) {
          const float *kg = kall + g * a.HD, *vg = vall + g * a.HD;
          if (kv_end > 0 && group > 1) {  // the group's heads as the rows of one GEMM
            decode_group(a, b, g, 0, sq, kg, vg, KVD, kv_end, out, ldo, lse);
            continue;
          }
          for (int64_t h = g * group; h < (g + 1) * group; ++h)
            forward_block(a, b, h, 0, sq, kg, KVD, vg, KVD, out, ldo, lse);
        }
      }
    });
    return;
  }
  // A task owns (sequence, kv head, query block): it gathers the keys/values that block reads
  // once, then runs the group's query heads on them.
  parallel_for(a.B * a.KVH * nblocks, 1, [&](int64_t tb, int64_t te, int) {
    for (int64_t task = tb; task < te; ++task) {
      const int64_t blk = task % nblocks, g = (task / nblocks) % a.KVH, b = task / (nblocks * a.KVH);
      const Seq sq = seq_of(a, b);
      const int64_t i0 = blk * kQueryBlock, v1 = std::min(std::min(a.Tq, i0 + kQueryBlock), sq.qlen);
      const int64_t kv_end = v1 > i0 ? sq.offset + v1 : 0;
      const int32_t* table = paged_table(a, b, kv_end);
      float* kg = scratch(1, static_cast<size_t>(std::max<int64_t>(kv_end, 1) * a.HD));
      float* vg = scratch(2, static_cast<size_t>(std::max<int64_t>(kv_end, 1) * a.HD));
      for (int64_t j = 0; j < kv_end; ++j) {
        const int64_t row = paged_row(a, table, j);
        gather(a, false, row * a.ldk + g * a.HD, a.HD, kg + j * a.HD);
        gather(a, true, row * a.ldv + g * a.HD, a.HD, vg + j * a.HD);
      }
      if (v1 - i0 == 1 && group > 1) {  // one query: the group's heads as the rows of one GEMM
        decode_group(a, b, g, i0, sq, kg, vg, a.HD, kv_end, out, ldo, lse);
        continue;
      }
      for (int64_t h = g * group; h < (g + 1) * group; ++h)
        forward_block(a, b, h, blk, sq, kg, a.HD, vg, a.HD, out, ldo, lse);
    }
  });
}

void attention_backward(const AttentionArgs& a, const float* out, int64_t ldo, const float* lse, const float* dout,
                        int64_t lddo, float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv, int64_t lddv) {
  check(a);
  RLHF_CHECK(!a.block_table, ErrorCode::Unsupported, "attention_backward: a paged KV cache (block table)");
  const int group = a.NH / a.KVH;
  // A task owns one (sequence, kv head): it is the only writer of that head's dk/dv rows.
  parallel_for(a.B * a.KVH, 1, [&](int64_t tb, int64_t te, int) {
    for (int64_t task = tb; task < te; ++task) {
      const int64_t g = task % a.KVH, b = task / a.KVH;
      const Seq sq = seq_of(a, b);
      const int64_t kv_len = sq.offset + sq.qlen;
      float* dkb = dk + sq.kv_base * lddk + g * a.HD;
      float* dvb = dv + sq.kv_base * lddv + g * a.HD;
      for (int64_t j = 0; j < kv_len; ++j) {
        std::memset(dkb + j * lddk, 0, sizeof(float) * a.HD);
        std::memset(dvb + j * lddv, 0, sizeof(float) * a.HD);
      }
      const float* kb = a.k + sq.kv_base * a.ldk + g * a.HD;
      const float* vb = a.v + sq.kv_base * a.ldv + g * a.HD;
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        for (int64_t i = sq.qlen; i < a.Tq; ++i)
          std::memset(dq + (b * a.Tq + i) * lddq + h * a.HD, 0, sizeof(float) * a.HD);
        for (int64_t i0 = 0; i0 < sq.qlen; i0 += kQueryBlock) {
          const int64_t nb = std::min(kQueryBlock, sq.qlen - i0), kv_end = sq.offset + i0 + nb;
          float* P = scratch(0, static_cast<size_t>(nb * kv_end));
          float* dP = scratch(1, static_cast<size_t>(nb * kv_end));
          const float* qb = a.q + (b * a.Tq + i0) * a.ldq + h * a.HD;
          const float* dob = dout + (b * a.Tq + i0) * lddo + h * a.HD;
          const float* ob = out + (b * a.Tq + i0) * ldo + h * a.HD;
          sgemm(false, true, nb, kv_end, a.HD, a.scale, qb, a.ldq, kb, a.ldk, 0.0f, P, kv_end);
          sgemm(false, true, nb, kv_end, a.HD, 1.0f, dob, lddo, vb, a.ldv, 0.0f, dP, kv_end);
          for (int64_t r = 0; r < nb; ++r) {
            const int64_t kmax = sq.offset + i0 + r;
            float* p = P + r * kv_end;
            float* dp = dP + r * kv_end;
            float* cap = a.softcap > 0 ? scratch(2, static_cast<size_t>(kmax + 1)) : nullptr;
            if (cap) softcap_row(p, kmax, a.softcap, cap);
            mask_segments(p, a, sq, kmax);
            mask_window(p, a, kmax);
            const float l = lse[(b * a.Tq + i0 + r) * a.NH + h];
            float D = 0.0f;  // Σ_d dO·O = Σ_j P·dP
            for (int d = 0; d < a.HD; ++d) D += dob[r * lddo + d] * ob[r * ldo + d];
            softmax_backward_row(p, dp, kmax, kv_end, l, D);
            if (cap)  // d(raw score) = d(capped score)·(1 − tanh²)
              for (int64_t j = 0; j <= kmax; ++j) dp[j] *= cap[j];
          }
          // dq = scale·dS·K ; dk += scale·dSᵀ·Q ; dv += Pᵀ·dO
          sgemm(false, false, nb, a.HD, kv_end, a.scale, dP, kv_end, kb, a.ldk, 0.0f,
                dq + (b * a.Tq + i0) * lddq + h * a.HD, lddq);
          sgemm(true, false, kv_end, a.HD, nb, a.scale, dP, kv_end, qb, a.ldq, 1.0f, dkb, lddk);
          sgemm(true, false, kv_end, a.HD, nb, 1.0f, P, kv_end, dob, lddo, 1.0f, dvb, lddv);
        }
      }
    }
  });
}

void attention_forward_reference(const AttentionArgs& a, float* out, int64_t ldo, float* lse) {
  check(a);
  if (a.block_table) check_paged(a);
  const int group = a.NH / a.KVH;
  std::vector<double> s;
  for (int64_t b = 0; b < a.B; ++b) {
    const Seq sq = seq_of(a, b);
    // row of k/v holding key j of this sequence
    const int32_t* table = a.block_table ? a.block_table + (a.kv_seq ? a.kv_seq[b] : b) * a.table_stride : nullptr;
    auto key_row = [&](int64_t j) { return table ? paged_row(a, table, j) : sq.kv_base + j; };
    // element e of k / v (bf16 widened when the pool holds bf16)
    auto kat = [&](int64_t e) { return a.k_bf16 ? bf16_to_f32(a.k_bf16[e]) : a.k[e]; };
    auto vat = [&](int64_t e) { return a.v_bf16 ? bf16_to_f32(a.v_bf16[e]) : a.v[e]; };
    for (int64_t i = 0; i < a.Tq; ++i)
      for (int h = 0; h < a.NH; ++h) {
        float* o = out + (b * a.Tq + i) * ldo + h * a.HD;
        if (i >= sq.qlen) {
          for (int d = 0; d < a.HD; ++d) o[d] = 0.0f;
          if (lse) lse[(b * a.Tq + i) * a.NH + h] = 0.0f;
          continue;
        }
        const int g = h / group;
        const int64_t kmax = sq.offset + i;
        const float* qi = a.q + (b * a.Tq + i) * a.ldq + h * a.HD;
        s.assign(kmax + 1, -INFINITY);
        double m = -INFINITY;
        for (int64_t j = 0; j <= kmax; ++j) {
          if (a.segments && a.segments[sq.kv_base + j] != a.segments[sq.kv_base + kmax]) continue;
          if (a.window > 0 && j <= kmax - a.window) continue;
          const int64_t kj = key_row(j) * a.ldk + g * a.HD;
          double dot = 0;
          for (int d = 0; d < a.HD; ++d) dot += double(qi[d]) * kat(kj + d);
          s[j] = dot * a.scale;
          if (a.softcap > 0) s[j] = a.softcap * std::tanh(s[j] / a.softcap);
          m = std::max(m, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= kmax; ++j) sum += std::exp(s[j] - m);
        for (int d = 0; d < a.HD; ++d) {
          double acc = 0;
          for (int64_t j = 0; j <= kmax; ++j) acc += std::exp(s[j] - m) / sum * vat(key_row(j) * a.ldv + g * a.HD + d);
          o[d] = static_cast<float>(acc);
        }
        if (lse) lse[(b * a.Tq + i) * a.NH + h] = static_cast<float>(m + std::log(sum));
      }
  }
}

}  // namespace cpu
}  // namespace rlhf
