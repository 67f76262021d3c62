// RMSNorm (Zhang & Sennrich 2019; as in HF LlamaRMSNorm, computed in fp32):
//   rstd[r] = 1 / sqrt(mean_c x[r][c]² + eps),   out[r][c] = x[r][c] · rstd[r] · w[c]
// Shapes: x, out, dx, dout: (N, C) row-major; w, dw: (C); rstd: (N).
#pragma once
#include <cstdint>

namespace rlhf {
namespace cpu {

// Writes out and rstd (overwrite). rstd may be null (inference).
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps);

// out = x · rstd · w from a saved rstd (recomputes a forward output in backward; overwrite).
void rmsnorm_apply(float* out, const float* x, const float* w, const float* rstd, int64_t N, int C);

// dx += d/dx, dw += d/dw for the upstream gradient dout (ACCUMULATES into both).
//   x̂ = x·rstd, g = dout·w:  dx = rstd · (g − x̂ · mean_c(g·x̂)),  dw = Σ_r dout·x̂
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                      int64_t N, int C);

// Plain double-precision references (tests).
void rmsnorm_forward_reference(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps);
void rmsnorm_backward_reference(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                const float* rstd, int64_t N, int C);

}  // namespace cpu
}  // namespace rlhf
