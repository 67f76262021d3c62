// GEMM microkernels (see gemm_microkernels.h for the contract). Each ISA's kernel is compiled with
// a per-function target attribute so one binary carries all of them; gemm_select_kernel() picks
// by runtime CPU detection.
//
// Tile shapes: AVX-512 14×32 (28 zmm accumulators + 2 B vectors + 1 broadcast = 31 of 32
// registers); AVX2 6×16 (12 ymm accumulators + 2 + 1 = 15 of 16); scalar 4×16.
// Per k step the AVX-512 kernel issues 28 FMAs for 2 vector loads + 14 broadcasts.
#include "gemm_microkernels.h"

#include <immintrin.h>

#include <algorithm>

#include "../core/cpu_features.h"

namespace rlhf {
namespace cpu {

namespace {

// Merges a full MR×NR accumulator tile (row-major in `acc`, leading dimension NR) into C for the
// valid part only. Used at the ragged edges of C.
template <int MR, int NR>
inline void merge_edge(const float* acc, float* c, int64_t ldc, float alpha, float beta, int mv, int nv) {
  for (int i = 0; i < mv; ++i)
    for (int j = 0; j < nv; ++j) {
      float v = alpha * acc[i * NR + j];
      c[i * ldc + j] = (beta == 0.0f) ? v : v + beta * c[i * ldc + j];
    }
}

// ---------------------------------------------------------------------------------------------
// AVX-512: 14 × 32

constexpr int kMr512 = 14, kNr512 = 32;

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma"))) void kernel_avx512(int64_t kc,
                                                                                     const float* __restrict a,
                                                                                     const float* __restrict b,
                                                                                     float* c, int64_t ldc, float alpha,
                                                                                     float beta, int mv, int nv) {
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps(),
         c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps(),
         c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps(),
         c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps(),
         c80 = _mm512_setzero_ps(), c81 = _mm512_setzero_ps(), c90 = _mm512_setzero_ps(), c91 = _mm512_setzero_ps(),
         cA0 = _mm512_setzero_ps(), cA1 = _mm512_setzero_ps(), cB0 = _mm512_setzero_ps(), cB1 = _mm512_setzero_ps(),
         cC0 = _mm512_setzero_ps(), cC1 = _mm512_setzero_ps(), cD0 = _mm512_setzero_ps(), cD1 = _mm512_setzero_ps();
#define RLHF_FMA_ROW(r, acc0, acc1)       \
  {                                       \
    __m512 ar = _mm512_set1_ps(a[r]);     \
    acc0 = _mm512_fmadd_ps(ar, b0, acc0); \
    acc1 = _mm512_fmadd_ps(ar, b1, acc1); \
  }
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kNr512), _MM_HINT_T0);
    RLHF_FMA_ROW(0, c00, c01)
    RLHF_FMA_ROW(1, c10, c11) RLHF_FMA_ROW(2, c20, c21) RLHF_FMA_ROW(3, c30, c31) RLHF_FMA_ROW(4, c40, c41)
        RLHF_FMA_ROW(5, c50, c51) RLHF_FMA_ROW(6, c60, c61) RLHF_FMA_ROW(7, c70, c71) RLHF_FMA_ROW(8, c80, c81)
            RLHF_FMA_ROW(9, c90, c91) RLHF_FMA_ROW(10, cA0, cA1) RLHF_FMA_ROW(11, cB0, cB1) RLHF_FMA_ROW(12, cC0, cC1)
                RLHF_FMA_ROW(13, cD0, cD1) a += kMr512;
    b += kNr512;
  }
#undef RLHF_FMA_ROW
  __m512 acc[kMr512][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}, {c60, c61},
                           {c70, c71}, {c80, c81}, {c90, c91}, {cA0, cA1}, {cB0, cB1}, {cC0, cC1}, {cD0, cD1}};
  if (mv == kMr512 && nv == kNr512) {
    __m512 va = _mm512_set1_ps(alpha);
    if (beta == 0.0f) {
      for (int i = 0; i < kMr512; ++i) {
        _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, acc[i][0]));
        _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, acc[i][1]));
      }
    } else {
      __m512 vb = _mm512_set1_ps(beta);
      for (int i = 0; i < kMr512; ++i) {
        float* ci = c + i * ldc;
        _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_mul_ps(va, acc[i][0]), _mm512_mul_ps(vb, _mm512_loadu_ps(ci))));
        _mm512_storeu_ps(ci + 16,
                         _mm512_add_ps(_mm512_mul_ps(va, acc[i][1]), _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16))));
      }
    }
    return;
  }
  alignas(64) float tmp[kMr512 * kNr512];
  for (int i = 0; i < kMr512; ++i) {
    _mm512_store_ps(tmp + i * kNr512, acc[i][0]);
    _mm512_store_ps(tmp + i * kNr512 + 16, acc[i][1]);
  }
  merge_edge<kMr512, kNr512>(tmp, c, ldc, alpha, beta, mv, nv);
}

