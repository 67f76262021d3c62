// GEMM on the GPU through cuBLASLt, loaded at run time (dlopen): the addon builds and loads where
// cuBLAS is absent, and a GEMM call then fails with a Status saying where it looked.
//   C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C (+ bias[N] per column when given)
// Row-major with row strides, exactly cpu::sgemm's contract (native/cpu/gemm.h); beta == 0
// overwrites C without reading it. Types: A and B both fp32 or both bf16 (`ab`), C fp32 or bf16
// (`c`), accumulation fp32 (CUBLAS_COMPUTE_32F), bias in C's type.
// Where libcublasLt is looked for, in order: $RLHF_CUBLASLT (a file), the loader's path
// (libcublasLt.so.13, .so.12, .so), $CUDA_HOME/lib64, /usr/local/cuda/lib64, then a Python
// wheel's nvidia/cublas/lib under the usual site-packages.
// Under the host emulation harness the call routes to cpu::sgemm (bf16 via fp32 copies).
#pragma once
#include <cstdint>
#include <string>

#include "../core/dtype.h"
#include "status.h"

namespace rlhf {
namespace cuda {

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1.0f, beta = 0.0f;
  const void* A = nullptr;
  int64_t lda = 0;
  const void* B = nullptr;
  int64_t ldb = 0;
  void* C = nullptr;
  int64_t ldc = 0;
  const void* bias = nullptr;  // (N) or null
  DType ab = DType::F32, c = DType::F32;
};

Status gemm(const GemmArgs& g, Stream stream);

// Whether the GEMM backend can run here; *detail: the library loaded (path) or why not.
bool gemm_available(std::string* detail);

}  // namespace cuda
}  // namespace rlhf
