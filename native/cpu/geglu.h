// GeGLU with the tanh-approximated GELU (Shazeer 2020; Gemma's gelu_pytorch_tanh):
//   a = gelu_tanh(gate) ⊙ up,  gelu_tanh(g) = ½·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))
// gu: (N, 2F) row-major, gate in columns [0, F), up in [F, 2F) (as swiglu.h).
#pragma once
#include <cstdint>

namespace rlhf {
namespace cpu {

// a (N, F): overwrite.
void geglu_forward(float* a, const float* gu, int64_t N, int F);

// dgu (N, 2F) = d/d(gate, up) for upstream da (N, F): overwrite.
//   dgate = da·up·(½·(1 + t) + ½·g·(1 − t²)·√(2/π)·(1 + 3·0.044715·g²)),  dup = da·gelu_tanh(g)
void geglu_backward(float* dgu, const float* da, const float* gu, int64_t N, int F);

// Plain double-precision reference of gelu_tanh (tests).
double gelu_tanh_reference(double g);

}  // namespace cpu
}  // namespace rlhf
