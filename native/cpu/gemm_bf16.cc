// bf16 GEMM: its packing (A rounded to bf16 pairs while packed, B packed as bf16 pairs:
// gemm_bf16_kernels.h's layout) on the driver it shares with sgemm (gemm_driver.h).
#include "gemm_bf16.h"

#include <algorithm>

#include "../core/dtype.h"
#include "../core/error.h"
#include "../core/thread_pool.h"
#include "gemm.h"
#include "gemm_bf16_kernels.h"
#include "gemm_driver.h"

namespace rlhf {
namespace cpu {

namespace {

constexpr int64_t kPackChunk = 64;  // k elements per chunk of a transposing pack (as gemm.cc)

inline uint32_t pair_of(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}

// Packs op(A)[i0 .. i0+mc) × [p0 .. p0+kc) into MR-row panels of bf16 pairs (a[p*MR + i]),
// zero-padding the rows past mc and the odd k past kc. kp = ceil(kc / 2).
void pack_a(bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t p0, int64_t mc, int64_t kc, int mr,
            uint32_t* out) {
  const int64_t kp = (kc + 1) / 2;
  uint16_t row[kPackChunk];
  for (int64_t ir = 0; ir < mc; ir += mr) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - ir));
    uint32_t* panel = out + ir * kp;
    for (int64_t k0 = 0; k0 < kc; k0 += kPackChunk) {
      const int64_t k1 = std::min(kc, k0 + kPackChunk), n = k1 - k0;
      for (int i = 0; i < rows; ++i) {
        const int64_t r = i0 + ir + i;
        if (!trans_a) {
          const float* src = A + r * lda + p0 + k0;
          for (int64_t k = 0; k < n; ++k) row[k] = f32_to_bf16(src[k]);
        } else {
          for (int64_t k = 0; k < n; ++k) row[k] = f32_to_bf16(A[(p0 + k0 + k) * lda + r]);
        }
        if (n & 1) row[n] = 0;
        for (int64_t k = 0; k < n; k += 2) panel[((k0 + k) / 2) * mr + i] = pair_of(row[k], row[k + 1]);
      }
    }
    for (int64_t p = 0; p < kp; ++p)
      for (int i = rows; i < mr; ++i) panel[p * mr + i] = 0;
  }
}

// Packs op(B)[p0 .. p0+kc) × columns [j0 + q·NR ...) for panels q in [panel_begin, panel_end):
// panel q at out + q·NR·kp, pairs b[p*NR + j], zero-padded past nc and past kc.
void pack_b_panels(bool trans_b, const uint16_t* B, int64_t ldb, int64_t p0, int64_t j0, int64_t kc, int64_t nc, int nr,
                   int64_t panel_begin, int64_t panel_end, uint32_t* out) {
  const int64_t kp = (kc + 1) / 2;
  for (int64_t q = panel_begin; q < panel_end; ++q) {
    const int64_t jr = q * nr;
    const int cols = static_cast<int>(std::min<int64_t>(nr, nc - jr));
    uint32_t* panel = out + jr * kp;
    if (!trans_b) {
      for (int64_t p = 0; p < kp; ++p) {
        const uint16_t* r0 = B + (p0 + 2 * p) * ldb + j0 + jr;
        const bool has_odd = 2 * p + 1 < kc;
        uint32_t* dst = panel + p * nr;
        for (int j = 0; j < cols; ++j) dst[j] = pair_of(r0[j], has_odd ? r0[ldb + j] : uint16_t(0));
        for (int j = cols; j < nr; ++j) dst[j] = 0;
      }
    } else {
      for (int64_t k0 = 0; k0 < kc; k0 += kPackChunk) {
        const int64_t k1 = std::min(kc, k0 + kPackChunk);
        for (int j = 0; j < cols; ++j) {
          const uint16_t* src = B + (j0 + jr + j) * ldb + p0;
          for (int64_t k = k0; k < k1; k += 2)
            panel[(k / 2) * nr + j] = pair_of(src[k], k + 1 < kc ? src[k + 1] : uint16_t(0));
        }
      }
      for (int64_t p = 0; p < kp; ++p)
        for (int j = cols; j < nr; ++j) panel[p * nr + j] = 0;
    }
  }
}

