// bf16 GEMM microkernels (gemm_bf16_kernels.cc), one per instruction set, all with the results
// contract of gemm_bf16.h.
//
// Operands are bf16 pairs: one uint32 holds bf16 values k (low half) and k+1 (high half).
// A microkernel multiplies a packed MR-row panel of op(A) (a[p*MR + i]: pair p of row i) by a
// packed NR-column panel of op(B) (b[p*NR + j]) over kp pairs and merges into C:
//   C[i][j] = alpha·acc[i][j] + beta·C[i][j]   for i < m_valid, j < n_valid  (beta == 0: C not read)
// where, per pair, acc += a_hi·b_hi then acc += a_lo·b_lo (the order of vdpbf16ps).
#pragma once
#include <cstdint>

namespace rlhf {
namespace cpu {

using Bf16Microkernel = void (*)(int64_t kp, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, float alpha,
                                 float beta, int m_valid, int n_valid);

// One row of C (M = 1) against `npanels` consecutive packed panels (panel stride kp·NR), a[p]
// contiguous; columns [0, n_valid) of c written. Bit-identical to the microkernel's row.
using Bf16RowKernel = void (*)(int64_t kp, const uint32_t* a, const uint32_t* b, int64_t npanels, float* c, float alpha,
                               float beta, int64_t n_valid);

struct Bf16KernelInfo {
  Bf16Microkernel kernel;
  Bf16RowKernel row_kernel;
  int mr, nr;      // register tile
  int kc, mc, nc;  // blocking: kc (even) in k elements, mc rows of A, nc columns of B
  const char* name;
};

// vdpbf16ps when the CPU has AVX512-BF16 and simd_level() is avx512; else AVX2 or portable.
const Bf16KernelInfo& gemm_bf16_select_kernel();

}  // namespace cpu
}  // namespace rlhf
