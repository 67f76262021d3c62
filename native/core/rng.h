// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11). A draw is a pure function of
// (seed, stream, counter): there is no hidden state, so row r of a sampling batch can use
// stream = r and be reproduced alone, in any order, on any thread count, on CPU or GPU.
#pragma once
#include <array>
#include <cstdint>

namespace rlhf {

// One Philox block: 4 independent 32-bit words for (seed, stream, counter).
std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t stream, uint64_t counter);

// Uniform float in [0, 1) with 24 random bits, from word `lane` (0..3) of block `counter / 4`.
// Consecutive counters walk through the 4 words of a block, then the next block.
inline float uint_to_unit_float(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }
float philox_uniform(uint64_t seed, uint64_t stream, uint64_t counter);

// Fills out[0..n) with uniforms for (seed, stream) starting at counter `first`.
void philox_uniform_fill(uint64_t seed, uint64_t stream, uint64_t first, float* out, int64_t n);

// Standard normal via Box-Muller on two uniforms of the same block (counter -> 2 normals per block
// half); used for weight initialisation.
// out[j] = normal number first + j of the stream (first even: a chunk of a longer fill, same values).
void philox_normal_fill(uint64_t seed, uint64_t stream, float mean, float stddev, float* out, int64_t n,
                        int64_t first = 0);

}  // namespace rlhf
