// bf16-weight GEMM: f32 activations times bf16 weights, f32 accumulation.
//
//   C[M×N] (f32) = alpha · bf16(op(A))[M×K] · op(B)[K×N] (bf16) + beta · C
//
// A is f32 and is rounded to bf16 (nearest even) while it is packed; B is bf16 (uint16_t bits,
// the top half of an f32). Row-major with row strides lda/ldb/ldc in elements; trans flags as in
// cpu::sgemm (gemm.h). beta == 0 overwrites C without reading it.
//
// Results contract (every kernel): each product of two bf16 values is exact in f32; each element
// of C is the f32 sum, over k in ascending pairs (k, k+1) within fixed k blocks of depth kc, of
// acc += a[k+1]·b[k+1] then acc += a[k]·b[k] (one f32 rounding per add), which is what AVX512-BF16's
// vdpbf16ps computes; then C = alpha·acc + beta·C. So against gemm_bf16_reference (double sums of
// the same bf16 inputs) the error is fp32 accumulation error only: |err| ≤ ~K·2⁻²⁴·Σ|a||b|.
// vdpbf16ps treats subnormal inputs and results as zero; the portable kernels do not, so the two
// can differ where a product or partial sum is below 2⁻¹²⁶ (≈1.2e-38), and are bit-identical
// otherwise (test_gemm_bf16 checks both on random data).
//
// Kernels: vdpbf16ps (AVX512-BF16, checked at run time: cpu_has_avx512_bf16()) when simd_level()
// is avx512, else AVX2 or portable loops emulating it. Results are bit-identical across thread
// counts, and between gemm_bf16 and gemm_bf16_packed_b (same blocking, same per-element chains).
#pragma once
#include <cstdint>

#include "../core/buffer.h"

namespace rlhf {
namespace cpu {

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Same contract with plain loops: op(A) rounded to bf16 (f32_to_bf16), products and sums in double.
void gemm_bf16_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);

// op(B) packed once into the kernel's layout (per k block of depth kc: panels of NR columns, each
// k pair of a column adjacent: b[(k/2)·2NR + 2j + k%2], zero-padded) for repeated products.
// A packed matrix belongs to the kernel it was packed for (gemm_bf16_packed_b checks).
struct PackedMatrixBf16 {
  int64_t K = 0, N = 0, panels = 0;
  const void* kernel = nullptr;
  Buffer data;  // uint16_t
};
void gemm_bf16_pack_b(bool trans_b, int64_t K, int64_t N, const uint16_t* B, int64_t ldb, PackedMatrixBf16* out);
// C[M×N] = alpha·bf16(op(A))·op(B) + beta·C with op(B) pre-packed; bit-identical to gemm_bf16.
void gemm_bf16_packed_b(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const PackedMatrixBf16& Bp,
                        float beta, float* C, int64_t ldc);

// The kernel gemm_bf16 uses now ("avx512bf16-14x32", "avx2-6x16", "scalar-4x16").
const char* gemm_bf16_kernel_name();

// dst[i] = f32_to_bf16(src[i]) / bf16_to_f32 (core/dtype.h), n elements, split over the thread pool.
void f32_to_bf16_array(const float* src, uint16_t* dst, int64_t n);
void bf16_to_f32_array(const uint16_t* src, float* dst, int64_t n);

}  // namespace cpu
}  // namespace rlhf
