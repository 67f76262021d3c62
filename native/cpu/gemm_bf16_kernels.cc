// bf16 GEMM microkernels (contract: gemm_bf16_kernels.h). Tiles: AVX512-BF16 14×32 (28 zmm
// accumulators, 2 B vectors, 1 broadcast; per k pair 28 vdpbf16ps = 896 multiply-adds for 2 vector
// loads + 14 broadcasts); AVX2 emulation 4×16; portable 4×16.
#include "gemm_bf16_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../core/cpu_features.h"

namespace rlhf {
namespace cpu {

namespace {

inline float hi_f32(uint32_t pair) {
  uint32_t bits = pair & 0xffff0000u;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline float lo_f32(uint32_t pair) {
  uint32_t bits = pair << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <int MR, int NR>
inline void merge_tile(const float* acc, float* c, int64_t ldc, float alpha, float beta, int mv, int nv) {
  for (int i = 0; i < mv; ++i)
    for (int j = 0; j < nv; ++j) {
      float v = alpha * acc[i * NR + j];
      c[i * ldc + j] = (beta == 0.0f) ? v : v + beta * c[i * ldc + j];
    }
}

// ---------------------------------------------------------------------------------------------
// AVX512-BF16: 14 × 32

constexpr int kMrBf = 14, kNrBf = 32;

#define RLHF_BF16_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16")))

RLHF_BF16_TARGET inline __m512bh as_bh(__m512i x) { return (__m512bh)x; }

RLHF_BF16_TARGET void kernel_avx512bf16(int64_t kp, const uint32_t* __restrict a, const uint32_t* __restrict b,
                                        float* c, int64_t ldc, float alpha, float beta, int mv, int nv) {
  __m512 acc[kMrBf][2];
#pragma GCC unroll 14
  for (int i = 0; i < kMrBf; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    const __m512bh b0 = as_bh(_mm512_load_si512(b)), b1 = as_bh(_mm512_load_si512(b + 16));
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kNrBf), _MM_HINT_T0);
#pragma GCC unroll 14
    for (int i = 0; i < kMrBf; ++i) {
      const __m512bh ai = as_bh(_mm512_set1_epi32(static_cast<int>(a[i])));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
    a += kMrBf;
    b += kNrBf;
  }
  if (mv == kMrBf && nv == kNrBf) {
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int i = 0; i < kMrBf; ++i) {
      float* ci = c + i * ldc;
      __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
      if (beta != 0.0f) {
        r0 = _mm512_add_ps(r0, _mm512_mul_ps(vb, _mm512_loadu_ps(ci)));
        r1 = _mm512_add_ps(r1, _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16)));
      }
      _mm512_storeu_ps(ci, r0);
      _mm512_storeu_ps(ci + 16, r1);
    }
    return;
  }
  alignas(64) float tmp[kMrBf * kNrBf];
  for (int i = 0; i < kMrBf; ++i) {
    _mm512_store_ps(tmp + i * kNrBf, acc[i][0]);
    _mm512_store_ps(tmp + i * kNrBf + 16, acc[i][1]);
  }
  merge_tile<kMrBf, kNrBf>(tmp, c, ldc, alpha, beta, mv, nv);
}

RLHF_BF16_TARGET inline void store16_bf16(float* dst, __m512 acc, int64_t valid, float alpha, float beta) {
  if (valid <= 0) return;
  alignas(64) float tmp[16];
  _mm512_store_ps(tmp, acc);
  merge_tile<1, 16>(tmp, dst, 0, alpha, beta, 1, static_cast<int>(std::min<int64_t>(16, valid)));
}

// Row kernel: four panels (8 independent accumulators) at a time, then one.
RLHF_BF16_TARGET void row_avx512bf16(int64_t kp, const uint32_t* __restrict a, const uint32_t* __restrict b,
                                     int64_t npanels, float* c, float alpha, float beta, int64_t n_valid) {
  const int64_t ps = kp * kNrBf;
  int64_t q = 0;
  for (; q + 4 <= npanels; q += 4) {
    const uint32_t* bq = b + q * ps;
    __m512 r[8];
#pragma GCC unroll 8
    for (int h = 0; h < 8; ++h) r[h] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kp; ++p) {
      const __m512bh ap = as_bh(_mm512_set1_epi32(static_cast<int>(a[p])));
      const uint32_t* bp = bq + p * kNrBf;
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        r[2 * g] = _mm512_dpbf16_ps(r[2 * g], ap, as_bh(_mm512_load_si512(bp + g * ps)));
        r[2 * g + 1] = _mm512_dpbf16_ps(r[2 * g + 1], ap, as_bh(_mm512_load_si512(bp + g * ps + 16)));
      }
    }
    const int64_t j0 = q * kNrBf;
    for (int h = 0; h < 8; ++h) store16_bf16(c + j0 + 16 * h, r[h], n_valid - (j0 + 16 * h), alpha, beta);
  }
  for (; q < npanels; ++q) {
    const uint32_t* bq = b + q * ps;
    __m512 r0 = _mm512_setzero_ps(), r1 = r0;
    for (int64_t p = 0; p < kp; ++p) {
      const __m512bh ap = as_bh(_mm512_set1_epi32(static_cast<int>(a[p])));
      r0 = _mm512_dpbf16_ps(r0, ap, as_bh(_mm512_load_si512(bq + p * kNrBf)));
      r1 = _mm512_dpbf16_ps(r1, ap, as_bh(_mm512_load_si512(bq + p * kNrBf + 16)));
    }
    const int64_t j0 = q * kNrBf;
    store16_bf16(c + j0, r0, n_valid - j0, alpha, beta);
    store16_bf16(c + j0 + 16, r1, n_valid - j0 - 16, alpha, beta);
  }
}
#undef RLHF_BF16_TARGET

