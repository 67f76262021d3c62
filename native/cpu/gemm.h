// f32 GEMM, the local core of every matmul in the engine (and of the tensor-parallel ones).
//
//   C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C
//
// All matrices are row-major with row strides lda/ldb/ldc (in elements). op(A) = A when
// !trans_a (A is M×K, lda ≥ K) and Aᵀ when trans_a (A is K×M, lda ≥ M); likewise for B.
// beta == 0 overwrites C without reading it (NaN/Inf already in C do not propagate), as in BLAS.
//
// Determinism: every element of C is summed in the same order (fixed K blocking) whatever the
// thread count, so results are bit-identical across thread counts and runs.
#pragma once
#include <cstdint>

#include "../core/buffer.h"

namespace rlhf {
namespace cpu {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Same contract computed with plain loops and double accumulation: the reference tests use.
void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// op(B) packed once for repeated products (generation multiplies every weight matrix by a few
// rows per step). sgemm_packed_b gives bit-identical results to sgemm on the unpacked matrix:
// the same k blocking and per-element multiply-add chains. A packed matrix belongs to the kernel
// (instruction set) it was packed for.
struct PackedMatrix {
  int64_t K = 0, N = 0, panels = 0;
  const void* kernel = nullptr;  // the GemmKernelInfo it was packed for
  Buffer data;                   // per k block (depth kc_p): panels × kc_p × NR floats
};
void sgemm_pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb, PackedMatrix* out);
// C[M×N] = alpha·op(A)·op(B) + beta·C with op(B) pre-packed.
void sgemm_packed_b(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const PackedMatrix& Bp,
                    float beta, float* C, int64_t ldc);

// Throws rlhf::Error(OutOfRange) naming the first bad size or stride.
void sgemm_check_args(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                      int64_t ldc);

}  // namespace cpu
}  // namespace rlhf
