// Element types. f32 is the compute type on CPU; bf16/f16 appear in checkpoints (converted on load)
// and are reserved for the CUDA backend's working copies; i32 holds token ids.
#pragma once
#include <cstddef>
#include <cstdint>

namespace rlhf {

// Mirrored in lib/engine/dtype.ts; a test compares the two tables.
enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, kCount };

constexpr size_t kDTypeSize[] = {4, 2, 2, 4};
constexpr const char* kDTypeName[] = {"f32", "bf16", "f16", "i32"};
static_assert(sizeof(kDTypeSize) / sizeof(kDTypeSize[0]) == static_cast<size_t>(DType::kCount),
              "dtype size table out of step with DType");
static_assert(sizeof(kDTypeName) / sizeof(kDTypeName[0]) == static_cast<size_t>(DType::kCount),
              "dtype name table out of step with DType");

inline size_t dtype_size(DType t) { return kDTypeSize[static_cast<int>(t)]; }
inline const char* dtype_name(DType t) { return kDTypeName[static_cast<int>(t)]; }

// bf16 <-> f32. bf16 is the top half of an f32; rounding to nearest even, NaN kept quiet.
inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  __builtin_memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace rlhf
