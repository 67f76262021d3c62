#include "logsoftmax.h"

#include <cmath>

#include "../core/cpu_features.h"
#include "../core/thread_pool.h"
#include "vmath.h"
#include "vmath_avx512.h"

namespace rlhf {
namespace cpu {

namespace {

__attribute__((target_clones("avx512f", "avx2", "default"))) float row_max(const float* __restrict z, int64_t V) {
  float lanes[16];
  for (int l = 0; l < 16; ++l) lanes[l] = -INFINITY;
  int64_t j = 0;
  for (; j + 16 <= V; j += 16)
    for (int l = 0; l < 16; ++l) lanes[l] = z[j + l] > lanes[l] ? z[j + l] : lanes[l];
  for (; j < V; ++j) lanes[j & 15] = z[j] > lanes[j & 15] ? z[j] : lanes[j & 15];
  float m = lanes[0];
  for (int l = 1; l < 16; ++l) m = lanes[l] > m ? lanes[l] : m;
  return m;
}

// Σ exp(z − m) and Σ exp(z − m)·z in 16 lanes.
__attribute__((target_clones("avx512f", "avx2", "default"))) void row_sums(const float* __restrict z, int64_t V,
                                                                           float m, float* sum_e, float* sum_ez) {
  float le[16] = {}, lz[16] = {};
  int64_t j = 0;
  for (; j + 16 <= V; j += 16)
    for (int l = 0; l < 16; ++l) {
      float e = exp_approx(z[j + l] - m);
      le[l] += e;
      lz[l] += e > 0.0f ? e * z[j + l] : 0.0f;  // 0·(−inf) would be NaN
    }
  for (; j < V; ++j) {
    float e = exp_approx(z[j] - m);
    le[j & 15] += e;
    lz[j & 15] += e > 0.0f ? e * z[j] : 0.0f;
  }
  float se = 0.0f, sz = 0.0f;
  for (int l = 0; l < 16; ++l) se += le[l], sz += lz[l];
  *sum_e = se;
  *sum_ez = sz;
}

// row_sums with explicit AVX-512: lane l sums the entries j ≡ l (mod 16) in order, and the lanes
// are added 0..15, as the scalar loops do, so the bits are the same.
RLHF_VMATH_AVX512 void row_sums_avx512(const float* z, int64_t V, float m, float* sum_e, float* sum_ez) {
  __m512 le = _mm512_setzero_ps(), lz = le;
  const __m512 vm = _mm512_set1_ps(m), zero = _mm512_setzero_ps();
  for (int64_t j = 0; j < V; j += 16) {
    const __mmask16 k = V - j >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (V - j)) - 1u);
    const __m512 zj = _mm512_maskz_loadu_ps(k, z + j);
    const __m512 e = exp_approx16(_mm512_sub_ps(zj, vm));
    le = _mm512_mask_add_ps(le, k, le, e);
    // e·z where e > 0 (0·(−inf) would be NaN), else +0
    const __m512 ez = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(e, zero, _CMP_GT_OQ), zero, _mm512_mul_ps(e, zj));
    lz = _mm512_mask_add_ps(lz, k, lz, ez);
  }
  float a[16], b[16];
  _mm512_storeu_ps(a, le);
  _mm512_storeu_ps(b, lz);
  float se = 0.0f, sz = 0.0f;
  for (int l = 0; l < 16; ++l) se += a[l], sz += b[l];
  *sum_e = se;
  *sum_ez = sz;
}

// dz_j = −p_j·(dlogp + dent·(z_j − lse + H)), then + dlogp at the target (outside).
__attribute__((target_clones("avx512f", "avx2", "default"))) void row_backward(float* __restrict dz, const float* z,
                                                                               int64_t V, float lse, float a, float b) {
  // p_j = exp(z_j − lse);  −p_j·(a + b·(z_j − lse))  with a = dlogp + dent·H, b = dent
  for (int64_t j = 0; j < V; ++j) {
    float zl = z[j] - lse;
    float p = exp_approx(zl);
    dz[j] = p > 0.0f ? -p * (a + b * zl) : 0.0f;  // masked (−inf) logits: no gradient, not NaN
  }
}

}  // namespace

float row_logsumexp(const float* z, int64_t V, float* sum_pz) {
  float m = row_max(z, V);
  if (std::isinf(m) && m < 0) {  // every logit is −inf
    if (sum_pz) *sum_pz = 0.0f;
    return -INFINITY;
  }
  float se, sz;
  if (simd_level() == SimdLevel::Avx512)
    row_sums_avx512(z, V, m, &se, &sz);
  else
    row_sums(z, V, m, &se, &sz);
  if (sum_pz) *sum_pz = sz / se;
  return m + std::log(se);
}

void logsoftmax_forward(float* logp, float* ent, float* lse, const float* z, int64_t ldz, const int32_t* targets,
                        int64_t N, int64_t V) {
  parallel_for(N, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const int32_t y = targets[r];
      if (y < 0) {
        logp[r] = 0.0f;
        if (ent) ent[r] = 0.0f;
        lse[r] = 0.0f;
        continue;
      }
      const float* zr = z + r * ldz;
      float mean_z;
      float l = row_logsumexp(zr, V, &mean_z);
      lse[r] = l;
      logp[r] = zr[y] - l;
      if (ent) ent[r] = l - mean_z;
    }
  });
}

void logsoftmax_backward(float* dz, int64_t lddz, const float* z, int64_t ldz, const int32_t* targets, const float* lse,
                         const float* ent, const float* dlogp, const float* dent, int64_t N, int64_t V) {
  parallel_for(N, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      float* dzr = dz + r * lddz;
      const int32_t y = targets[r];
      if (y < 0) {
        for (int64_t j = 0; j < V; ++j) dzr[j] = 0.0f;
        continue;
      }
      const float g = dlogp ? dlogp[r] : 0.0f;
      const float h = dent ? dent[r] : 0.0f;
      row_backward(dzr, z + r * ldz, V, lse[r], g + (dent ? h * ent[r] : 0.0f), h);
      dzr[y] += g;
    }
  });
}

void logsoftmax_forward_reference(float* logp, float* ent, const float* z, int64_t ldz, const int32_t* targets,
                                  int64_t N, int64_t V) {
  for (int64_t r = 0; r < N; ++r) {
    if (targets[r] < 0) {
      logp[r] = 0.0f;
      if (ent) ent[r] = 0.0f;
      continue;
    }
    const float* zr = z + r * ldz;
    double m = -INFINITY;
    for (int64_t j = 0; j < V; ++j) m = std::max(m, double(zr[j]));
    double s = 0, sz = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(zr[j] - m), sz += std::exp(zr[j] - m) * zr[j];
    double l = m + std::log(s);
    logp[r] = static_cast<float>(zr[targets[r]] - l);
    if (ent) ent[r] = static_cast<float>(l - sz / s);
  }
}

}  // namespace cpu
}  // namespace rlhf
