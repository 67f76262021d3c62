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

// Per-head RMSNorm (Qwen3 / Gemma 3 q_norm and k_norm): the head vector of HD floats at
// x + r·ldx + h·HD (rows r < N, heads h < nheads) is normalised with the weight w (HD) shared by
// all heads: out = x · rstd · w at out + r·ldo + h·HD; rstd (N·nheads, index r·nheads + h).
// out may equal x (in place, same ld). Overwrites out and rstd (rstd may be null).
void rmsnorm_heads_forward(float* out, int64_t ldo, float* rstd, const float* x, int64_t ldx, const float* w, int64_t N,
                           int nheads, int HD, float eps);

// Its backward: dx (stride lddx) OVERWRITTEN with d/dx (dx may equal dout, same ld); dw (HD)
// ACCUMULATES Σ over rows and heads (dw may be null: no weight gradient).
void rmsnorm_heads_backward(float* dx, int64_t lddx, float* dw, const float* dout, int64_t lddo, const float* x,
                            int64_t ldx, const float* w, const float* rstd, int64_t N, int nheads, int HD);

// Plain double-precision references (tests).
void rmsnorm_forward_reference(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps);
void rmsnorm_backward_reference(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                const float* rstd, int64_t N, int C);
void rmsnorm_heads_forward_reference(float* out, int64_t ldo, float* rstd, const float* x, int64_t ldx, const float* w,
                                     int64_t N, int nheads, int HD, float eps);
void rmsnorm_heads_backward_reference(float* dx, int64_t lddx, float* dw, const float* dout, int64_t lddo,
                                      const float* x, int64_t ldx, const float* w, const float* rstd, int64_t N,
                                      int nheads, int HD);

}  // namespace cpu
}  // namespace rlhf
