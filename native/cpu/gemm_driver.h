// The blocking and threading driver shared by the f32 GEMM (gemm.cc) and the bf16-weight GEMM
// (gemm_bf16.cc), parameterised by their packing and micro-kernels (BLIS loop order):
//
//   for jc in N by nc:            packed B block (kc × nc) shared by all threads, from L3
//     for pc in K by kc:          pack B cooperatively, then
//       each thread, its own rows of C (or its own columns when M is too short to split):
//         for ic in rows by mc:   pack A block (mc × kc) into a thread-local buffer (L2)
//           for jr in cols by NR: for ir in rows by MR: microkernel
//       (M < 4: A's rows packed once, the row kernel on each row, threads splitting the panels)
//
// K blocks after the first accumulate into C with beta = 1, so each element's sum order depends
// only on kc, never on the thread count, the split, or whether B was packed in advance.
//
// A kernel family K supplies (see the two in gemm.cc and gemm_bf16.cc):
//   Packed                 element of the packs (float; bf16 pairs as uint32_t)
//   BElem                  element of B (float; bf16 bits as uint16_t)
//   Info                   kernel table: kernel, row_kernel, mr, nr, kc, mc, nc, name
//   kernel()               the table the current CPU uses
//   depth(kc)              packed elements along k of a k block of depth kc (kc; bf16: ceil(kc/2))
//   pack_a(trans_a, A, lda, i0, p0, mc, kc, mr, out)
//                          op(A)[i0, i0+mc) × [p0, p0+kc) into MR-row panels (panel ir at out + ir·depth(kc)),
//                          zero-padded past mc
//   pack_b(trans_b, B, ldb, p0, j0, kc, nc, nr, q_begin, q_end, out)
//                          op(B)[p0, p0+kc) × panels q in [q_begin, q_end) of NR columns from j0
//                          (panel q at out + q·NR·depth(kc)), zero-padded past nc
//   pack_rows(trans_a, A, lda, M, p0, kc, out)
//                          rows [0, M) of op(A), k block [p0, p0+kc), row i at out + i·depth(kc)
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../core/buffer.h"
#include "../core/thread_pool.h"

