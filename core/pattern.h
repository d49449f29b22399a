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

// Byte `offset` of expert `expert` of (layer, weight). A cheap hash: neighbouring experts,
// layers, weights and offsets differ, so an off-by-one expert, a stale layer or a shifted copy
// shows up as wrong bytes.
DWDP_HOST_DEVICE inline uint8_t PatternValue(int64_t layer, int64_t weight, uint64_t expert,
                                             uint64_t offset) {
  uint64_t h = static_cast<uint64_t>(layer) * 0x9E3779B97F4A7C15ull;
  h ^= (static_cast<uint64_t>(weight) + 1) * 0xC2B2AE3D27D4EB4Full;
  h ^= (expert + 1) * 0x165667B19E3779F9ull;
  h ^= offset * 0x27D4EB2F165667C5ull;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return static_cast<uint8_t>(h);
}

}  // namespace dwdp
