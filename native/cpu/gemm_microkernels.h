// Register-blocked GEMM microkernels, one per instruction set (gemm_microkernels.cc).
//
// A microkernel multiplies a packed MR×kc panel of op(A) (stored k-major: a[k*MR + i]) by a packed
// kc×NR panel of op(B) (b[k*NR + j]) and merges the MR×NR product into C:
//   C[i][j] = alpha·acc[i][j] + beta·C[i][j]   for i < m_valid, j < n_valid  (beta == 0: C not read)
// Rows/columns beyond m_valid/n_valid are computed on the zero padding of the packs and dropped.
#pragma once
#include <cstdint>

namespace rlhf {
namespace cpu {

using GemmMicrokernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                 float beta, int m_valid, int n_valid);

// One row of C (M = 1) against `npanels` consecutive packed panels of op(B) (panel stride kc·NR),
// a[k] contiguous; columns [0, n_valid) of c are written. Each element is the same sequential
// k-chain of multiply-adds, and the same merge with C, as in the microkernel, so the row kernel's
// results are bit-identical to the tile kernel's (generation relies on this).
using GemmRowKernel = void (*)(int64_t kc, const float* a, const float* b, int64_t npanels, float* c, float alpha,
                               float beta, int64_t n_valid);

struct GemmKernelInfo {
  GemmMicrokernel kernel;
  GemmRowKernel row_kernel;
  int mr, nr;      // register tile
  int kc, mc, nc;  // cache blocking (kc: depth; mc: rows of A per packed block; nc: cols of B)
  const char* name;
};

// The kernel for the current simd_level() (AVX-512, AVX2+FMA or portable scalar).
const GemmKernelInfo& gemm_select_kernel();

}  // namespace cpu
}  // namespace rlhf
