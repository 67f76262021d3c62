#include "rng.h"

#include <cmath>

#include "error.h"

namespace rlhf {

namespace {
constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;    // Philox multipliers
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  // key schedule increments

inline void mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
}
}  // namespace

std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t stream, uint64_t counter) {
  // counter words: (counter lo, counter hi, stream lo, stream hi); key: seed.
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMul0, c0, &hi0, &lo0);
    mulhilo(kMul1, c2, &hi1, &lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += kWeyl0, k1 += kWeyl1;
  }
  return {c0, c1, c2, c3};
}

float philox_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
  return uint_to_unit_float(philox4x32(seed, stream, counter / 4)[counter % 4]);
}

void philox_uniform_fill(uint64_t seed, uint64_t stream, uint64_t first, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = philox_uniform(seed, stream, first + static_cast<uint64_t>(i));
}

void philox_normal_fill(uint64_t seed, uint64_t stream, float mean, float stddev, float* out, int64_t n,
                        int64_t first) {
  RLHF_CHECK(first % 2 == 0 && first >= 0, ErrorCode::Internal, "philox_normal_fill: first must be even, got ", first);
  // Block b gives normals 2b and 2b+1 (Box-Muller on words 0/1; words 2/3 unused for clarity).
  for (int64_t i = 0; i < n; i += 2) {
    auto w = philox4x32(seed, stream, static_cast<uint64_t>((first + i) / 2));
    double u1 = (static_cast<double>(w[0]) + 1.0) / 4294967297.0;  // (0, 1], never log(0)
    double u2 = static_cast<double>(w[1]) / 4294967296.0;
    double r = std::sqrt(-2.0 * std::log(u1));
    double z0 = r * std::cos(6.283185307179586 * u2), z1 = r * std::sin(6.283185307179586 * u2);
    out[i] = static_cast<float>(mean + stddev * z0);
    if (i + 1 < n) out[i + 1] = static_cast<float>(mean + stddev * z1);
  }
}

}  // namespace rlhf
