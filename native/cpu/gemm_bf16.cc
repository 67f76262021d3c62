// bf16 GEMM driver: the loop order, threading and k blocking of sgemm (gemm.cc), with A rounded
// to bf16 pairs while packed and B packed as bf16 pairs (gemm_bf16_kernels.h's layout).
#include "gemm_bf16.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/dtype.h"
#include "../core/error.h"
#include "../core/thread_pool.h"
#include "gemm.h"
#include "gemm_bf16_kernels.h"

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

void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* row = C + i * ldc;
    if (beta == 0.0f)
      std::fill(row, row + N, 0.0f);
    else if (beta != 1.0f)
      for (int64_t j = 0; j < N; ++j) row[j] *= beta;
  }
}

uint32_t* thread_a_scratch(size_t pairs) {
  thread_local Workspace scratch;
  return reinterpret_cast<uint32_t*>(scratch.grow(pairs));  // floats and pairs are both 4 bytes
}

uint32_t* shared_b_scratch(size_t pairs) {
  thread_local Workspace scratch;  // the calling (driver) thread's
  return reinterpret_cast<uint32_t*>(scratch.grow(pairs));
}

// C rows [row_b, row_e) × panels [q_b, q_e) of one (jc, pc) block: A packed per mc rows, then the
// microkernel on every MR × NR tile. bp: the block's packed panels (panel q at bp + q·NR·kp).
void compute_block(const Bf16KernelInfo& ki, bool trans_a, const float* A, int64_t lda, int64_t pc, int64_t kc,
                   const uint32_t* bp, int64_t nc, int64_t row_b, int64_t row_e, int64_t q_b, int64_t q_e, float alpha,
                   float beta, float* C, int64_t ldc, int64_t jc) {
  const int mr = ki.mr, nr = ki.nr;
  const int64_t kp = (kc + 1) / 2, MC = ki.mc;
  const int64_t mc_max = std::min(MC, (row_e - row_b + mr - 1) / mr * mr);
  uint32_t* ap = thread_a_scratch(static_cast<size_t>(mc_max * kp));
  for (int64_t ic = row_b; ic < row_e; ic += MC) {
    const int64_t mc = std::min(MC, row_e - ic);
    pack_a(trans_a, A, lda, ic, pc, mc, kc, mr, ap);
    for (int64_t q = q_b; q < q_e; ++q) {
      const int64_t jr = q * nr;
      const int nv = static_cast<int>(std::min<int64_t>(nr, nc - jr));
      for (int64_t ir = 0; ir < mc; ir += mr)
        ki.kernel(kp, ap + ir * kp, bp + jr * kp, C + (ic + ir) * ldc + jc + jr, ldc, alpha, beta,
                  static_cast<int>(std::min<int64_t>(mr, mc - ir)), nv);
    }
  }
}

