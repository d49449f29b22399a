#pragma once

// The synthetic byte pattern of functional mode, shared by the simulator, the CUDA fill and
// verification kernels (compiled by nvcc too, hence host/device and no library calls).

#include <cstdint>

#if defined(__CUDACC__)
#define DWDP_HOST_DEVICE __host__ __device__
#else
#define DWDP_HOST_DEVICE
#endif

namespace dwdp {

// The pattern is built from one 64-bit word per 8 bytes of an expert, so hosts can fill and
// check it a word at a time. The seed differs per (layer, weight, expert), so an off-by-one
// expert or a stale layer shows up as wrong bytes; the word index mixes in the offset, so a
// shifted copy does too.
DWDP_HOST_DEVICE inline uint64_t PatternSeed(int64_t layer, int64_t weight, uint64_t expert) {
  uint64_t h = static_cast<uint64_t>(layer) * 0x9E3779B97F4A7C15ull;
  h ^= (static_cast<uint64_t>(weight) + 1) * 0xC2B2AE3D27D4EB4Full;
  h ^= (expert + 1) * 0x165667B19E3779F9ull;
  h ^= h >> 31;
  h *= 0x94D049BB133111EBull;
  return h ^ (h >> 29);
}

DWDP_HOST_DEVICE inline uint64_t PatternWord(uint64_t seed, uint64_t word_index) {
  uint64_t w = seed + word_index * 0xD6E8FEB86659FD93ull;
  w ^= w >> 32;
  w *= 0xBF58476D1CE4E5B9ull;
  return w ^ (w >> 29);
}

// What the bytes of a pattern are:
//   kPatternBytes: every byte pseudo-random (opaque weights, e.g. NVFP4; the strongest check);
//   kPatternBf16:  every 16-bit lane a BF16 number a real MoE kernel can compute with: random
//                  sign, exponent 120 or 121 and mantissa, i.e. magnitudes in [2^-7, 2^-5) (no
//                  NaN, Inf or denormal). The low byte of each lane stays fully random, so a
//                  wrong expert, layer or offset still shows as wrong bytes.
inline constexpr uint32_t kPatternBytes = 0;
inline constexpr uint32_t kPatternBf16 = 1;

DWDP_HOST_DEVICE inline uint64_t PatternWordOf(uint32_t kind, uint64_t seed, uint64_t word_index) {
  const uint64_t word = PatternWord(seed, word_index);
  if (kind != kPatternBf16) return word;
  // Per lane: bit 15 sign and bits 7..0 (exponent's last bit, mantissa) random; bits 14..8 the
  // exponent's top bits 0111100.
  return (word & 0x80FF80FF80FF80FFull) | 0x3C003C003C003C00ull;
}

// Byte `offset` of expert `expert` of (layer, weight): byte offset % 8 of word offset / 8
// (little-endian, as the words are stored).
DWDP_HOST_DEVICE inline uint8_t PatternValue(int64_t layer, int64_t weight, uint64_t expert,
                                             uint64_t offset, uint32_t kind = kPatternBytes) {
  const uint64_t word = PatternWordOf(kind, PatternSeed(layer, weight, expert), offset / 8);
  return static_cast<uint8_t>(word >> (8 * (offset % 8)));
}

}  // namespace dwdp
