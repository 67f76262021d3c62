// Paged decode reading K/V in place (see attention_internal.h for the contract).
//
// Arithmetic, per element, as the gather path's two GEMMs do it (gemm_driver.h, gemm_microkernels.cc):
//   score s_j  = scale·t_0 (+ scale·t_1 + …),  t_b = sequential multiply-add chain over head_dim
//                block b of depth kc, from +0 (fused on AVX-512/AVX2, multiply then add on scalar)
//   output o_d = u_0 (+ u_1 + …),              u_b = the same chain over key positions of depth block b
// The build uses -ffp-contract=off, so the written multiply/add order is the executed one.
// Keys a sliding window masks are not read: their probabilities are exactly 0, so a chain that
// skips them holds the same +0 the gather path's chain holds when it reaches the window.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <immintrin.h>

#include "../core/cpu_features.h"
#include "../core/dtype.h"
#include "attention_internal.h"
#include "attention_decode_avx512.h"
#include "gemm_microkernels.h"

namespace rlhf {
namespace cpu {
namespace attention_internal {

namespace {

constexpr int kLanes = 16;  // keys per score tile (one independent chain per lane)

template <bool kFma>
inline __attribute__((always_inline)) float madd(float x, float y, float acc) {
  if constexpr (kFma)
    return std::fma(x, y, acc);
  else
    return acc + x * y;
}

// Scores of the group's query heads against keys [j0, j0 + n) (n <= kLanes, one pool block):
// the keys are transposed into tile (head_dim × kLanes, in L1) so each lane runs its own chain.
template <bool kFma>
inline __attribute__((always_inline)) void score_tile(const AttentionArgs& a, int64_t g, int64_t row0, int n,
                                                      const float* qg, int group, int64_t kc, float* tile, float* S,
                                                      int64_t ldS) {
  const int HD = a.HD;
  if (a.k_bf16) {
    const uint16_t* kh = a.k_bf16 + row0 * a.ldk + g * HD;
    for (int l = 0; l < n; ++l)
      for (int d = 0; d < HD; ++d) tile[d * kLanes + l] = bf16_to_f32(kh[l * a.ldk + d]);
  } else {
    const float* kf = a.k + row0 * a.ldk + g * HD;
    for (int l = 0; l < n; ++l)
      for (int d = 0; d < HD; ++d) tile[d * kLanes + l] = kf[l * a.ldk + d];
  }
  if (n < kLanes)
    for (int d = 0; d < HD; ++d)
      for (int l = n; l < kLanes; ++l) tile[d * kLanes + l] = 0.0f;
  for (int r = 0; r < group; ++r) {
    const float* q = qg + r * HD;
    float c[kLanes];
    for (int64_t d0 = 0; d0 < HD; d0 += kc) {
      const int64_t d1 = std::min<int64_t>(HD, d0 + kc);
      float t[kLanes] = {};
      for (int64_t d = d0; d < d1; ++d) {
        const float qd = q[d];
        const float* td = tile + d * kLanes;
        for (int l = 0; l < kLanes; ++l) t[l] = madd<kFma>(qd, td[l], t[l]);
      }
      for (int l = 0; l < kLanes; ++l) c[l] = d0 == 0 ? a.scale * t[l] : a.scale * t[l] + c[l];
    }
    for (int l = 0; l < n; ++l) S[r * ldS + l] = c[l];
  }
}

template <bool kFma>
inline __attribute__((always_inline)) void decode_body(const AttentionArgs& a, int64_t b, int64_t kv_end,
                                                       const int32_t* table, float* out, int64_t ldo, float* lse,
                                                       int64_t kc) {
  const int group = a.NH / a.KVH, HD = a.HD;
  const int64_t kmax = kv_end - 1, bs = a.block_size;
  const int64_t jstart = a.window > 0 ? std::max<int64_t>(0, kmax - a.window + 1) : 0;
  float* S = scratch(3, static_cast<size_t>(group * kv_end));
  float* tile = scratch(4, static_cast<size_t>(HD * kLanes));
  float* acc = scratch(5, static_cast<size_t>(group * HD));
  const float* qrow = a.q + b * a.Tq * a.ldq;
  float* orow = out + b * a.Tq * ldo;
  for (int64_t g = 0; g < a.KVH; ++g) {
    const int64_t h0 = g * group;
    for (int64_t j0 = jstart; j0 < kv_end;) {
      const int n = static_cast<int>(std::min<int64_t>(std::min<int64_t>(kLanes, bs - j0 % bs), kv_end - j0));
      score_tile<kFma>(a, g, paged_row(a, table, j0), n, qrow + h0 * HD, group, kc, tile, S + j0, kv_end);
      j0 += n;
    }
    for (int r = 0; r < group; ++r) {
      float* s = S + r * kv_end;
      for (int64_t j = 0; j < jstart; ++j) s[j] = -INFINITY;
      if (a.softcap > 0) softcap_row(s + jstart, kmax - jstart, a.softcap, nullptr);
      const float l = softmax_row(s, kmax, kv_end);
      if (lse) lse[b * a.Tq * a.NH + h0 + r] = l;
    }
    float* og = orow + h0 * HD;  // the group's heads are consecutive
    bool merged = false;         // a k block has been written to the output
    for (int64_t pb = 0; pb < kv_end; pb += kc) {
      const int64_t pe = std::min(kv_end, pb + kc);
      if (pe <= jstart) {  // all masked: the gather path's chain gives +0 here
        for (int64_t e = 0; e < group * HD; ++e) og[e] = merged ? og[e] + 0.0f : 0.0f;
        merged = true;
        continue;
      }
      std::fill(acc, acc + group * HD, 0.0f);
      for (int64_t j0 = std::max(pb, jstart); j0 < pe;) {
        const int64_t n = std::min(bs - j0 % bs, pe - j0), row0 = paged_row(a, table, j0);
        for (int64_t i = 0; i < n; ++i) {
          const float* v;
          if (a.v_bf16) {
            const uint16_t* vh = a.v_bf16 + (row0 + i) * a.ldv + g * HD;
            for (int d = 0; d < HD; ++d) tile[d] = bf16_to_f32(vh[d]);
            v = tile;
          } else {
            v = a.v + (row0 + i) * a.ldv + g * HD;
          }
          for (int r = 0; r < group; ++r) {
            const float p = S[r * kv_end + j0 + i];
            float* ar = acc + r * HD;
            for (int d = 0; d < HD; ++d) ar[d] = madd<kFma>(p, v[d], ar[d]);
          }
        }
        j0 += n;
      }
      for (int64_t e = 0; e < group * HD; ++e) og[e] = merged ? acc[e] + og[e] : acc[e];
      merged = true;
    }
  }
}

// AVX-512 scores of query rows qg (group × HD) against keys [j0, j0 + n), n <= 64, into
// S[r·ldS + l]: the keys' head-g rows transposed into tile (HD × 64, in L1; bf16 widened), then
// per head four 16-key chains over d in registers. (Hardware gathers instead of the transpose
// were slower on the Zen machine measured.)
RLHF_AVX512 void scores64_avx512(const AttentionArgs& a, int64_t g, const int32_t* table, int64_t j0, int n,
                                 int64_t kv_end, const float* qg, int group, float* tile, float* S, int64_t ldS) {
  transpose_keys64(a, g, table, j0, n, kv_end, tile);
  for (int r = 0; r < group; ++r) scores_from_tile(a, tile, n, qg + r * a.HD, S + r * ldS);
}

RLHF_AVX512 void decode_avx512(const AttentionArgs& a, int64_t b, int64_t kv_end, const int32_t* table, float* out,
                               int64_t ldo, float* lse, int64_t kc) {
  const int group = a.NH / a.KVH, HD = a.HD;
  if (HD > kc) return decode_body<true>(a, b, kv_end, table, out, ldo, lse, kc);  // several depth blocks
  const int64_t kmax = kv_end - 1, bs = a.block_size;
  const int64_t jstart = a.window > 0 ? std::max<int64_t>(0, kmax - a.window + 1) : 0;
  float* S = scratch(3, static_cast<size_t>(group * kv_end));
  float* tile = scratch(4, static_cast<size_t>(HD * 64 + 16));
  tile = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(tile) + 63) & ~uintptr_t(63));
  const float* qrow = a.q + b * a.Tq * a.ldq;
  float* orow = out + b * a.Tq * ldo;
  for (int64_t g = 0; g < a.KVH; ++g) {
    const int64_t h0 = g * group;
    for (int64_t j0 = jstart; j0 < kv_end; j0 += 64)
      scores64_avx512(a, g, table, j0, static_cast<int>(std::min<int64_t>(64, kv_end - j0)), kv_end, qrow + h0 * HD,
                      group, tile, S + j0, kv_end);
    for (int r = 0; r < group; ++r) {
      float* s = S + r * kv_end;
      for (int64_t j = 0; j < jstart; ++j) s[j] = -INFINITY;
      if (a.softcap > 0) softcap_row(s + jstart, kmax - jstart, a.softcap, nullptr);
      const float l = softmax_row(s, kmax, kv_end);
      if (lse) lse[b * a.Tq * a.NH + h0 + r] = l;
    }
    const int64_t vsz = a.v_bf16 ? 2 : 4;
    const char* vbase = a.v_bf16 ? reinterpret_cast<const char*>(a.v_bf16) : reinterpret_cast<const char*>(a.v);
    for (int r = 0; r < group; ++r)
      for (int d0 = 0; d0 < HD; d0 += 64) {
        __mmask16 m[4];
        dim_masks(HD, d0, m);
        const float* p = S + r * kv_end;
        const __m512 zero = _mm512_setzero_ps();
        __m512 o0 = zero, o1 = zero, o2 = zero, o3 = zero;
        bool merged = false;
        for (int64_t pb = 0; pb < kv_end; pb += kc) {
          const int64_t pe = std::min(kv_end, pb + kc);
          if (pe <= jstart) {  // all masked: the gather path's chain gives +0 here
            o0 = merged ? _mm512_add_ps(o0, zero) : zero, o1 = merged ? _mm512_add_ps(o1, zero) : zero;
            o2 = merged ? _mm512_add_ps(o2, zero) : zero, o3 = merged ? _mm512_add_ps(o3, zero) : zero;
            merged = true;
            continue;
          }
          __m512 c0 = zero, c1 = zero, c2 = zero, c3 = zero;
          for (int64_t j0 = std::max(pb, jstart); j0 < pe;) {
            const int64_t n = std::min(bs - j0 % bs, pe - j0);
            int64_t at = paged_row(a, table, j0) * a.ldv + g * HD + d0;
            for (int64_t i = 0; i < n; ++i, at += a.ldv) {
              if (i + 4 < n) _mm_prefetch(vbase + (at + 4 * a.ldv) * vsz, _MM_HINT_T0);
              const __m512 pj = _mm512_set1_ps(p[j0 + i]);
              c0 = _mm512_fmadd_ps(pj, load_v16(a, at, m[0]), c0);
              if (m[1]) c1 = _mm512_fmadd_ps(pj, load_v16(a, at + 16, m[1]), c1);
              if (m[2]) c2 = _mm512_fmadd_ps(pj, load_v16(a, at + 32, m[2]), c2);
              if (m[3]) c3 = _mm512_fmadd_ps(pj, load_v16(a, at + 48, m[3]), c3);
            }
            j0 += n;
          }
          o0 = merged ? _mm512_add_ps(c0, o0) : c0, o1 = merged ? _mm512_add_ps(c1, o1) : c1;
          o2 = merged ? _mm512_add_ps(c2, o2) : c2, o3 = merged ? _mm512_add_ps(c3, o3) : c3;
          merged = true;
        }
        float* o = orow + (h0 + r) * HD + d0;
        _mm512_mask_storeu_ps(o, m[0], o0);
        _mm512_mask_storeu_ps(o + 16, m[1], o1);
        _mm512_mask_storeu_ps(o + 32, m[2], o2);
        _mm512_mask_storeu_ps(o + 48, m[3], o3);
      }
  }
}

__attribute__((target("avx2,fma"))) void decode_avx2(const AttentionArgs& a, int64_t b, int64_t kv_end,
                                                     const int32_t* table, float* out, int64_t ldo, float* lse,
                                                     int64_t kc) {
  decode_body<true>(a, b, kv_end, table, out, ldo, lse, kc);
}

void decode_scalar(const AttentionArgs& a, int64_t b, int64_t kv_end, const int32_t* table, float* out, int64_t ldo,
                   float* lse, int64_t kc) {
  decode_body<false>(a, b, kv_end, table, out, ldo, lse, kc);
}

}  // namespace

void decode_paged_in_place(const AttentionArgs& a, int64_t b, int64_t kv_end, const int32_t* table, float* out,
                           int64_t ldo, float* lse) {
  // the GEMM the gather path would run: its depth blocking and its multiply-add (gemm_select_kernel)
  const int64_t kc = gemm_select_kernel().kc;
  switch (simd_level()) {
    case SimdLevel::Avx512:
      return decode_avx512(a, b, kv_end, table, out, ldo, lse, kc);
    case SimdLevel::Avx2:
      return decode_avx2(a, b, kv_end, table, out, ldo, lse, kc);
    default:
      return decode_scalar(a, b, kv_end, table, out, ldo, lse, kc);
  }
}

}  // namespace attention_internal
}  // namespace cpu
}  // namespace rlhf
