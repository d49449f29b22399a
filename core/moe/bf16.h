#pragma once

// BF16 <-> float by bit manipulation, identical on host and device (compiled by nvcc too, hence
// host/device and no library calls). A bf16 value is the upper 16 bits of a float.

#include <cstdint>

#include "core/pattern.h"  // DWDP_HOST_DEVICE

namespace dwdp::moe {

DWDP_HOST_DEVICE inline uint32_t FloatBits(float value) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__float_as_uint(value));
#else
  uint32_t bits;
  __builtin_memcpy(&bits, &value, sizeof(bits));
  return bits;
#endif
}

DWDP_HOST_DEVICE inline float BitsFloat(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float value;
  __builtin_memcpy(&value, &bits, sizeof(value));
  return value;
#endif
}

DWDP_HOST_DEVICE inline float Bf16ToFloat(uint16_t bits) {
  return BitsFloat(static_cast<uint32_t>(bits) << 16);
}

// Round to nearest, ties to even (what __float2bfloat16_rn does); NaN stays a quiet NaN.
DWDP_HOST_DEVICE inline uint16_t FloatToBf16(float value) {
  const uint32_t bits = FloatBits(value);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

DWDP_HOST_DEVICE inline bool Bf16IsFinite(uint16_t bits) { return (bits & 0x7F80u) != 0x7F80u; }

}  // namespace dwdp::moe