namespace rlhf {
namespace cpu {
namespace gemm_driver {

// GEMMs below this many multiply-adds run on the calling thread.
constexpr int64_t kSerialBelow = 64 * 64 * 64;

// C[M×N] *= beta (beta == 0: set to 0 without reading).
inline void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
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

// Per-thread scratch for packed A blocks, and the calling thread's for the shared packed B block
// (one of each per kernel family; grown on demand, reused across calls).
template <class K>
typename K::Packed* a_scratch(size_t n) {
  static_assert(sizeof(typename K::Packed) == sizeof(float), "Workspace counts 4-byte elements");
  thread_local Workspace scratch;
  return reinterpret_cast<typename K::Packed*>(scratch.grow(n));
}
template <class K>
typename K::Packed* b_scratch(size_t n) {
  thread_local Workspace scratch;
  return reinterpret_cast<typename K::Packed*>(scratch.grow(n));
}

// C rows [row_b, row_e) × panels [q_b, q_e) of one (jc, pc) block: A packed per mc rows, then the
// microkernel on every MR × NR tile. bp: the block's packed panels.
template <class K>
void compute_block(const typename K::Info& ki, bool trans_a, const float* A, int64_t lda, int64_t pc, int64_t kc,
                   const typename K::Packed* bp, int64_t nc, int64_t row_b, int64_t row_e, int64_t q_b, int64_t q_e,
                   float alpha, float beta, float* C, int64_t ldc, int64_t jc) {
  const int mr = ki.mr, nr = ki.nr;
  const int64_t kd = K::depth(kc), MC = ki.mc;
  const int64_t mc_max = std::min(MC, (row_e - row_b + mr - 1) / mr * mr);
  typename K::Packed* ap = a_scratch<K>(static_cast<size_t>(mc_max * kd));
  for (int64_t ic = row_b; ic < row_e; ic += MC) {
    const int64_t mc = std::min(MC, row_e - ic);
    K::pack_a(trans_a, A, lda, ic, pc, mc, kc, mr, ap);
    for (int64_t q = q_b; q < q_e; ++q) {
      const int64_t jr = q * nr;
      const int nv = static_cast<int>(std::min<int64_t>(nr, nc - jr));
      for (int64_t ir = 0; ir < mc; ir += mr)
        ki.kernel(kd, ap + ir * kd, bp + jr * kd, C + (ic + ir) * ldc + jc + jr, ldc, alpha, beta,
                  static_cast<int>(std::min<int64_t>(mr, mc - ir)), nv);
    }
  }
}

// One (jc, pc) block of C over the pool: rows split when there are enough row tiles, else panels;
// the row kernel per row when M < 4. `serial`: all on the calling thread.
template <class K>
void run_block(const typename K::Info& ki, bool trans_a, int64_t M, const float* A, int64_t lda, int64_t pc, int64_t kc,
               const typename K::Packed* bp, int64_t nc, int64_t panels, float alpha, float beta, float* C, int64_t ldc,
               int64_t jc, bool serial) {
  const int mr = ki.mr, nr = ki.nr;
  const int64_t kd = K::depth(kc);
  if (M < 4) {
    std::vector<typename K::Packed> arow(static_cast<size_t>(M * kd));
    K::pack_rows(trans_a, A, lda, M, pc, kc, arow.data());
    auto rows = [&](int64_t qb, int64_t qe, int) {
      for (int64_t i = 0; i < M; ++i)
        ki.row_kernel(kd, arow.data() + i * kd, bp + qb * kd * nr, qe - qb, C + i * ldc + jc + qb * nr, alpha, beta,
                      std::min(nc, qe * nr) - qb * nr);
    };
    if (serial)
      rows(0, panels, 0);
    else
      parallel_for(panels, 2, rows);
    return;
  }
  ThreadPool& pool = current_pool();
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
      compute_block<K>(ki, trans_a, A, lda, pc, kc, bp, nc, b * mr, std::min(M, e * mr), 0, panels, alpha, beta, C, ldc,
                       jc);
    else
      compute_block<K>(ki, trans_a, A, lda, pc, kc, bp, nc, 0, M, b, e, alpha, beta, C, ldc, jc);
  };
  if (serial || parts <= 1)
    part(0, 1);
  else
    pool.run([&](int t) {
      if (t < parts) part(t, parts);
    });
}

// C[M×N] = alpha·op(A)·op(B) + beta·C (arguments checked by the caller; M, N, K > 0, alpha != 0).
template <class K>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K_, float alpha, const float* A, int64_t lda,
          const typename K::BElem* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const typename K::Info& ki = K::kernel();
  const int nr = ki.nr;
  const int64_t KC = ki.kc;
  const int64_t NC = std::max<int64_t>(nr, ki.nc / nr * nr);
  const int64_t nc_max = std::min(NC, (N + nr - 1) / nr * nr);
  typename K::Packed* bp = b_scratch<K>(static_cast<size_t>(nc_max * K::depth(std::min(KC, K_))));
  const bool serial = M * N * K_ < kSerialBelow || current_pool().size() <= 1;
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t panels = (nc + nr - 1) / nr;
    for (int64_t pc = 0; pc < K_; pc += KC) {
      const int64_t kc = std::min(KC, K_ - pc);
      if (serial)
        K::pack_b(trans_b, B, ldb, pc, jc, kc, nc, nr, 0, panels, bp);
      else
        parallel_for(panels, 2,
                     [&](int64_t b, int64_t e, int) { K::pack_b(trans_b, B, ldb, pc, jc, kc, nc, nr, b, e, bp); });
      run_block<K>(ki, trans_a, M, A, lda, pc, kc, bp, nc, panels, alpha, pc == 0 ? beta : 1.0f, C, ldc, jc, serial);
    }
  }
}

// op(B) (K_ × N) packed whole for the current kernel: k blocks of depth kc one after another, block
// pc at depth(pc)·panels·NR, each as gemm packs it. `out` gets ceil-sized storage of Packed.
template <class K>
void pack_b(bool trans_b, int64_t K_, int64_t N, const typename K::BElem* B, int64_t ldb, int64_t panels,
            typename K::Packed* out) {
  const typename K::Info& ki = K::kernel();
  const int nr = ki.nr;
  const int64_t KC = ki.kc;
  for (int64_t pc = 0; pc < K_; pc += KC) {
    const int64_t kc = std::min(KC, K_ - pc);
    typename K::Packed* block = out + K::depth(pc) * panels * nr;
    parallel_for(panels, 4,
                 [&](int64_t b, int64_t e, int) { K::pack_b(trans_b, B, ldb, pc, 0, kc, N, nr, b, e, block); });
  }
}

// C[M×N] = alpha·op(A)·B + beta·C with B packed by pack_b (M, N, K_ > 0, alpha != 0); bit-identical to gemm.
template <class K>
void gemm_packed_b(const typename K::Info& ki, bool trans_a, int64_t M, int64_t N, int64_t K_, float alpha,
                   const float* A, int64_t lda, const typename K::Packed* packed, int64_t panels, float beta, float* C,
                   int64_t ldc, bool serial) {
  const int64_t KC = ki.kc;
  for (int64_t pc = 0; pc < K_; pc += KC) {
    const int64_t kc = std::min(KC, K_ - pc);
    const typename K::Packed* block = packed + K::depth(pc) * panels * ki.nr;
    run_block<K>(ki, trans_a, M, A, lda, pc, kc, block, N, panels, alpha, pc == 0 ? beta : 1.0f, C, ldc, 0, serial);
  }
}

}  // namespace gemm_driver
}  // namespace cpu
}  // namespace rlhf