// Merges 16 accumulated columns into C like kernel_avx512 does (full vector: alpha·acc + beta·C;
// a ragged end: merge_edge's scalar formula).
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma"))) inline void store16_avx512(float* dst, __m512 acc,
                                                                                             int64_t valid, float alpha,
                                                                                             float beta) {
  if (valid >= 16) {
    __m512 r = _mm512_mul_ps(_mm512_set1_ps(alpha), acc);
    if (beta != 0.0f) r = _mm512_add_ps(r, _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_loadu_ps(dst)));
    _mm512_storeu_ps(dst, r);
  } else if (valid > 0) {
    alignas(64) float tmp[16];
    _mm512_store_ps(tmp, acc);
    for (int64_t j = 0; j < valid; ++j) {
      float v = alpha * tmp[j];
      dst[j] = (beta == 0.0f) ? v : v + beta * dst[j];
    }
  }
}

// Row kernel, AVX-512: four panels (8 accumulators, independent chains) at a time, then one.
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma"))) void row_avx512(int64_t kc, const float* __restrict a,
                                                                                  const float* __restrict b,
                                                                                  int64_t npanels, float* c,
                                                                                  float alpha, float beta,
                                                                                  int64_t n_valid) {
  const int64_t ps = kc * kNr512;  // panel stride
  int64_t q = 0;
  for (; q + 4 <= npanels; q += 4) {
    const float* b0 = b + q * ps;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int64_t k = 0; k < kc; ++k) {
      __m512 ak = _mm512_set1_ps(a[k]);
      const float* bk = b0 + k * kNr512;
      a0 = _mm512_fmadd_ps(ak, _mm512_load_ps(bk), a0);
      a1 = _mm512_fmadd_ps(ak, _mm512_load_ps(bk + 16), a1);
      a2 = _mm512_fmadd_ps(ak, _mm512_load_ps(bk + ps), a2);
      a3 = _mm512_fmadd_ps(ak, _mm512_load_ps(bk + ps + 16), a3);
      a4 = _mm512_fmadd_ps(ak, _mm512_load_ps(bk + 2 * ps), a4);
      a5 = _mm512_fmadd_ps(ak, _mm512_load_ps(bk + 2 * ps + 16), a5);
      a6 = _mm512_fmadd_ps(ak, _mm512_load_ps(bk + 3 * ps), a6);
      a7 = _mm512_fmadd_ps(ak, _mm512_load_ps(bk + 3 * ps + 16), a7);
    }
    const int64_t j0 = q * kNr512;
    __m512 accs[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int h = 0; h < 8; ++h) store16_avx512(c + j0 + 16 * h, accs[h], n_valid - (j0 + 16 * h), alpha, beta);
  }
  for (; q < npanels; ++q) {
    const float* b0 = b + q * ps;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t k = 0; k < kc; ++k) {
      __m512 ak = _mm512_set1_ps(a[k]);
      a0 = _mm512_fmadd_ps(ak, _mm512_load_ps(b0 + k * kNr512), a0);
      a1 = _mm512_fmadd_ps(ak, _mm512_load_ps(b0 + k * kNr512 + 16), a1);
    }
    const int64_t j0 = q * kNr512;
    store16_avx512(c + j0, a0, n_valid - j0, alpha, beta);
    store16_avx512(c + j0 + 16, a1, n_valid - j0 - 16, alpha, beta);
  }
}

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA: 6 × 16

constexpr int kMr256 = 6, kNr256 = 16;

