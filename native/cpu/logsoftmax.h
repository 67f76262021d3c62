// Fused log-softmax + gather + entropy over rows of logits, the LM head's per-token "heads":
//   lse = log Σ_j exp(z_j),  logp = z_y − lse,  H = −Σ_j p_j log p_j = lse − Σ_j p_j z_j
// and its backward
//   dz_j = dlogp·(1[j = y] − p_j) − dH·p_j·(log p_j + H)
// Shapes: z, dz: (N, V) with row stride ldz; targets, logp, ent, lse, dlogp, dent: (N).
// A row whose target is < 0 has logp = 0, H = 0 and a zero gradient ("no target here").
// Every function reduces a row in one fixed order (16 lanes by index), so the same row gives the
// same bits in forward, backward and generation, on any ISA and thread count.
#pragma once
#include <cstdint>

namespace rlhf {
namespace cpu {

// logp, lse: overwrite; ent may be null (not computed).
void logsoftmax_forward(float* logp, float* ent, float* lse, const float* z, int64_t ldz, const int32_t* targets,
                        int64_t N, int64_t V);

// dz: overwrite (may alias z: each row is read before it is written). dent may be null; ent is
// the forward entropy (read only when dent is given).
void logsoftmax_backward(float* dz, int64_t lddz, const float* z, int64_t ldz, const int32_t* targets, const float* lse,
                         const float* ent, const float* dlogp, const float* dent, int64_t N, int64_t V);

// One row: lse and (optionally) Σ p·z, for sampling and generation.
float row_logsumexp(const float* z, int64_t V, float* sum_pz = nullptr);

// Plain double-precision reference (tests).
void logsoftmax_forward_reference(float* logp, float* ent, const float* z, int64_t ldz, const int32_t* targets,
                                  int64_t N, int64_t V);

}  // namespace cpu
}  // namespace rlhf
