#pragma once

// The device kernels of the MoE layer (moe_kernels.cu) and their host launchers. Plain C++ on
// both sides of nvcc: no absl, no CUDA types (streams travel as void*, errors as cudaError_t
// values in an int, bf16 values as their uint16_t bits). Every launcher checks its arguments'
// bounds and returns cudaErrorInvalidValue for ones the kernel cannot take.
//
// Layout. The routed (token, j) pairs ("entries", entry = token * top_k + j) are laid out in
// rows of the permuted activations, grouped by expert, ascending entry order within an expert:
// row = offsets[e] + position, where position counts the earlier entries of the same expert.
//   packed: offsets[e] = sum of the counts of the experts before e (rows = tokens * top_k);
//   padded: offsets[e] = e * capacity (rows = num_experts * capacity, every expert padded to
//           the same capacity with rows of zeros, so one strided batched GEMM covers all).
// Nothing here depends on the order in which threads run: positions come from a per-expert scan
// in entry order, sums run over j ascending, and the only atomics are order-free (OR of flags,
// min of an index).

#include <cstdint>

namespace dwdp::cuda::moe {

// Sticky error flags of the routing kernels (one uint32 on the device).
inline constexpr uint32_t kStatusCountsDiffer = 1;  // the GPU's counts are not the plan's
inline constexpr uint32_t kStatusRowOverflow = 2;   // an entry had no row (padded capacity)

inline constexpr uint64_t kNoDifference = ~0ull;

// x[t, h] = InputValue(seed, t, h) for t < tokens, h < hidden (hidden % 8 == 0).
int LaunchGenerateInput(void* stream, uint16_t* x, uint64_t seed, int64_t tokens, int64_t hidden);

// Per token: the top_k experts (best first) and the softmax weights of core/moe/routing.h.
int LaunchRouter(void* stream, uint64_t seed, int64_t tokens, int32_t num_experts, int32_t top_k,
                 int32_t* experts, float* weights);

// positions[entry] for every entry and counts[e] for every expert (entries = tokens * top_k).
int LaunchCountPositions(void* stream, const int32_t* experts, int64_t entries, int32_t num_experts,
                         int32_t* positions, int32_t* counts);

// offsets[e] of the layout (capacity > 0: padded, capacity == 0: packed), and problem_experts[p]
// = the p-th expert with tokens (ascending). Sets kStatusCountsDiffer in *status when the counts'
// fingerprint (core/moe/routing.h) is not expected_fingerprint, kStatusRowOverflow when a padded
// expert has more than capacity entries.
int LaunchLayout(void* stream, const int32_t* counts, int32_t num_experts, int32_t capacity,
                 uint64_t expected_fingerprint, int32_t* offsets, int32_t* problem_experts,
                 uint32_t* status);

// Gathers x[token] into its top_k rows of xperm ([rows, hidden]) and records each entry's row
// in entry_rows (-1, and kStatusRowOverflow, for one that has none: a position at or beyond a
// padded capacity, or a row at or beyond rows).
int LaunchGather(void* stream, const uint16_t* x, int64_t tokens, int64_t hidden, int32_t top_k,
                 int32_t num_experts, const int32_t* experts, const int32_t* positions,
                 const int32_t* offsets, int32_t capacity, int64_t rows, uint16_t* xperm,
                 int32_t* entry_rows, uint32_t* status);

// Zeroes the padding rows [e * capacity + counts[e], (e + 1) * capacity) of xperm, every e.
int LaunchZeroPadding(void* stream, uint16_t* xperm, int64_t hidden, const int32_t* counts,
                      int32_t num_experts, int32_t capacity);

// act[r, i] = bf16(silu(gate) * up), gate = h1[r, i], up = h1[r, inter + i], fp32 math.
int LaunchSiluMul(void* stream, const uint16_t* h1, int64_t rows, int64_t inter, uint16_t* act);

// out[t, :] = bf16(sum over j ascending of weights[t, j] * y[entry_rows[t, j], :]), fp32
// accumulation; entries without a row (-1) contribute nothing.
int LaunchCombine(void* stream, const uint16_t* y, const int32_t* entry_rows, const float* weights,
                  int64_t tokens, int64_t hidden, int32_t top_k, uint16_t* out);

// The device pointer arrays of cublasGemmGroupedBatchedEx for both GEMMs, problem p being
// expert problem_experts[p] (p < problems) in the packed layout:
//   gemm1: a = w13 + e * w13_expert_bytes, b = xperm row offsets[e], c = h1 row offsets[e]
//   gemm2: a = w2 + e * w2_expert_bytes,   b = act row offsets[e],   c = y row offsets[e]
// With kStatusCountsDiffer set every pointer is its buffer's start instead, so that GEMMs sized
// by a plan that does not match the GPU's routing still stay inside the buffers.
struct GroupedPointers {
  const void** a1 = nullptr;
  const void** b1 = nullptr;
  void** c1 = nullptr;
  const void** a2 = nullptr;
  const void** b2 = nullptr;
  void** c2 = nullptr;
};
struct GroupedBases {
  uint64_t w13 = 0;
  uint64_t w2 = 0;
  uint64_t w13_expert_bytes = 0;
  uint64_t w2_expert_bytes = 0;
  uint64_t xperm = 0;  // row bytes: hidden * 2
  uint64_t h1 = 0;     // 2 * inter * 2
  uint64_t act = 0;    // inter * 2
  uint64_t y = 0;      // hidden * 2
  int64_t hidden = 0;
  int64_t inter = 0;
};
int LaunchGroupedPointers(void* stream, const GroupedBases& bases, const int32_t* problem_experts,
                          const int32_t* offsets, int32_t problems, const uint32_t* status,
                          const GroupedPointers& out);

// Bitwise comparison of two bf16 buffers: *first_difference becomes the smallest index at which
// they differ if that is below its current value (initialise it to kNoDifference).
int LaunchCompareBf16(void* stream, const uint16_t* a, const uint16_t* b, uint64_t elements,
                      uint64_t* first_difference);

}  // namespace dwdp::cuda::moe
