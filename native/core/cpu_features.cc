#include "cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace rlhf {

namespace {
SimdLevel detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    return SimdLevel::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::Avx2;
#endif
  return SimdLevel::Scalar;
}

SimdLevel cap_from_environment() {
  const char* env = std::getenv("RLHF_SIMD");
  if (!env) return SimdLevel::Avx512;
  if (!std::strcmp(env, "scalar")) return SimdLevel::Scalar;
  if (!std::strcmp(env, "avx2")) return SimdLevel::Avx2;
  return SimdLevel::Avx512;
}

std::atomic<int> g_cap{-1};
}  // namespace

SimdLevel simd_level() {
  static const SimdLevel detected = detect();
  int cap = g_cap.load();
  if (cap < 0) {
    cap = static_cast<int>(cap_from_environment());
    g_cap.store(cap);
  }
  return static_cast<int>(detected) < cap ? detected : static_cast<SimdLevel>(cap);
}

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return has && simd_level() == SimdLevel::Avx512;
#else
  return false;
#endif
}

void set_simd_level_cap(SimdLevel cap) { g_cap.store(static_cast<int>(cap)); }

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Avx512:
      return "avx512";
    case SimdLevel::Avx2:
      return "avx2";
    default:
      return "scalar";
  }
}

}  // namespace rlhf
