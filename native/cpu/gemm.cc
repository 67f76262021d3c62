// f32 GEMM: its packing (plain floats, k-major panels) on the shared driver (gemm_driver.h), the
// argument checks every GEMM uses, and the reference.
#include "gemm.h"

#include <algorithm>

#include "../core/buffer.h"
#include "../core/error.h"
#include "../core/thread_pool.h"
#include "gemm_driver.h"
#include "gemm_microkernels.h"

namespace rlhf {
namespace cpu {

namespace {

// Transposing packs go through k in chunks of this many: a chunk of a panel (kPackChunk · MR or
// NR floats, at most 8 KiB) stays in L1 while every row (column) writes its strided elements.
constexpr int64_t kPackChunk = 64;

// Packs op(A)[i0 .. i0+mc) × [p0 .. p0+kc) into MR-row panels, k-major, zero-padding the last one.
void pack_a(bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t p0, int64_t mc, int64_t kc, int mr,
            float* out) {
  for (int64_t ir = 0; ir < mc; ir += mr) {
    int rows = static_cast<int>(std::min<int64_t>(mr, mc - ir));
    float* panel = out + ir * kc;
    if (!trans_a) {
      // k in chunks, so the strided stores of the rows stay within an L1-resident slice of the panel
      for (int64_t k0 = 0; k0 < kc; k0 += kPackChunk) {
        const int64_t k1 = std::min(kc, k0 + kPackChunk);
        for (int i = 0; i < rows; ++i) {
          const float* src = A + (i0 + ir + i) * lda + p0;
          for (int64_t k = k0; k < k1; ++k) panel[k * mr + i] = src[k];
        }
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = A + (p0 + k) * lda + i0 + ir;
        for (int i = 0; i < rows; ++i) panel[k * mr + i] = src[i];
      }
    }
    if (rows < mr)
      for (int64_t k = 0; k < kc; ++k)
        for (int i = rows; i < mr; ++i) panel[k * mr + i] = 0.0f;
  }
}

// Packs op(B)[p0 .. p0+kc) × columns [j0 + jr_begin·NR ...) panel by panel: panel q covers columns
// j0 + q·NR .. +NR, stored k-major (b[k*NR + j]), zero-padded past nc.
void pack_b_panels(bool trans_b, const float* B, int64_t ldb, int64_t p0, int64_t j0, int64_t kc, int64_t nc, int nr,
                   int64_t panel_begin, int64_t panel_end, float* out) {
  for (int64_t q = panel_begin; q < panel_end; ++q) {
    int64_t jr = q * nr;
    int cols = static_cast<int>(std::min<int64_t>(nr, nc - jr));
    float* panel = out + jr * kc;
    if (!trans_b) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = B + (p0 + k) * ldb + j0 + jr;
        float* dst = panel + k * nr;
        for (int j = 0; j < cols; ++j) dst[j] = src[j];
        for (int j = cols; j < nr; ++j) dst[j] = 0.0f;
      }
    } else {
      for (int64_t k0 = 0; k0 < kc; k0 += kPackChunk) {  // as in pack_a
        const int64_t k1 = std::min(kc, k0 + kPackChunk);
        for (int j = 0; j < cols; ++j) {
          const float* src = B + (j0 + jr + j) * ldb + p0;
          for (int64_t k = k0; k < k1; ++k) panel[k * nr + j] = src[k];
        }
      }
      for (int64_t k = 0; k < kc; ++k)
        for (int j = cols; j < nr; ++j) panel[k * nr + j] = 0.0f;
    }
  }
}

// The f32 kernel family of the driver (gemm_driver.h).
struct F32Kernels {
  using Packed = float;
  using BElem = float;
  using Info = GemmKernelInfo;
  static const Info& kernel() { return gemm_select_kernel(); }
  static int64_t depth(int64_t kc) { return kc; }
  static void pack_a(bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t p0, int64_t mc, int64_t kc, int mr,
                     float* out) {
    cpu::pack_a(trans_a, A, lda, i0, p0, mc, kc, mr, out);
  }
  static void pack_b(bool trans_b, const float* B, int64_t ldb, int64_t p0, int64_t j0, int64_t kc, int64_t nc, int nr,
                     int64_t q_begin, int64_t q_end, float* out) {
    pack_b_panels(trans_b, B, ldb, p0, j0, kc, nc, nr, q_begin, q_end, out);
  }
  // rows [0, M) of op(A) over k in [p0, p0+kc), row i at out + i·kc
  static void pack_rows(bool trans_a, const float* A, int64_t lda, int64_t M, int64_t p0, int64_t kc, float* out) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < kc; ++k) out[i * kc + k] = trans_a ? A[(p0 + k) * lda + i] : A[i * lda + p0 + k];
  }
};

}  // namespace