// Runs compute_block over the pool for an M-row block of `panels` panels (rows split when there
// are enough row tiles, else panels), or the row kernel per row when M < 4.
void run_block(const Bf16KernelInfo& ki, bool trans_a, int64_t M, const float* A, int64_t lda, int64_t pc, int64_t kc,
               const uint32_t* bp, int64_t nc, int64_t panels, float alpha, float beta, float* C, int64_t ldc,
               int64_t jc, bool serial) {
  const int mr = ki.mr, nr = ki.nr;
  const int64_t kp = (kc + 1) / 2;
  ThreadPool& pool = current_pool();
  if (M < 4) {
    std::vector<uint32_t> arow(static_cast<size_t>(M * kp));
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t p = 0; p < kp; ++p) {
        const int64_t k = pc + 2 * p;
        auto at = [&](int64_t kk) { return trans_a ? A[kk * lda + i] : A[i * lda + kk]; };
        arow[i * kp + p] = pair_of(f32_to_bf16(at(k)), 2 * p + 1 < kc ? f32_to_bf16(at(k + 1)) : uint16_t(0));
      }
    }
    auto rows = [&](int64_t qb, int64_t qe, int) {
      for (int64_t i = 0; i < M; ++i)
        ki.row_kernel(kp, arow.data() + i * kp, bp + qb * kp * nr, qe - qb, C + i * ldc + jc + qb * nr, alpha, beta,
                      std::min(nc, qe * nr) - qb * nr);
    };
    if (serial)
      rows(0, panels, 0);
    else
      parallel_for(panels, 2, rows);
    return;
  }
  const int threads = pool.size();
  const int64_t m_tiles = (M + mr - 1) / mr;
  const bool split_rows = m_tiles >= 2 * threads || m_tiles >= panels;
  const int64_t items = split_rows ? m_tiles : panels;
  const int parts = static_cast<int>(std::min<int64_t>(threads, items));
  auto part = [&](int t, int nparts) {
    int64_t b, e;
    split_range(items, nparts, t, &b, &e);
    if (b >= e) return;
    if (split_rows)
      compute_block(ki, trans_a, A, lda, pc, kc, bp, nc, b * mr, std::min(M, e * mr), 0, panels, alpha, beta, C, ldc,
                    jc);
    else
      compute_block(ki, trans_a, A, lda, pc, kc, bp, nc, 0, M, b, e, alpha, beta, C, ldc, jc);
  };
  if (serial || parts <= 1)
    part(0, 1);
  else
    pool.run([&](int t) {
      if (t < parts) part(t, parts);
    });
}

}  // namespace

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_check_args(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const Bf16KernelInfo& ki = gemm_bf16_select_kernel();
  const int nr = ki.nr;
  const int64_t KC = ki.kc;
  const int64_t NC = std::max<int64_t>(nr, ki.nc / nr * nr);
  const int64_t nc_max = std::min(NC, (N + nr - 1) / nr * nr);
  const int64_t kp_max = (std::min(KC, K) + 1) / 2;
  uint32_t* bp = shared_b_scratch(static_cast<size_t>(nc_max * kp_max));
  const bool serial = M * N * K < 64 * 64 * 64 || current_pool().size() <= 1;
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t panels = (nc + nr - 1) / nr;
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      if (serial)
        pack_b_panels(trans_b, B, ldb, pc, jc, kc, nc, nr, 0, panels, bp);
      else
        parallel_for(panels, 2,
                     [&](int64_t b, int64_t e, int) { pack_b_panels(trans_b, B, ldb, pc, jc, kc, nc, nr, b, e, bp); });
      run_block(ki, trans_a, M, A, lda, pc, kc, bp, nc, panels, alpha, pc == 0 ? beta : 1.0f, C, ldc, jc, serial);
    }
  }
}

void gemm_bf16_pack_b(bool trans_b, int64_t K, int64_t N, const uint16_t* B, int64_t ldb, PackedMatrixBf16* out) {
  sgemm_check_args(false, trans_b, 1, N, K, std::max<int64_t>(1, K), ldb, std::max<int64_t>(1, N));
  const Bf16KernelInfo& ki = gemm_bf16_select_kernel();
  const int nr = ki.nr;
  const int64_t KC = ki.kc, panels = (N + nr - 1) / nr;
  // k blocks of depth KC (even), each ceil(kc/2) pairs: the total pair count is ceil(K/2)
  const int64_t pairs = (K + 1) / 2;
  out->K = K, out->N = N, out->panels = panels, out->kernel = &ki;
  out->data = Buffer(static_cast<size_t>(std::max<int64_t>(1, pairs * panels * nr)) * sizeof(uint32_t), false);
  for (int64_t pc = 0; pc < K; pc += KC) {
    const int64_t kc = std::min(KC, K - pc);
    uint32_t* block = out->data.as<uint32_t>() + (pc / 2) * panels * nr;
    parallel_for(panels, 4,
                 [&](int64_t b, int64_t e, int) { pack_b_panels(trans_b, B, ldb, pc, 0, kc, N, nr, b, e, block); });
  }
}

void gemm_bf16_packed_b(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const PackedMatrixBf16& Bp,
                        float beta, float* C, int64_t ldc) {
  const Bf16KernelInfo& ki = gemm_bf16_select_kernel();
  RLHF_CHECK(Bp.kernel == &ki, ErrorCode::Internal, "gemm_bf16: matrix packed for another kernel");
  const int64_t K = Bp.K, N = Bp.N;
  sgemm_check_args(trans_a, false, M, N, K, lda, std::max<int64_t>(1, N), ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const int nr = ki.nr;
  const int64_t KC = ki.kc, panels = Bp.panels;
  const bool serial = M * N * K < 64 * 64 * 64 || current_pool().size() <= 1;
  for (int64_t pc = 0; pc < K; pc += KC) {
    const int64_t kc = std::min(KC, K - pc);
    const uint32_t* block = Bp.data.as<uint32_t>() + (pc / 2) * panels * nr;
    run_block(ki, trans_a, M, A, lda, pc, kc, block, N, panels, alpha, pc == 0 ? beta : 1.0f, C, ldc, 0, serial);
  }
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
