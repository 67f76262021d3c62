// GEMM driver: cache blocking, packing and threading around the microkernels (BLIS loop order).
//
//   for jc in N by nc:            packed B block (kc × nc) shared by all threads, from L3
//     for pc in K by kc:          pack B cooperatively, then
//       each thread, its own rows of C (or its own columns when M is too short to split):
//         for ic in rows by mc:   pack A block (mc × kc) into a thread-local buffer (L2)
//           for jr in cols by NR: for ir in rows by MR: microkernel
//
// K blocks after the first accumulate into C with beta = 1, so each element's sum order depends
// only on kc, never on the thread count.
#include "gemm.h"

#include <algorithm>
#include <vector>

#include "../core/buffer.h"
#include "../core/error.h"
#include "../core/thread_pool.h"
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

// C[M×N] *= beta (beta == 0: set to 0 without reading).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  parallel_for(M, 16, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      float* row = C + i * ldc;
      if (beta == 0.0f)
        std::fill(row, row + N, 0.0f);
      else if (beta != 1.0f)
        for (int64_t j = 0; j < N; ++j) row[j] *= beta;
    }
  });
}

// Thread-local scratch for packed A blocks: grown on demand, reused across calls.
float* thread_a_scratch(size_t floats) {
  thread_local Workspace scratch;
  return scratch.grow(floats);
}

Buffer& shared_b_scratch(size_t floats) {
  thread_local Workspace scratch;  // owned by the calling (driver) thread
  scratch.grow(floats);
  return scratch.buffer();
}

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
  if (K == 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const GemmKernelInfo& ki = gemm_select_kernel();
  const int mr = ki.mr, nr = ki.nr;
  const int64_t KC = ki.kc, MC = ki.mc;
  const int64_t NC = std::max<int64_t>(nr, ki.nc / nr * nr);
  ThreadPool& pool = current_pool();
  const int threads = pool.size();

  const int64_t nc_max = std::min(NC, (N + nr - 1) / nr * nr);
  const int64_t kc_max = std::min(KC, K);
  float* bp = shared_b_scratch(static_cast<size_t>(nc_max * kc_max)).as<float>();

  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t n_panels = (nc + nr - 1) / nr;
    const int64_t m_tiles = (M + mr - 1) / mr;
    // Split rows between threads when there are enough row tiles, else split column panels.
    const bool split_rows = m_tiles >= 2 * threads || m_tiles >= n_panels;
    const int64_t work_items = split_rows ? m_tiles : n_panels;
    const int parts = static_cast<int>(std::min<int64_t>(threads, work_items));
    const bool serial = parts <= 1 || M * N * K < 64 * 64 * 64;

    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const float beta_eff = (pc == 0) ? beta : 1.0f;

      auto pack_b_part = [&](int t, int nparts) {
        int64_t qb, qe;
        split_range(n_panels, nparts, t, &qb, &qe);
        pack_b_panels(trans_b, B, ldb, pc, jc, kc, nc, nr, qb, qe, bp);
      };
      // Each worker computes C rows [row_b, row_e) × panels [q_b, q_e).
      auto compute = [&](int64_t row_b, int64_t row_e, int64_t q_b, int64_t q_e) {
        const int64_t mc_max = std::min(MC, (row_e - row_b + mr - 1) / mr * mr);
        float* ap = thread_a_scratch(static_cast<size_t>(mc_max * kc));
        for (int64_t ic = row_b; ic < row_e; ic += MC) {
          const int64_t mc = std::min(MC, row_e - ic);
          pack_a(trans_a, A, lda, ic, pc, mc, kc, mr, ap);
          for (int64_t q = q_b; q < q_e; ++q) {
            const int64_t jr = q * nr;
            const int nv = static_cast<int>(std::min<int64_t>(nr, nc - jr));
            const float* bpanel = bp + jr * kc;
            for (int64_t ir = 0; ir < mc; ir += mr) {
              const int mv = static_cast<int>(std::min<int64_t>(mr, mc - ir));
              ki.kernel(kc, ap + ir * kc, bpanel, C + (ic + ir) * ldc + jc + jr, ldc, alpha, beta_eff, mv, nv);
            }
          }
        }
      };
      auto compute_part = [&](int t, int nparts) {
        int64_t b, e;
        split_range(work_items, nparts, t, &b, &e);
        if (b >= e) return;
        if (split_rows)
          compute(b * mr, std::min(M, e * mr), 0, n_panels);
        else
          compute(0, M, b, e);
      };

      if (serial) {
        pack_b_part(0, 1);
        compute_part(0, 1);
      } else {
        pool.run([&](int t) {
          if (t < parts) pack_b_part(t, parts);
        });
        pool.run([&](int t) {
          if (t < parts) compute_part(t, parts);
        });
      }
    }
  }
}