// ---------------------------------------------------------------------------------------------
// Emulation: the same two rounded adds per pair (the product of two bf16 values is exact in f32,
// so a fused multiply-add rounds like the separate add). 4 × 16.

constexpr int kMrEmu = 4, kNrEmu = 16;

__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kp, const uint32_t* __restrict a,
                                                     const uint32_t* __restrict b, float* c, int64_t ldc, float alpha,
                                                     float beta, int mv, int nv) {
  __m256 acc[kMrEmu][2];
  for (int i = 0; i < kMrEmu; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t p = 0; p < kp; ++p) {
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 8));
    const __m256 bh0 = _mm256_castsi256_ps(_mm256_and_si256(w0, hi_mask));
    const __m256 bh1 = _mm256_castsi256_ps(_mm256_and_si256(w1, hi_mask));
    const __m256 bl0 = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16));
    const __m256 bl1 = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
#pragma GCC unroll 4
    for (int i = 0; i < kMrEmu; ++i) {
      const __m256 ah = _mm256_set1_ps(hi_f32(a[i])), al = _mm256_set1_ps(lo_f32(a[i]));
      acc[i][0] = _mm256_fmadd_ps(al, bl0, _mm256_fmadd_ps(ah, bh0, acc[i][0]));
      acc[i][1] = _mm256_fmadd_ps(al, bl1, _mm256_fmadd_ps(ah, bh1, acc[i][1]));
    }
    a += kMrEmu;
    b += kNrEmu;
  }
  alignas(32) float tmp[kMrEmu * kNrEmu];
  for (int i = 0; i < kMrEmu; ++i) {
    _mm256_store_ps(tmp + i * kNrEmu, acc[i][0]);
    _mm256_store_ps(tmp + i * kNrEmu + 8, acc[i][1]);
  }
  merge_tile<kMrEmu, kNrEmu>(tmp, c, ldc, alpha, beta, mv, nv);
}

void kernel_scalar(int64_t kp, const uint32_t* __restrict a, const uint32_t* __restrict b, float* c, int64_t ldc,
                   float alpha, float beta, int mv, int nv) {
  float acc[kMrEmu * kNrEmu] = {};
  for (int64_t p = 0; p < kp; ++p) {
    for (int i = 0; i < kMrEmu; ++i) {
      const float ah = hi_f32(a[i]), al = lo_f32(a[i]);
      for (int j = 0; j < kNrEmu; ++j) {
        float t = acc[i * kNrEmu + j] + ah * hi_f32(b[j]);
        acc[i * kNrEmu + j] = t + al * lo_f32(b[j]);
      }
    }
    a += kMrEmu;
    b += kNrEmu;
  }
  merge_tile<kMrEmu, kNrEmu>(acc, c, ldc, alpha, beta, mv, nv);
}

// Row kernel for both emulations (16-column panels).
void row_emulated(int64_t kp, const uint32_t* __restrict a, const uint32_t* __restrict b, int64_t npanels, float* c,
                  float alpha, float beta, int64_t n_valid) {
  for (int64_t q = 0; q < npanels; ++q) {
    float acc[kNrEmu] = {};
    const uint32_t* bq = b + q * kp * kNrEmu;
    for (int64_t p = 0; p < kp; ++p) {
      const float ah = hi_f32(a[p]), al = lo_f32(a[p]);
      for (int j = 0; j < kNrEmu; ++j) {
        float t = acc[j] + ah * hi_f32(bq[p * kNrEmu + j]);
        acc[j] = t + al * lo_f32(bq[p * kNrEmu + j]);
      }
    }
    const int64_t j0 = q * kNrEmu;
    merge_tile<1, kNrEmu>(acc, c + j0, 0, alpha, beta, 1, static_cast<int>(std::min<int64_t>(kNrEmu, n_valid - j0)));
  }
}

// Blocking as the f32 kernels (gemm_microkernels.cc) in bytes: kc bf16 k's per block.
const Bf16KernelInfo kAvx512Bf16 = {kernel_avx512bf16, row_avx512bf16, kMrBf, kNrBf, 1024, 14 * 4, 3072,
                                    "avx512bf16-14x32"};
const Bf16KernelInfo kAvx2Emu = {kernel_avx2, row_emulated, kMrEmu, kNrEmu, 512, 4 * 32, 2048, "avx2-4x16"};
const Bf16KernelInfo kScalarEmu = {kernel_scalar, row_emulated, kMrEmu, kNrEmu, 512, 4 * 32, 1024, "scalar-4x16"};

}  // namespace

const Bf16KernelInfo& gemm_bf16_select_kernel() {
  if (cpu_has_avx512_bf16()) return kAvx512Bf16;
  if (simd_level() >= SimdLevel::Avx2) return kAvx2Emu;
  return kScalarEmu;
}

}  // namespace cpu
}  // namespace rlhf
