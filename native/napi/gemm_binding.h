// Shared between the gemm binding and the benchmark binding.
#pragma once
#include <napi.h>

#include <cstdint>

namespace rlhf {
namespace napi {

// Plain data: safe to copy into a worker thread.
struct GemmCall {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, lda = 1, ldb = 1, ldc = 1;
  float alpha = 1.0f, beta = 0.0f;
  const float* a = nullptr;
  const float* b = nullptr;
  const uint16_t* b16 = nullptr;  // dtype 'bf16': B's bf16 bits (cpu::gemm_bf16), b unused
  float* c = nullptr;
  void run() const;
};

// Reads and re-checks gemm options (sizes, strides, array lengths); throws JS errors naming fields.
// The JS arrays are appended to keep_alive so the caller can pin them for an async job.
GemmCall read_gemm_call(const Napi::Object& o, const char* fn, std::vector<Napi::Value>* keep_alive);

}  // namespace napi
}  // namespace rlhf
