// Token sampling on the GPU with the CPU's random streams: row r draws u = philox_uniform(seed,
// streams[r], steps[r]) (native/core/rng.h, the same Philox4x32-10 on the device) and picks its
// token exactly as cpu::sample_token (native/cpu/sampling.h) does with that u: greedy at
// temperature 0; else p ∝ exp((z − max)/T) over the top_k largest logits (ties by index), then the
// shortest prefix in decreasing probability whose mass reaches top_p, inverse CDF in that order.
// The CPU sums probabilities sequentially, the GPU in parallel (double both): a draw can differ
// only when u·total falls within ~1e-15 of a boundary between two tokens. On bf16 logits the
// engine's GPU path may pick differently from an fp32 CPU run where bf16 rounding changes the
// logits themselves.
//   tokens (N) int32 overwrite; z (N, V) fp32 with row stride ldz; streams, steps (N) uint64;
//   all device memory.
#pragma once
#include <cstdint>

#include "../cpu/sampling.h"
#include "status.h"

namespace rlhf {
namespace cuda {

Status sample_tokens(int32_t* tokens, const float* z, int64_t ldz, int64_t N, int64_t V, const uint64_t* streams,
                     const uint64_t* steps, uint64_t seed, const cpu::SamplingParams& params, Stream stream);

// out[r] = philox_uniform(seed, streams[r], steps[r]) (device), for tests and for callers that
// sample elsewhere.
Status philox_uniforms(float* out, const uint64_t* streams, const uint64_t* steps, int64_t N, uint64_t seed,
                       Stream stream);

}  // namespace cuda
}  // namespace rlhf