// The bf16 kernel family of the driver (gemm_driver.h): packs of bf16 pairs, depth ceil(kc/2).
struct Bf16Kernels {
  using Packed = uint32_t;
  using BElem = uint16_t;
  using Info = Bf16KernelInfo;
  static const Info& kernel() { return gemm_bf16_select_kernel(); }
  static int64_t depth(int64_t kc) { return (kc + 1) / 2; }
  static void pack_a(bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t p0, int64_t mc, int64_t kc, int mr,
                     uint32_t* out) {
    cpu::pack_a(trans_a, A, lda, i0, p0, mc, kc, mr, out);
  }
  static void pack_b(bool trans_b, const uint16_t* B, int64_t ldb, int64_t p0, int64_t j0, int64_t kc, int64_t nc,
                     int nr, int64_t q_begin, int64_t q_end, uint32_t* out) {
    pack_b_panels(trans_b, B, ldb, p0, j0, kc, nc, nr, q_begin, q_end, out);
  }
  // rows [0, M) of op(A) over k in [p0, p0+kc) as bf16 pairs, row i at out + i·ceil(kc/2)
  static void pack_rows(bool trans_a, const float* A, int64_t lda, int64_t M, int64_t p0, int64_t kc, uint32_t* out) {
    const int64_t kp = depth(kc);
    auto at = [&](int64_t i, int64_t k) { return trans_a ? A[k * lda + i] : A[i * lda + k]; };
    for (int64_t i = 0; i < M; ++i)
      for (int64_t p = 0; p < kp; ++p) {
        const int64_t k = p0 + 2 * p;
        out[i * kp + p] = pair_of(f32_to_bf16(at(i, k)), 2 * p + 1 < kc ? f32_to_bf16(at(i, k + 1)) : uint16_t(0));
      }
  }
};

}  // namespace

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_check_args(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) return gemm_driver::scale_c(M, N, beta, C, ldc);
  gemm_driver::gemm<Bf16Kernels>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16_pack_b(bool trans_b, int64_t K, int64_t N, const uint16_t* B, int64_t ldb, PackedMatrixBf16* out) {
  sgemm_check_args(false, trans_b, 1, N, K, std::max<int64_t>(1, K), ldb, std::max<int64_t>(1, N));
  const Bf16KernelInfo& ki = gemm_bf16_select_kernel();
  const int64_t panels = (N + ki.nr - 1) / ki.nr;
  // k blocks of depth KC (even), each ceil(kc/2) pairs: the total pair count is ceil(K/2)
  const int64_t pairs = (K + 1) / 2;
  out->K = K, out->N = N, out->panels = panels, out->kernel = &ki;
  out->data = Buffer(static_cast<size_t>(std::max<int64_t>(1, pairs * panels * ki.nr)) * sizeof(uint32_t), false);
  gemm_driver::pack_b<Bf16Kernels>(trans_b, K, N, B, ldb, panels, out->data.as<uint32_t>());
}

void gemm_bf16_packed_b(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const PackedMatrixBf16& Bp,
                        float beta, float* C, int64_t ldc) {
  const Bf16KernelInfo& ki = gemm_bf16_select_kernel();
  RLHF_CHECK(Bp.kernel == &ki, ErrorCode::Internal, "gemm_bf16: matrix packed for another kernel");
  const int64_t K = Bp.K, N = Bp.N;
  sgemm_check_args(trans_a, false, M, N, K, lda, std::max<int64_t>(1, N), ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) return gemm_driver::scale_c(M, N, beta, C, ldc);
  const bool serial = M * N * K < gemm_driver::kSerialBelow || current_pool().size() <= 1;
  gemm_driver::gemm_packed_b<Bf16Kernels>(ki, trans_a, M, N, K, alpha, A, lda, Bp.data.as<uint32_t>(), Bp.panels, beta,
                                          C, ldc, serial);
}

void gemm_bf16_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_check_args(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < K; ++p) {
        double a = bf16_to_f32(f32_to_bf16(trans_a ? A[p * lda + i] : A[i * lda + p]));
        double b = bf16_to_f32(trans_b ? B[j * ldb + p] : B[p * ldb + j]);
        acc += a * b;
      }
      double prev = (beta == 0.0f) ? 0.0 : static_cast<double>(beta) * C[i * ldc + j];
      C[i * ldc + j] = static_cast<float>(static_cast<double>(alpha) * acc + prev);
    }
}

const char* gemm_bf16_kernel_name() { return gemm_bf16_select_kernel().name; }

void f32_to_bf16_array(const float* src, uint16_t* dst, int64_t n) {
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) dst[i] = f32_to_bf16(src[i]);
  });
}

void bf16_to_f32_array(const uint16_t* src, float* dst, int64_t n) {
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) dst[i] = bf16_to_f32(src[i]);
  });
}

}  // namespace cpu
}  // namespace rlhf
