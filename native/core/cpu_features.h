// Runtime CPU feature detection. Kernels are compiled for several instruction sets (per-function
// target attributes) and dispatch on these answers, so a build made on an AVX-512 machine never
// executes an AVX-512 instruction on a machine without it.
#pragma once

namespace rlhf {

enum class SimdLevel : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// Best level this CPU supports (AVX2 means AVX2+FMA; AVX-512 means F+BW+VL+DQ), capped by the
// RLHF_SIMD environment variable ("scalar", "avx2", "avx512") for testing the fallbacks.
SimdLevel simd_level();
const char* simd_level_name(SimdLevel level);
void set_simd_level_cap(SimdLevel cap);  // tests: force a lower path
// AVX512-BF16 (vdpbf16ps) usable: the CPU has it and simd_level() is avx512.
bool cpu_has_avx512_bf16();

}  // namespace rlhf
