// AVX-512 pieces of the in-place paged decode, shared by attention_decode.cc (one sequence at a
// time) and attention_decode_shared.cc (sequences whose block tables share leading blocks). Not a
// public interface. Arithmetic contract: attention_decode.cc's header (the GEMM's chains).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include <immintrin.h>

#include "../core/dtype.h"
#include "attention_internal.h"

#define RLHF_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))

namespace rlhf {
namespace cpu {
namespace attention_internal {

// In-register transpose of a 16 × 16 float block: r[i] lane c (row i, column c) → r[c] lane i.
RLHF_AVX512 inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit block k: rows i, i+1 at columns 4k, 4k+1 | 4k+2, 4k+3
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // r[i + j] block k: rows i..i+3 at column 4k + j
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {  // column c = 4k + j gathers block k of r[j], r[4 + j], r[8 + j], r[12 + j]
    const __m512 x = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), y = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    const __m512 z = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), w = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    t[j] = _mm512_shuffle_f32x4(x, z, 0x88), t[j + 8] = _mm512_shuffle_f32x4(x, z, 0xDD);
    t[j + 4] = _mm512_shuffle_f32x4(y, w, 0x88), t[j + 12] = _mm512_shuffle_f32x4(y, w, 0xDD);
  }
  for (int c = 0; c < 16; ++c) r[c] = t[c];
}

// Transposes the head-g rows of keys [j0, j0 + n) (n <= 64) of the sequence whose block-table row
// is `table` into tile (HD × 64 floats, 64-byte aligned, bf16 widened); lanes n..63 are zeroed.
// Prefetches up to 16 keys ahead, never at or past key `jlimit` (the last key it may touch + 1):
// the head's part of each row, or with whole_rows the row's every head (for the heads that follow).
RLHF_AVX512 inline void transpose_keys64(const AttentionArgs& a, int64_t g, const int32_t* table, int64_t j0, int n,
                                         int64_t jlimit, float* tile, bool whole_rows = false) {
  const int HD = a.HD;
  constexpr int kAhead = 16;  // keys prefetched ahead of the transpose
  int64_t off[64 + kAhead];   // element offset of key j0 + l's head-g row in the pool
  const int na = static_cast<int>(std::min<int64_t>(n + kAhead, jlimit - j0));
  {  // walk the blocks (one division per tile, not per key)
    int64_t blk = j0 / a.block_size, in = j0 % a.block_size;
    for (int l = 0; l < na; ++l) {
      off[l] = (int64_t(table[blk]) * a.block_size + in) * a.ldk + g * HD;
      if (++in == a.block_size) in = 0, ++blk;
    }
  }
  const int64_t esz = a.k_bf16 ? 2 : 4;
  const char* kbase = a.k_bf16 ? reinterpret_cast<const char*>(a.k_bf16) : reinterpret_cast<const char*>(a.k);
  const int64_t pf_from = whole_rows ? -g * HD * esz : 0, pf_bytes = whole_rows ? a.KVH * HD * esz : HD * esz;
  auto prefetch = [&](int l) {
    for (int64_t by = 0; by < pf_bytes; by += 64) _mm_prefetch(kbase + off[l] * esz + pf_from + by, _MM_HINT_T1);
  };
  for (int l = 0; l < std::min(na, kAhead); ++l) prefetch(l);
  const __m512 zero = _mm512_setzero_ps();
  for (int l0 = 0; l0 < 64; l0 += 16) {
    const int rows = std::max(0, std::min(16, n - l0));
    if (rows == 0) {
      for (int d = 0; d < HD; ++d) _mm512_store_ps(tile + d * 64 + l0, zero);
      continue;
    }
    for (int l = l0 + kAhead; l < std::min(na, l0 + 2 * kAhead); ++l) prefetch(l);
    for (int d0 = 0; d0 < HD; d0 += 16) {
      const int dims = std::min(16, HD - d0);
      const __mmask16 md = static_cast<__mmask16>((1u << dims) - 1u);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        if (i >= rows) {
          r[i] = zero;
        } else if (a.k_bf16) {
          const __m512i w =
              _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm256_maskz_loadu_epi16(md, a.k_bf16 + off[l0 + i] + d0));
          r[i] = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, w, 16));
        } else {
          r[i] = _mm512_maskz_loadu_ps(md, a.k + off[l0 + i] + d0);
        }
      }
      transpose16x16(r);
      for (int c = 0; c < dims; ++c) _mm512_store_ps(tile + (d0 + c) * 64 + l0, r[c]);
    }
  }
}

// Scores of one query row q (HD floats) against the tile's first n keys: S[l] = scale · t_l for
// l < n (overwrite), t_l the sequential multiply-add chain over d from +0 (HD <= the GEMM's kc).
RLHF_AVX512 inline void scores_from_tile(const AttentionArgs& a, const float* tile, int n, const float* q, float* S) {
  __m512 t0 = _mm512_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;
  for (int d = 0; d < a.HD; ++d) {
    const __m512 qd = _mm512_set1_ps(q[d]);
    const float* td = tile + d * 64;
    t0 = _mm512_fmadd_ps(qd, _mm512_load_ps(td), t0);
    t1 = _mm512_fmadd_ps(qd, _mm512_load_ps(td + 16), t1);
    t2 = _mm512_fmadd_ps(qd, _mm512_load_ps(td + 32), t2);
    t3 = _mm512_fmadd_ps(qd, _mm512_load_ps(td + 48), t3);
  }
  const __m512 vs = _mm512_set1_ps(a.scale);
  const __m512 t[4] = {t0, t1, t2, t3};
  for (int s4 = 0; s4 < 4; ++s4) {
    const int valid = std::max(0, std::min(16, n - 16 * s4));
    _mm512_mask_storeu_ps(S + 16 * s4, static_cast<__mmask16>((1u << valid) - 1u), _mm512_mul_ps(vs, t[s4]));
  }
}

// 16 values of the value pool from element `at` (m: the valid ones, the rest 0) as f32.
RLHF_AVX512 inline __m512 load_v16(const AttentionArgs& a, int64_t at, __mmask16 m) {
  if (a.v_bf16) {
    // maskz forms: the plain ones start from an undefined register (a -Wmaybe-uninitialized warning)
    const __m512i w = _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm256_maskz_loadu_epi16(m, a.v_bf16 + at));
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, w, 16));
  }
  return _mm512_maskz_loadu_ps(m, a.v + at);
}

// Masks of the (up to) four 16-lane vectors covering head dims [d0, min(HD, d0 + 64)).
inline void dim_masks(int HD, int d0, __mmask16 m[4]) {
  for (int i = 0; i < 4; ++i) m[i] = static_cast<__mmask16>((1u << std::max(0, std::min(16, HD - d0 - 16 * i))) - 1u);
}

}  // namespace attention_internal
}  // namespace cpu
}  // namespace rlhf
