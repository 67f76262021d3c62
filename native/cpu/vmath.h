// Elementwise math shared by every kernel that needs it, so that forward, backward and sampling
// compute bit-identical values (generate's log-probs must equal forward's).
//
// exp_approx: exp(x) for float with |rel err| < 4e-7 on [-87.3, 88.3] (range reduction
// x = n·ln2 + r, degree-6 polynomial on |r| <= ln2/2, 2^n through the exponent bits);
// x < -87.3 (and -inf) -> 0, x > 88.72 -> +inf, (88.3, 88.72] -> exp(88.3), NaN -> NaN. Written as plain scalar
// operations so that the vectorised clones (target_clones in the .cc files that loop over it) perform the same IEEE
// operations in the same order under -ffp-contract=off: identical results on every ISA.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace rlhf {
namespace cpu {

inline float exp_approx(float x) {
  const float kLog2e = 1.44269504088896341f;
  const float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  // Selects, not branches, so loops over it vectorise; NaN passes through every select.
  float xc = x < -87.3f ? -87.3f : x;
  xc = xc > 88.3f ? 88.3f : xc;
  float n = std::nearbyint(xc * kLog2e);
  float r = xc - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = 1.3888889e-3f;  // Horner for 1 + r + r²/2 + ... + r⁶/720
  p = p * r + 8.3333333e-3f;
  p = p * r + 4.1666667e-2f;
  p = p * r + 1.6666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  float ni = (n == n) ? n : 0.0f;  // NaN input: p is NaN already; keep the int conversion defined
  uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(ni) + 127) << 23;  // 2^n, n in [-126, 127]
  float scale;
  std::memcpy(&scale, &bits, 4);
  float y = p * scale;
  y = x < -87.3f ? 0.0f : y;      // underflow (and exp(-inf)) is exactly 0
  y = x > 88.72f ? INFINITY : y;  // ln(FLT_MAX) = 88.7228
  return y;
}

}  // namespace cpu
}  // namespace rlhf