void sgemm_check_args(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                      int64_t ldc) {
  RLHF_CHECK(M >= 0, ErrorCode::OutOfRange, "gemm: M must be >= 0, got ", M);
  RLHF_CHECK(N >= 0, ErrorCode::OutOfRange, "gemm: N must be >= 0, got ", N);
  RLHF_CHECK(K >= 0, ErrorCode::OutOfRange, "gemm: K must be >= 0, got ", K);
  int64_t min_lda = std::max<int64_t>(1, trans_a ? M : K);
  int64_t min_ldb = std::max<int64_t>(1, trans_b ? K : N);
  RLHF_CHECK(lda >= min_lda, ErrorCode::OutOfRange, "gemm: lda must be >= ", min_lda, ", got ", lda);
  RLHF_CHECK(ldb >= min_ldb, ErrorCode::OutOfRange, "gemm: ldb must be >= ", min_ldb, ", got ", ldb);
  RLHF_CHECK(ldc >= std::max<int64_t>(1, N), ErrorCode::OutOfRange, "gemm: ldc must be >= ", std::max<int64_t>(1, N),
             ", got ", ldc);
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_check_args(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) return gemm_driver::scale_c(M, N, beta, C, ldc);
  gemm_driver::gemm<F32Kernels>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb, PackedMatrix* out) {
  sgemm_check_args(false, trans_b, 1, N, K, std::max<int64_t>(1, K), ldb, std::max<int64_t>(1, N));
  const GemmKernelInfo& ki = gemm_select_kernel();
  const int64_t panels = (N + ki.nr - 1) / ki.nr;
  out->K = K, out->N = N, out->panels = panels, out->kernel = &ki;
  out->data = Buffer(static_cast<size_t>(K * panels * ki.nr) * sizeof(float), false);
  gemm_driver::pack_b<F32Kernels>(trans_b, K, N, B, ldb, panels, out->data.as<float>());
}

void sgemm_packed_b(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const PackedMatrix& Bp,
                    float beta, float* C, int64_t ldc) {
  const GemmKernelInfo& ki = gemm_select_kernel();
  RLHF_CHECK(Bp.kernel == &ki, ErrorCode::Internal, "gemm: matrix packed for another kernel");
  const int64_t K = Bp.K, N = Bp.N;
  sgemm_check_args(trans_a, false, M, N, K, lda, std::max<int64_t>(1, N), ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) return gemm_driver::scale_c(M, N, beta, C, ldc);
  // threaded at any size (sgemm runs products below gemm_driver::kSerialBelow on one thread)
  gemm_driver::gemm_packed_b<F32Kernels>(ki, trans_a, M, N, K, alpha, A, lda, Bp.data.as<float>(), Bp.panels, beta, C,
                                         ldc, false);
}

void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_check_args(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < K; ++p) {
        double a = trans_a ? A[p * lda + i] : A[i * lda + p];
        double b = trans_b ? B[j * ldb + p] : B[p * ldb + j];
        acc += a * b;
      }
      double prev = (beta == 0.0f) ? 0.0 : static_cast<double>(beta) * C[i * ldc + j];
      C[i * ldc + j] = static_cast<float>(static_cast<double>(alpha) * acc + prev);
    }
}

}  // namespace cpu
}  // namespace rlhf