__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* __restrict a, const float* __restrict b,
                                                     float* c, int64_t ldc, float alpha, float beta, int mv, int nv) {
  __m256 acc[kMr256][2];
  for (int i = 0; i < kMr256; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kMr256; ++i) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kMr256;
    b += kNr256;
  }
  alignas(32) float tmp[kMr256 * kNr256];
  for (int i = 0; i < kMr256; ++i) {
    _mm256_store_ps(tmp + i * kNr256, acc[i][0]);
    _mm256_store_ps(tmp + i * kNr256 + 8, acc[i][1]);
  }
  merge_edge<kMr256, kNr256>(tmp, c, ldc, alpha, beta, mv, nv);
}

// Row kernel, AVX2: one 16-column panel (2 accumulators) at a time, fused multiply-adds like kernel_avx2.
__attribute__((target("avx2,fma"))) void row_avx2(int64_t kc, const float* __restrict a, const float* __restrict b,
                                                  int64_t npanels, float* c, float alpha, float beta, int64_t n_valid) {
  for (int64_t q = 0; q < npanels; ++q) {
    const float* bq = b + q * kc * kNr256;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t k = 0; k < kc; ++k) {
      __m256 ak = _mm256_broadcast_ss(a + k);
      a0 = _mm256_fmadd_ps(ak, _mm256_load_ps(bq + k * kNr256), a0);
      a1 = _mm256_fmadd_ps(ak, _mm256_load_ps(bq + k * kNr256 + 8), a1);
    }
    alignas(32) float tmp[kNr256];
    _mm256_store_ps(tmp, a0);
    _mm256_store_ps(tmp + 8, a1);
    const int64_t j0 = q * kNr256;
    merge_edge<1, kNr256>(tmp, c + j0, 0, alpha, beta, 1, static_cast<int>(std::min<int64_t>(kNr256, n_valid - j0)));
  }
}

// ---------------------------------------------------------------------------------------------
// Portable: 4 × 16 plain loops (the compiler vectorises the j loop at the baseline ISA).

constexpr int kMrScalar = 4, kNrScalar = 16;

void kernel_scalar(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc, float alpha,
                   float beta, int mv, int nv) {
  float acc[kMrScalar * kNrScalar] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < kMrScalar; ++i)
      for (int j = 0; j < kNrScalar; ++j) acc[i * kNrScalar + j] += a[i] * b[j];
    a += kMrScalar;
    b += kNrScalar;
  }
  merge_edge<kMrScalar, kNrScalar>(acc, c, ldc, alpha, beta, mv, nv);
}

void row_scalar(int64_t kc, const float* __restrict a, const float* __restrict b, int64_t npanels, float* c,
                float alpha, float beta, int64_t n_valid) {
  for (int64_t q = 0; q < npanels; ++q) {
    float acc[kNrScalar] = {};
    const float* bq = b + q * kc * kNrScalar;
    for (int64_t k = 0; k < kc; ++k)
      for (int j = 0; j < kNrScalar; ++j) acc[j] += a[k] * bq[k * kNrScalar + j];
    const int64_t j0 = q * kNrScalar;
    merge_edge<1, kNrScalar>(acc, c + j0, 0, alpha, beta, 1,
                             static_cast<int>(std::min<int64_t>(kNrScalar, n_valid - j0)));
  }
}

// Blocking: the packed A block (mc·kc·4 bytes) and the current B micro-panel (kc·NR·4) live in L2;
// nc·kc·4 bytes of packed B are shared by all threads from L3. A deep kc means fewer passes over C
// (one for K <= kc); the AVX-512 values were swept on Zen 4 (1 MB L2): kc 192..1024, mc 56..336.
const GemmKernelInfo kAvx512 = {kernel_avx512, row_avx512, kMr512, kNr512, 1024, 14 * 4, 3072, "avx512-14x32"};
const GemmKernelInfo kAvx2 = {kernel_avx2, row_avx2, kMr256, kNr256, 256, 6 * 24, 2048, "avx2-6x16"};
const GemmKernelInfo kScalar = {kernel_scalar, row_scalar, kMrScalar, kNrScalar, 256, 4 * 32, 1024, "scalar-4x16"};

}  // namespace

const GemmKernelInfo& gemm_select_kernel() {
  switch (simd_level()) {
    case SimdLevel::Avx512:
      return kAvx512;
    case SimdLevel::Avx2:
      return kAvx2;
    default:
      return kScalar;
  }
}

}  // namespace cpu
}  // namespace rlhf
