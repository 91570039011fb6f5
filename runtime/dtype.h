// Element types of checkpoint tensors and the conversions the CPU path needs.
#ifndef APRUNTIME_RUNTIME_DTYPE_H_
#define APRUNTIME_RUNTIME_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace apr {

enum class DType : uint8_t { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

// Bytes per element.
size_t DTypeSize(DType t);
// Safetensors spelling ("F32", "BF16", ...).
std::string_view DTypeName(DType t);
// Parses the safetensors spelling; nullopt for anything unknown.
std::optional<DType> ParseDType(std::string_view name);

inline float Bf16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even, as PyTorch does; NaN stays NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float F16ToF32(uint16_t h);

// Converts `n` elements of a floating type (F32, F16, BF16, F64) to float.
// Returns false when `t` is not a floating type.
bool ConvertToF32(DType t, const void* src, size_t n, float* dst);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_DTYPE_H_
