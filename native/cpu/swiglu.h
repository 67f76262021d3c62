// SwiGLU (Shazeer 2020): a = silu(gate) ⊙ up, silu(g) = g·σ(g).
// gu: (N, 2F) row-major, gate in columns [0, F), up in [F, 2F) — HF's gate_proj/up_proj stacked
// in that order, which is also GLM-4's fused gate_up_proj (chunked gate first).
#pragma once
#include <cstdint>

namespace rlhf {
namespace cpu {

// a (N, F): overwrite.
void swiglu_forward(float* a, const float* gu, int64_t N, int F);

// dgu (N, 2F) = d/d(gate, up) for upstream da (N, F): overwrite.
//   dgate = da·up·σ(g)·(1 + g·(1 − σ(g))),  dup = da·silu(g)
void swiglu_backward(float* dgu, const float* da, const float* gu, int64_t N, int F);

}  // namespace cpu
}  // namespace rlhf