void sgemm_pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb, PackedMatrix* out) {
  sgemm_check_args(false, trans_b, 1, N, K, std::max<int64_t>(1, K), ldb, std::max<int64_t>(1, N));
  const GemmKernelInfo& ki = gemm_select_kernel();
  const int nr = ki.nr;
  const int64_t KC = ki.kc, panels = (N + nr - 1) / nr;
  out->K = K, out->N = N, out->panels = panels, out->kernel = &ki;
  out->data = Buffer(static_cast<size_t>(K * panels * nr) * sizeof(float), false);
  for (int64_t pc = 0; pc < K; pc += KC) {
    const int64_t kc = std::min(KC, K - pc);
    float* block = out->data.as<float>() + pc * panels * nr;
    parallel_for(panels, 4,
                 [&](int64_t b, int64_t e, int) { pack_b_panels(trans_b, B, ldb, pc, 0, kc, N, nr, b, e, block); });
  }
}

void sgemm_packed_b(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const PackedMatrix& Bp,
                    float beta, float* C, int64_t ldc) {
  const GemmKernelInfo& ki = gemm_select_kernel();
  RLHF_CHECK(Bp.kernel == &ki, ErrorCode::Internal, "gemm: matrix packed for another kernel");
  const int64_t K = Bp.K, N = Bp.N;
  sgemm_check_args(trans_a, false, M, N, K, lda, std::max<int64_t>(1, N), ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const int mr = ki.mr, nr = ki.nr;
  const int64_t KC = ki.kc, MC = ki.mc, panels = Bp.panels;
  ThreadPool& pool = current_pool();
  const int threads = pool.size();
  for (int64_t pc = 0; pc < K; pc += KC) {
    const int64_t kc = std::min(KC, K - pc);
    const float beta_eff = (pc == 0) ? beta : 1.0f;
    const float* block = Bp.data.as<float>() + pc * panels * nr;
    if (M < 4) {
      // A few rows: the row kernel on each row, threads splitting the panels.
      std::vector<float> arow(static_cast<size_t>(M * kc));
      for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < kc; ++k) arow[i * kc + k] = trans_a ? A[(pc + k) * lda + i] : A[i * lda + pc + k];
      parallel_for(panels, 2, [&](int64_t qb, int64_t qe, int) {
        for (int64_t i = 0; i < M; ++i)
          ki.row_kernel(kc, arow.data() + i * kc, block + qb * kc * nr, qe - qb, C + i * ldc + qb * nr, alpha, beta_eff,
                        std::min(N, qe * nr) - qb * nr);
      });
      continue;
    }
    const int64_t m_tiles = (M + mr - 1) / mr;
    const bool split_rows = m_tiles >= 2 * threads || m_tiles >= panels;
    const int64_t items = split_rows ? m_tiles : panels;
    const int parts = static_cast<int>(std::min<int64_t>(threads, items));
    auto part = [&](int t) {
      int64_t b, e;
      split_range(items, parts, t, &b, &e);
      if (b >= e) return;
      const int64_t row_b = split_rows ? b * mr : 0, row_e = split_rows ? std::min(M, e * mr) : M;
      const int64_t q_b = split_rows ? 0 : b, q_e = split_rows ? panels : e;
      float* ap = thread_a_scratch(static_cast<size_t>(std::min(MC, (row_e - row_b + mr - 1) / mr * mr) * kc));
      for (int64_t ic = row_b; ic < row_e; ic += MC) {
        const int64_t mc = std::min(MC, row_e - ic);
        pack_a(trans_a, A, lda, ic, pc, mc, kc, mr, ap);
        for (int64_t q = q_b; q < q_e; ++q) {
          const int nv = static_cast<int>(std::min<int64_t>(nr, N - q * nr));
          for (int64_t ir = 0; ir < mc; ir += mr)
            ki.kernel(kc, ap + ir * kc, block + q * kc * nr, C + (ic + ir) * ldc + q * nr, ldc, alpha, beta_eff,
                      static_cast<int>(std::min<int64_t>(mr, mc - ir)), nv);
        }
      }
    };
    if (parts <= 1)
      part(0);
    else
      pool.run([&](int t) {
        if (t < parts) part(t);
      });
  }
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
