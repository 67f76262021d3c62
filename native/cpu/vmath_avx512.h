// exp_approx (vmath.h) on 16 lanes with AVX-512: the same IEEE operations in the same order as the
// scalar function (selects as mask blends, nearbyint as roundscale in the current rounding mode),
// so every lane holds exactly the scalar result, NaN, ±inf and the clamps included. For loops the
// compiler does not vectorise (its scalar form has selects GCC keeps as branches).
#pragma once
#include <cstdint>

#include <immintrin.h>

#define RLHF_VMATH_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))

namespace rlhf {
namespace cpu {

RLHF_VMATH_AVX512 inline __m512 exp_approx16(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.3f), hi = _mm512_set1_ps(88.3f);
  __m512 xc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), x, lo);
  xc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xc, hi, _CMP_GT_OQ), xc, hi);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_sub_ps(xc, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f)));
  r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(-2.12194440e-4f)));
  __m512 p = _mm512_set1_ps(1.3888889e-3f);
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3333333e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1666667e-2f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666667e-1f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(0.5f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
  const __m512 ni = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(n, n, _CMP_EQ_OQ), n);  // NaN → 0
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(ni), _mm512_set1_epi32(127)), 23);
  __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
  y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), y, _mm512_setzero_ps());
  y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(88.72f), _CMP_GT_OQ), y,
                           _mm512_set1_ps(__builtin_inff()));
  return y;
}

}  // namespace cpu
}  // namespace rlhf
